package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

// newStore is a migrated store on a database of its own, on the real
// PostgreSQL server of the test bed.
func newStore(t testing.TB) (*Store, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	db, err := postgres.NewDatabase(ctx, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	raw, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, raw)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("a fresh database: no migration applied")
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	Configure(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return New(pool), pool
}

var day0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func results(n int, at time.Time, step time.Duration) []Result {
	out := make([]Result, n)
	for i := range out {
		out[i] = Result{
			WebsiteUID: "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", Namespace: "shop", Name: "storefront",
			URL: fmt.Sprintf("https://shop.example.com/%d", i%10), URLIndex: i % 10,
			ScheduledAt: at.Add(time.Duration(i/10) * step), CheckedAt: at.Add(time.Duration(i/10)*step + time.Second),
			Outcome: OutcomeUp, StatusCode: 200, Total: 120 * time.Millisecond, TTFB: 80 * time.Millisecond, BodyBytes: 5120,
			Plugins: []byte(`[{"name":"html-stats","result":"OK"}]`),
		}
		if i%7 == 0 {
			out[i].Outcome, out[i].ErrorClass, out[i].ErrorMessage, out[i].StatusCode = OutcomeDown, "timeout", "no response within 5s", 0
		}
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM check_results "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrateIsIdempotent(t *testing.T) {
	_, pool := newStore(t)
	applied, err := Migrate(t.Context(), pool)
	if err != nil || len(applied) != 0 {
		t.Errorf("second migration: applied %v, err %v; want nothing", applied, err)
	}
}

// TestWriteIsIdempotent: a batch written twice, and a batch that
// overlaps it, store each check once.
func TestWriteIsIdempotent(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 2); err != nil {
		t.Fatal(err)
	}
	batch := results(1000, day0.Add(time.Hour), 30*time.Second)
	if n, err := s.Write(ctx, &Batch{Results: batch}); err != nil || n != 1000 {
		t.Fatalf("first write: %d inserted, %v", n, err)
	}
	if n, err := s.Write(ctx, &Batch{Results: batch}); err != nil || n != 0 {
		t.Fatalf("the same batch again (a redelivery): %d inserted, %v; want 0", n, err)
	}
	overlap := append(batch[500:], results(1000, day0.Add(time.Hour+100*30*time.Second), 30*time.Second)[:500]...)
	if n, err := s.Write(ctx, &Batch{Results: overlap}); err != nil || n != 500 {
		t.Fatalf("half old, half new: %d inserted, %v; want 500", n, err)
	}
	if got := count(t, pool, ""); got != 1500 {
		t.Errorf("%d rows, want 1500", got)
	}
	if got := count(t, pool, "WHERE outcome = 'down' AND error_class = 'timeout' AND status_code IS NULL"); got == 0 {
		t.Error("the timeouts were not stored as down results with their class")
	}
	var plugins string
	if err := pool.QueryRow(ctx, "SELECT plugins->0->>'name' FROM check_results LIMIT 1").Scan(&plugins); err != nil || plugins != "html-stats" {
		t.Errorf("plugins: %q, %v", plugins, err)
	}
}

// TestConcurrentRedeliveries: two checkers storing the same batch at once
// (a partition moving between them) store it once.
func TestConcurrentRedeliveries(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 1); err != nil {
		t.Fatal(err)
	}
	batch := results(2000, day0.Add(time.Hour), 10*time.Second)
	var wg sync.WaitGroup
	inserted := make([]int64, 4)
	for i := range inserted {
		wg.Go(func() {
			n, err := s.Write(ctx, &Batch{Results: batch})
			if err != nil {
				t.Error(err)
			}
			inserted[i] = n
		})
	}
	wg.Wait()
	if total := inserted[0] + inserted[1] + inserted[2] + inserted[3]; total != 2000 {
		t.Errorf("4 writers inserted %v, %d in all; want 2000", inserted, total)
	}
	if got := count(t, pool, ""); got != 2000 {
		t.Errorf("%d rows, want 2000", got)
	}
}

