package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LatencyBounds are the upper bounds of the latency buckets kept in the
// rollups, in milliseconds. They are part of the schema: changing them
// takes a migration of the rollups.
var LatencyBounds = []int{5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000, 60000}

// rollupAdvisoryLock serialises the rollup job between checkers.
const rollupAdvisoryLock = 0x7765626d6f6e01 // "webmon" 1

// rollupSQL moves every pending result into the minute and hour rollups,
// in one statement: the rows it deletes are exactly the rows it counts.
var rollupSQL = func() string {
	le := make([]string, 0, len(LatencyBounds))
	for _, ms := range LatencyBounds {
		le = append(le, fmt.Sprintf("count(*) FILTER (WHERE outcome <> 'missed' AND total_us <= %d)", ms*1000))
	}
	counts := `count(*) FILTER (WHERE outcome <> 'missed'), count(*) FILTER (WHERE outcome = 'up'),
		count(*) FILTER (WHERE outcome = 'missed'), count(total_us) FILTER (WHERE outcome <> 'missed'),
		coalesce(sum(total_us) FILTER (WHERE outcome <> 'missed'), 0), ARRAY[` + strings.Join(le, ", ") + `]::integer[]`
	upsert := func(table, unit string) string {
		return `INSERT INTO ` + table + ` AS r (website_uid, bucket, url_id, checks, up, missed, latency_count, latency_sum_us, latency_le)
		SELECT website_uid, date_trunc('` + unit + `', scheduled_at, 'UTC'), url_id, ` + counts + `
		FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
		ON CONFLICT (website_uid, bucket, url_id) DO UPDATE SET
			checks = r.checks + excluded.checks, up = r.up + excluded.up, missed = r.missed + excluded.missed,
			latency_count = r.latency_count + excluded.latency_count, latency_sum_us = r.latency_sum_us + excluded.latency_sum_us,
			latency_le = ` + sqlAddCounts("r.latency_le", "excluded.latency_le")
	}
	return `WITH moved AS (DELETE FROM rollup_pending RETURNING *),
		minutes AS (` + upsert(TableMinuteRollups, "minute") + ` RETURNING 1)
		` + upsert(TableHourRollups, "hour")
}()

// sqlAddCounts is SQL adding two latency_le arrays element by element, written
// out: a function call per row (the schema's webmon_add_counts, which
// unnests and aggregates) cost more than the rest of the upsert.
func sqlAddCounts(a, b string) string {
	terms := make([]string, len(LatencyBounds))
	for i := range terms {
		terms[i] = fmt.Sprintf("%s[%d] + %s[%d]", a, i+1, b, i+1)
	}
	return "ARRAY[" + strings.Join(terms, ", ") + "]"
}

// sqlSumCounts is SQL summing the latency_le arrays of the rows selected,
// element by element, with PostgreSQL's own sum rather than the schema's
// webmon_sum_counts aggregate, whose transition function is a SQL call per
// row.
var sqlSumCounts = func() string {
	terms := make([]string, len(LatencyBounds))
	for i := range terms {
		terms[i] = fmt.Sprintf("coalesce(sum(latency_le[%d]), 0)", i+1)
	}
	return "ARRAY[" + strings.Join(terms, ", ") + "]"
}()

// Rollup counts the results stored since the last run into the minute and
// hour rollups. One checker at a time runs it (the others return at
// once); it reports how many hour rollups it touched.
func (s *Store) Rollup(ctx context.Context) (int64, error) {
	var touched int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", rollupAdvisoryLock).Scan(&locked); err != nil || !locked {
			return err
		}
		tag, err := tx.Exec(ctx, rollupSQL)
		touched = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("rolling up results: %w", err)
	}
	return touched, nil
}

// Uptime is the share of passed checks over a window, with the latency of
// its checks.
type Uptime struct {
	// Checks counts passed and failed checks; missed ones are not checks.
	Checks, Up, Missed int64
	// P95 is the 95th percentile latency, interpolated within its bucket;
	// zero without checks.
	P95 time.Duration
}

// Ratio is Up/Checks, or false without checks.
func (u Uptime) Ratio() (float64, bool) {
	if u.Checks == 0 {
		return 0, false
	}
	return float64(u.Up) / float64(u.Checks), true
}

// Summary is a Website's uptime over the last hour (from minute rollups)
// and the last 24 hours (from hour rollups: the 23 whole hours before the
// current one, and the current one so far).
type Summary struct {
	LastHour, LastDay Uptime
}

// WebsiteSummary reads a Website's uptime and latency from the rollups.
// It covers results rolled up so far: the rollup job runs every few
// seconds.
func (s *Store) WebsiteSummary(ctx context.Context, websiteUID string, now time.Time) (Summary, error) {
	var sum Summary
	hour, err := s.uptime(ctx, TableMinuteRollups, websiteUID, now.Add(-time.Hour))
	if err != nil {
		return sum, err
	}
	day, err := s.uptime(ctx, TableHourRollups, websiteUID, now.UTC().Truncate(time.Hour).Add(-23*time.Hour))
	if err != nil {
		return sum, err
	}
	return Summary{LastHour: hour, LastDay: day}, nil
}

func (s *Store) uptime(ctx context.Context, table, websiteUID string, since time.Time) (Uptime, error) {
	var (
		u     Uptime
		count int64
		le    []int64
	)
	err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(checks), 0), coalesce(sum(up), 0), coalesce(sum(missed), 0),
			coalesce(sum(latency_count), 0), `+sqlSumCounts+`
		FROM `+pgx.Identifier{table}.Sanitize()+` WHERE website_uid = $1 AND bucket >= $2`, websiteUID, since).
		Scan(&u.Checks, &u.Up, &u.Missed, &count, &le)
	if err != nil {
		return u, fmt.Errorf("reading uptime from %s: %w", table, err)
	}
	u.P95 = Quantile(0.95, count, le)
	return u, nil
}

// Quantile estimates the q-quantile of count latencies from cumulative
// counts per LatencyBounds (le[i] latencies at most LatencyBounds[i] ms),
// interpolating linearly inside the bucket, as Prometheus's
// histogram_quantile does. Latencies above the last bound count as the
// last bound.
func Quantile(q float64, count int64, le []int64) time.Duration {
	if count == 0 || len(le) == 0 {
		return 0
	}
	rank := q * float64(count)
	lower, below := 0.0, int64(0)
	for i, n := range le {
		upper := float64(LatencyBounds[i])
		if float64(n) >= rank {
			inBucket := n - below
			ms := upper
			if inBucket > 0 {
				ms = lower + (upper-lower)*(rank-float64(below))/float64(inBucket)
			}
			return time.Duration(ms * float64(time.Millisecond))
		}
		lower, below = upper, n
	}
	return time.Duration(LatencyBounds[len(LatencyBounds)-1]) * time.Millisecond
}
