package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const partitionPrefix = "check_results_"

// partitionName is the daily partition holding day's results (UTC).
func partitionName(day time.Time) string {
	return partitionPrefix + day.UTC().Format("20060102")
}

// EnsurePartitions creates the daily partitions of check_results from the
// day of `from` through `ahead` days after it, skipping those that exist.
// Run at start and daily, it keeps tomorrow's partition ready before the
// first result of tomorrow arrives.
func (s *Store) EnsurePartitions(ctx context.Context, from time.Time, ahead int) error {
	day := from.UTC().Truncate(24 * time.Hour)
	for i := 0; i <= ahead; i++ {
		start := day.AddDate(0, 0, i)
		sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF check_results FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{partitionName(start)}.Sanitize(), start.Format(time.RFC3339), start.AddDate(0, 0, 1).Format(time.RFC3339))
		if _, err := s.pool.Exec(ctx, sql); err != nil {
			return fmt.Errorf("creating partition %s: %w", partitionName(start), err)
		}
	}
	return nil
}

// DropPartitionsBefore drops the daily partitions whose whole day is before
// cutoff (the retention), and returns their names.
func (s *Store) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'check_results'`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var dropped []string
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, partitionPrefix))
		if err != nil || !strings.HasPrefix(name, partitionPrefix) {
			continue // the default partition, or not one of ours
		}
		if day.AddDate(0, 0, 1).After(cutoff) {
			continue
		}
		if _, err := s.pool.Exec(ctx, "DROP TABLE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return dropped, fmt.Errorf("dropping partition %s: %w", name, err)
		}
		dropped = append(dropped, name)
	}
	return dropped, nil
}