// rowsPerPartition counts table's rows by the partition holding them.
func rowsPerPartition(t *testing.T, pool *pgxpool.Pool, table string) map[string]int {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT tableoid::regclass::text, count(*) FROM "+table+" GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		counts[name] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// TestPartitions: results go to their day's partition (or the default one
// when none is ready), and retention drops whole days.
func TestPartitions(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsurePartitions(ctx, day0, 2); err != nil {
		t.Fatalf("creating existing partitions again: %v", err)
	}
	for d := -1; d <= 3; d++ {
		if _, err := s.Write(ctx, &Batch{Results: results(10, day0.AddDate(0, 0, d).Add(12*time.Hour), time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	got := rowsPerPartition(t, pool, TableResults)
	want := map[string]int{"check_results_20261122": 10, "check_results_20261123": 10, "check_results_20261124": 10, "check_results_default": 20}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows per partition: %v, want %v", got, want)
	}

	// Every rollup partition, the migration's and the daily ones, leaves
	// room on its pages for the updates of the rollup runs; the results'
	// partitions, never updated, fill theirs.
	var options []string
	if err := pool.QueryRow(ctx, `SELECT array_agg(c.relname || ':' || coalesce(array_to_string(c.reloptions, ','), '') ORDER BY c.relname)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent IN ('rollups_minute'::regclass, 'rollups_hour'::regclass, 'check_results'::regclass)
			AND (c.relname LIKE '%default' OR c.relname LIKE '%20261122')`).Scan(&options); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(options, " "); got != "check_results_20261122: check_results_default: rollups_hour_20261122:fillfactor=70 rollups_hour_default:fillfactor=70 rollups_minute_20261122:fillfactor=70 rollups_minute_default:fillfactor=70" {
		t.Errorf("storage parameters of the partitions: %s", got)
	}

	dropped, err := s.DropPartitionsBefore(ctx, TableResults, day0.AddDate(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dropped) != "[check_results_20261122 check_results_20261123]" {
		t.Errorf("dropped %v, want the 22nd and 23rd", dropped)
	}
	// The default partition's rows of the 21st went with them.
	if got := count(t, pool, ""); got != 20 {
		t.Errorf("%d rows left, want 20 (the 24th, and the 25th in the default partition)", got)
	}
}

// TestPartitionsOverDefaultRows: rows that reached the default partitions
// (a task scheduled days ahead by a wrong clock, one older than retention)
// neither stop a later day's partition from being made, nor stay past
// retention.
func TestPartitionsOverDefaultRows(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 0); err != nil {
		t.Fatal(err)
	}
	ahead, old := day0.AddDate(0, 0, 2).Add(12*time.Hour), day0.AddDate(0, 0, -40).Add(12*time.Hour)
	for _, at := range []time.Time{ahead, old} {
		if _, err := s.Write(ctx, &Batch{Results: results(10, at, time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Rollup(ctx); err != nil {
		t.Fatal(err)
	}
	expect := func(when string, want map[string]string) {
		t.Helper()
		for table, want := range want {
			if got := fmt.Sprint(rowsPerPartition(t, pool, table)); got != want {
				t.Errorf("%s %s: rows %s, want %s", table, when, got, want)
			}
		}
	}

	// Two processes at once (two checkers' maintenance, webmon migrate).
	var makers sync.WaitGroup
	for range 2 {
		makers.Go(func() {
			if err := s.EnsurePartitions(ctx, day0, 3); err != nil {
				t.Errorf("creating partitions over rows of the default partition: %v", err)
			}
		})
	}
	makers.Wait()
	expect("after the partitions were made", map[string]string{
		TableResults:       "map[check_results_20261124:10 check_results_default:10]",
		TableMinuteRollups: "map[rollups_minute_20261124:10 rollups_minute_default:10]",
		TableHourRollups:   "map[rollups_hour_20261124:10 rollups_hour_default:10]",
	})
	// The moved partition has its key: a redelivery is still stored once.
	if n, err := s.Write(ctx, &Batch{Results: results(10, ahead, time.Minute)}); err != nil || n != 0 {
		t.Errorf("writing the moved results again stored %d (%v), want 0", n, err)
	}

	if _, err := s.ApplyRetention(ctx, day0, DefaultRetention); err != nil {
		t.Fatal(err)
	}
	expect("after retention", map[string]string{
		TableResults:       "map[check_results_20261124:10]",
		TableMinuteRollups: "map[rollups_minute_20261124:10]",
		// Hour rollups are kept 90 days.
		TableHourRollups: "map[rollups_hour_20261124:10 rollups_hour_default:10]",
	})
}

// BenchmarkWrite compares batches of 5,000 results stored idempotently
// (COPY into staging, INSERT … ON CONFLICT) with a raw COPY of the same
// rows into the table, the ceiling. go test -run='^$' -bench=Write ./internal/store
func BenchmarkWrite(b *testing.B) {
	const batch = 5000
	s, pool := newStore(b)
	if err := s.EnsurePartitions(b.Context(), day0, 40); err != nil {
		b.Fatal(err)
	}
	next := 0
	batchAt := func() []Result {
		next++
		return results(batch, day0.Add(time.Duration(next)*time.Hour/2), time.Second)
	}
	b.Run("raw-copy", func(b *testing.B) {
		for b.Loop() {
			rs := batchAt()
			rows := make([][]any, len(rs))
			for i := range rs {
				rows[i] = rs[i].Row()
			}
			if _, err := pool.CopyFrom(b.Context(), pgx.Identifier{"check_results"}, ResultColumns, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("idempotent", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Write(b.Context(), &Batch{Results: batchAt()}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	// A batch half of which is stored already: the path a redelivery takes.
	b.Run("redelivered-half", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			rs := batchAt()
			if _, err := s.Write(b.Context(), &Batch{Results: rs[:batch/2]}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := s.Write(b.Context(), &Batch{Results: rs}); err != nil || n != batch/2 {
				b.Fatalf("%d inserted, %v", n, err)
			}
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// TestWriteHostileText: an error message with invalid UTF-8 and NUL bytes
// (a hostile target's words) is stored, cleaned, and does not make its
// batch fail.
func TestWriteHostileText(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 1); err != nil {
		t.Fatal(err)
	}
	batch := results(10, day0.Add(time.Hour), time.Second)
	batch[3].Outcome, batch[3].ErrorClass, batch[3].ErrorMessage = OutcomeDown, "other", "bad \xff\xfe bytes and a \x00 NUL"
	batch[4].Plugins, _ = json.Marshal([]map[string]string{{"name": "json-path", "result": "Error", "message": "value \x00 at $.a"}})
	if n, err := s.Write(ctx, &Batch{Results: batch}); err != nil || n != 10 {
		t.Fatalf("%d stored, %v; want all 10", n, err)
	}
	var msg string
	if err := pool.QueryRow(ctx, "SELECT error_message FROM check_results WHERE error_class = 'other'").Scan(&msg); err != nil {
		t.Fatal(err)
	}
	if want := "bad \uFFFD bytes and a \uFFFD NUL"; msg != want {
		t.Errorf("stored %q, want %q", msg, want)
	}
}

// BenchmarkPostgresCPU is PostgreSQL's CPU time per result (the server's
// processes, read from /proc) as the checkers load it: batches of 1,000
// results of 10,000 URLs, each URL's next check 10 s after its last, with
// a rollup run every 5 batches, against a raw COPY of the same rows.
// hack/with-postgres.sh go test -run='^$' -bench=PostgresCPU ./internal/store
func BenchmarkPostgresCPU(b *testing.B) {
	const batch, urls, rollupEvery = 1000, 10_000, 5
	s, pool := newStore(b)
	start := time.Now().UTC().Truncate(time.Hour)
	if err := s.EnsurePartitions(b.Context(), start, 2); err != nil {
		b.Fatal(err)
	}
	uids := make([]string, urls/50)
	for i := range uids {
		uids[i] = fmt.Sprintf("6f1c7a52-3f0e-4c8e-9a53-%012d", i)
	}
	next := 0
	batchOf := func() []Result {
		out := make([]Result, batch)
		for i := range out {
			k := next*batch + i
			u := k % urls
			at := start.Add(time.Duration(k/urls)*10*time.Second + time.Duration(u)*time.Millisecond)
			out[i] = Result{
				WebsiteUID: uids[u%len(uids)], Namespace: "bench", Name: fmt.Sprintf("site-%d", u%len(uids)),
				URL: fmt.Sprintf("https://shop-%d.example.com/page-%d", u%len(uids), u/len(uids)), URLIndex: u / len(uids),
				ScheduledAt: at, CheckedAt: at.Add(50 * time.Millisecond), Outcome: OutcomeUp, StatusCode: 200,
				Connect: 200 * time.Microsecond, TTFB: time.Millisecond, Total: 2 * time.Millisecond, BodyBytes: 2600,
			}
		}
		next++
		return out
	}
	measure := func(b *testing.B, store func() error) {
		cpu := testbed.CommandCPU(b, "postgres")
		for b.Loop() {
			if err := store(); err != nil {
				b.Fatal(err)
			}
		}
		// A moment for the server's background writers to count.
		b.StopTimer()
		time.Sleep(200 * time.Millisecond)
		used := testbed.CommandCPU(b, "postgres") - cpu
		b.ReportMetric(float64(used.Microseconds())/float64(batch*b.N), "pg-µs/row")
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("raw-copy", func(b *testing.B) {
		measure(b, func() error {
			rs := batchOf()
			rows := make([][]any, len(rs))
			for i := range rs {
				rows[i] = rs[i].Row()
			}
			_, err := pool.CopyFrom(b.Context(), pgx.Identifier{"check_results"}, ResultColumns, pgx.CopyFromRows(rows))
			return err
		})
	})
	b.Run("write-and-rollup", func(b *testing.B) {
		batches := 0
		measure(b, func() error {
			if _, err := s.Write(b.Context(), &Batch{Results: batchOf()}); err != nil {
				return err
			}
			if batches++; batches%rollupEvery == 0 {
				_, err := s.Rollup(b.Context())
				return err
			}
			return nil
		})
	})
}
