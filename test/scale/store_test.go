package scale

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

var (
	storeResults  = flag.Int("store.results", 50_000, "synthetic results stored over the last 24 h")
	storeWebsites = flag.Int("store.websites", 100, "Websites the results belong to")
	storeURLs     = flag.Int("store.urls", 100, "URLs per Website")
)

// TestStoreAtScale stores -store.results synthetic results, spread evenly
// over the last 24 hours of -store.websites × -store.urls URLs, through
// the checker's own writer (store.Write, batches of 1,000) and rollup
// job, then measures PostgreSQL's bytes per million results and the time
// to read a Website's 24 h uptime as the status does (WebsiteSummary), for
// one Website and for all of them, and its history as `webmon history`
// reads it.
func TestStoreAtScale(t *testing.T) {
	ctx := t.Context()
	st, pool := newStore(t)
	now := time.Now().UTC()
	if err := st.EnsurePartitions(ctx, now.Add(-25*time.Hour), 2); err != nil {
		t.Fatal(err)
	}
	uids := make([]string, *storeWebsites)
	for i := range uids {
		uids[i] = uuid.NewString()
	}
	var fig figures
	urls := *storeWebsites * *storeURLs
	perURL := max(1, *storeResults/urls)
	written := time.Now()
	n := writeSynthetic(t, st, uids, now, perURL)
	writeTime := time.Since(written)
	rolled := time.Now()
	if _, err := st.Rollup(ctx); err != nil {
		t.Fatal(err)
	}
	rollupTime := time.Since(rolled)
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	fig.set("store_results", float64(n))
	fig.set("store_urls", float64(urls))
	fig.set("store_write_rows_per_s", math.Round(float64(n)/writeTime.Seconds()))
	fig.set("store_rollup_s", math.Round(rollupTime.Seconds()*10)/10)
	results := tableBytes(t, pool, store.TableResults)
	fig.set("pg_bytes_per_million_results", math.Round(float64(results)/float64(n)*1e6))
	fig.set("pg_mib_per_million_results", math.Round(float64(results)/float64(n)*1e6/(1<<20)))
	fig.set("pg_mib_rollups_minute", math.Round(float64(tableBytes(t, pool, store.TableMinuteRollups))/(1<<20)))
	fig.set("pg_mib_rollups_hour", math.Round(float64(tableBytes(t, pool, store.TableHourRollups))/(1<<20)))

	one := timeReads(t, 20, func() error {
		_, err := st.WebsiteSummary(ctx, uids[0], now)
		return err
	})
	fig.set("uptime_24h_one_website_ms", ms(one))
	all := time.Now()
	for _, uid := range uids {
		sum, err := st.WebsiteSummary(ctx, uid, now)
		if err != nil {
			t.Fatal(err)
		}
		if sum.LastDay.Checks+sum.LastDay.Missed == 0 {
			t.Fatalf("website %s: no checks in its 24 h uptime", uid)
		}
	}
	fig.set("uptime_24h_all_websites_ms", ms(time.Since(all)))
	history := timeReads(t, 5, func() error {
		_, err := st.History(ctx, "scale", "site-00000", now, 24*time.Hour, 10)
		return err
	})
	fig.set("history_24h_one_website_ms", ms(history))
	fig.report(t)
}

// newStore is a migrated store on a database of its own on the test bed's
// PostgreSQL server, configured as the checker's.
func newStore(t *testing.T) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	db, err := postgres.NewDatabase(ctx, "scale")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	// Configure's connections need the schema: migrate first, as the
	// checker's --migrate does.
	raw, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Migrate(ctx, raw)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	store.Configure(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.New(pool), pool
}

// writeSynthetic stores perURL results for every URL, evenly over the 24 h
// before now (1% down), in the checker's batches, and returns how many.
func writeSynthetic(t *testing.T, st *store.Store, uids []string, now time.Time, perURL int) int {
	ctx := t.Context()
	step := 24 * time.Hour / time.Duration(perURL)
	start := now.Add(-24 * time.Hour).Truncate(time.Second)
	batch := &store.Batch{}
	n := 0
	flush := func() {
		if _, err := st.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
		n += len(batch.Results)
		batch = &store.Batch{}
	}
	for tick := range perURL {
		for w, uid := range uids {
			for u := range *storeURLs {
				batch.Results = append(batch.Results, syntheticResult(uid, w, u, start.Add(time.Duration(tick)*step+phase(w, u, step))))
				if tick == 0 {
					r := batch.Results[len(batch.Results)-1]
					batch.URLs = append(batch.URLs, store.URLState{URLID: store.URLID(uid, r.URL), WebsiteUID: uid,
						Namespace: r.Namespace, Name: r.Name, URL: r.URL, State: "Up", Since: r.ScheduledAt, ScheduledAt: r.ScheduledAt})
				}
				if len(batch.Results) == 1000 {
					flush()
				}
			}
		}
	}
	if len(batch.Results) > 0 {
		flush()
	}
	return n
}

// phase spreads the URLs' checks over the step, as the schedulers do.
func phase(w, u int, step time.Duration) time.Duration {
	return time.Duration((w*7919+u*104729)%1000) * step / 1000
}

func syntheticResult(uid string, w, u int, at time.Time) store.Result {
	r := store.Result{
		WebsiteUID: uid, Namespace: "scale", Name: fmt.Sprintf("site-%05d", w), URLIndex: u,
		URL:         fmt.Sprintf("https://site-%05d.example.com/page-%03d", w, u),
		ScheduledAt: at, CheckedAt: at.Add(3 * time.Millisecond), Outcome: store.OutcomeUp, StatusCode: 200,
		DNS: 2 * time.Millisecond, Connect: 10 * time.Millisecond, TLS: 25 * time.Millisecond,
		TTFB: time.Duration(40+(w+u)%160) * time.Millisecond, BodyBytes: 2600,
	}
	r.Total = r.TTFB + 5*time.Millisecond
	if (w+u+at.Second())%100 == 0 {
		r.Outcome, r.StatusCode, r.ErrorClass, r.ErrorMessage = store.OutcomeDown, 503, "status", "status 503 not in 200-399"
	}
	return r
}

// tableBytes is a partitioned table's size, its partitions, indexes and
// TOAST included.
func tableBytes(t *testing.T, pool *pgxpool.Pool, table string) int64 {
	var n int64
	if err := pool.QueryRow(t.Context(), `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree($1)`, table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// timeReads is the median time of n reads.
func timeReads(t *testing.T, n int, read func() error) time.Duration {
	times := make([]time.Duration, n)
	for i := range times {
		started := time.Now()
		if err := read(); err != nil {
			t.Fatal(err)
		}
		times[i] = time.Since(started)
	}
	slices.Sort(times)
	return times[n/2]
}
