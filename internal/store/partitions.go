package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The tables partitioned by day, each with a default partition that takes
// rows outside the daily ones rather than refuse them.
const (
	TableResults       = "check_results"
	TableMinuteRollups = "rollups_minute"
	TableHourRollups   = "rollups_hour"
)

var partitionedTables = []string{TableResults, TableMinuteRollups, TableHourRollups}

// partitionKey is each partitioned table's partition key column.
var partitionKey = map[string]string{
	TableResults:       columnScheduledAt,
	TableMinuteRollups: "bucket",
	TableHourRollups:   "bucket",
}

// partitionStorage are the storage parameters of a table's partitions.
// The rollups are updated in place by every rollup run: pages left 30%
// free let PostgreSQL write the new version of a row beside the old one
// (a HOT update, no index entry to add), which took a third off the
// upsert of the hour rollups.
var partitionStorage = map[string]string{
	TableMinuteRollups: " WITH (fillfactor = 70)",
	TableHourRollups:   " WITH (fillfactor = 70)",
}

// Retention is how long each kind of data is kept. Whole days are
// dropped, as partitions, never row by row.
type Retention struct {
	Results       time.Duration
	MinuteRollups time.Duration
	HourRollups   time.Duration
}

// DefaultRetention keeps results 30 days, minute rollups (1h uptime and
// p95) 2 days, and hour rollups (24h and 30d uptime, history) 90 days.
var DefaultRetention = Retention{Results: 30 * 24 * time.Hour, MinuteRollups: 2 * 24 * time.Hour, HourRollups: 90 * 24 * time.Hour}

// Validate reports a retention too short for what is read from the data.
func (r Retention) Validate() error {
	var errs []error
	if r.Results < 24*time.Hour {
		errs = append(errs, fmt.Errorf("results retention %s: at least 24h", r.Results))
	}
	if r.MinuteRollups < 2*time.Hour {
		errs = append(errs, fmt.Errorf("minute rollups retention %s: at least 2h (1h uptime is read from them)", r.MinuteRollups))
	}
	if r.HourRollups < 31*24*time.Hour {
		errs = append(errs, fmt.Errorf("hour rollups retention %s: at least 31 days (30d uptime is read from them)", r.HourRollups))
	}
	return errors.Join(errs...)
}

// defaultPartition is table's default partition, the migrations' name
// for it, quoted for SQL.
func defaultPartition(table string) string { return pgx.Identifier{table + "_default"}.Sanitize() }

// partitionName is the daily partition of table holding day (UTC).
func partitionName(table string, day time.Time) string {
	return table + "_" + day.UTC().Format("20060102")
}

// EnsurePartitions creates the daily partitions of every partitioned
// table from the day of `from` through `ahead` days after it, skipping
// those that exist. Run at start and daily, it keeps tomorrow's partitions
// ready before the first row of tomorrow arrives.
func (s *Store) EnsurePartitions(ctx context.Context, from time.Time, ahead int) error {
	day := from.UTC().Truncate(24 * time.Hour)
	for _, table := range partitionedTables {
		for i := 0; i <= ahead; i++ {
			d := day.AddDate(0, 0, i)
			if err := s.ensurePartition(ctx, table, d); err != nil {
				return fmt.Errorf("creating partition %s: %w", partitionName(table, d), err)
			}
		}
	}
	return nil
}

// ensurePartition creates table's partition of day unless it exists.
// Rows of that day may already sit in the default partition (a task
// scheduled days ahead by a clock that was wrong): PostgreSQL refuses to
// create a partition over them, and refusing would stop every later
// partition, and retention, from being made. They are moved into it
// instead: the day's table is made apart, filled from the default
// partition, and attached, in the same transaction.
func (s *Store) ensurePartition(ctx context.Context, table string, day time.Time) error {
	name := pgx.Identifier{partitionName(table, day)}.Sanitize()
	parent, deflt := pgx.Identifier{table}.Sanitize(), defaultPartition(table)
	from, to := day.Format(time.RFC3339), day.AddDate(0, 0, 1).Format(time.RFC3339)
	bounds := fmt.Sprintf("FOR VALUES FROM ('%s') TO ('%s')", from, to)
	inDay := fmt.Sprintf("%s >= '%s' AND %s < '%s'", partitionKey[table], from, partitionKey[table], to)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One process at a time: two makers of one partition would
		// otherwise fail on each other, or deadlock over the locks of the
		// table and its default partition.
		var exists, stray bool
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionAdvisoryLock); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || exists {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+deflt+" WHERE "+inDay+")").Scan(&stray); err != nil {
			return err
		}
		if !stray {
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF %s %s%s", name, parent, bounds, partitionStorage[table]))
			return err
		}
		// The default partition is locked from the move to the attach, so
		// that no row of the day lands in it between them (a writer that
		// queued before the lock may then fail, and retries its batch).
		for _, sql := range []string{
			"LOCK TABLE " + deflt + " IN ACCESS EXCLUSIVE MODE",
			fmt.Sprintf("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)%s", name, parent, partitionStorage[table]),
			fmt.Sprintf("WITH moved AS (DELETE FROM %s WHERE %s RETURNING *) INSERT INTO %s SELECT * FROM moved", deflt, inDay, name),
			fmt.Sprintf("ALTER TABLE %s ATTACH PARTITION %s %s", parent, name, bounds),
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
}

// ApplyRetention drops the partitions past r as of now, and returns their
// names.
func (s *Store) ApplyRetention(ctx context.Context, now time.Time, r Retention) ([]string, error) {
	var dropped []string
	for table, keep := range map[string]time.Duration{
		TableResults: r.Results, TableMinuteRollups: r.MinuteRollups, TableHourRollups: r.HourRollups,
	} {
		names, err := s.DropPartitionsBefore(ctx, table, now.Add(-keep))
		dropped = append(dropped, names...)
		if err != nil {
			return dropped, err
		}
	}
	slices.Sort(dropped)
	return dropped, nil
}

// DropPartitionsBefore drops the daily partitions of table whose whole day
// is before cutoff, and returns their names; rows of those days in the
// default partition (stored after their day's partition was dropped, from
// a task that old) are deleted too.
func (s *Store) DropPartitionsBefore(ctx context.Context, table string, cutoff time.Time) ([]string, error) {
	// A day goes once its end is not after cutoff: the days before
	// cutoff's own.
	firstKept := cutoff.UTC().Truncate(24 * time.Hour)
	if _, err := s.pool.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s < $1", defaultPartition(table), partitionKey[table]), firstKept); err != nil {
		return nil, fmt.Errorf("deleting rows before %s from the default partition of %s: %w", firstKept.Format(time.RFC3339), table, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = $1`, table)
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
		suffix, ok := strings.CutPrefix(name, table+"_")
		if !ok {
			continue
		}
		day, err := time.Parse("20060102", suffix)
		if err != nil {
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

// maintenanceAdvisoryLock serialises partition maintenance between
// checkers and webmon migrate.
const maintenanceAdvisoryLock = 0x7765626d6f6e02 // "webmon" 2

// partitionAdvisoryLock serialises the making of each partition, a
// transaction at a time (Maintain holds the one above for a session).
const partitionAdvisoryLock = 0x7765626d6f6e03 // "webmon" 3

// PartitionsAhead is how many days of partitions are kept ready beyond today.
const PartitionsAhead = 3

// Maintain creates the partitions of the coming days and drops those past
// retention, one process at a time.
func (s *Store) Maintain(ctx context.Context, now time.Time, r Retention) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", maintenanceAdvisoryLock); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", maintenanceAdvisoryLock)
	}()
	if err := s.EnsurePartitions(ctx, now, PartitionsAhead); err != nil {
		return err
	}
	_, err = s.ApplyRetention(ctx, now, r)
	return err
}
