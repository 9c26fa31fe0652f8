package scale

import (
	"context"
	"fmt"
	"math"
	"time"
)

// drain suspends the load and waits until the tap has read everything
// published and PostgreSQL holds a result for every task of the window.
func (r *e2e) drain() {
	t, ctx := r.T, r.T.Context()
	suspended := time.Now()
	r.Must(r.load.suspend(ctx, r.loadClient))
	r.Eventually(time.Minute, "the schedulers to stop publishing", func(context.Context) (bool, error) {
		return time.Since(r.tap.QuietSince()) > 3*time.Second, nil
	})
	r.Must(r.tap.CatchUp(ctx, time.Minute))
	want := len(r.tap.published(r.from, r.to))
	r.Eventually(*e2eDrain, "a result for every task of the window", func(ctx context.Context) (bool, error) {
		n := r.Count(ctx, `SELECT count(*) FROM check_results WHERE trigger = 0 AND scheduled_at >= $1 AND scheduled_at < $2`, r.from, r.to)
		return n >= want, fmt.Errorf("%d of %d results stored", n, want)
	})
	r.Eventually(time.Minute, "the rollups to count every result", func(ctx context.Context) (bool, error) {
		return r.Count(ctx, `SELECT count(*) FROM rollup_pending`) == 0, nil
	})
	t.Logf("drained %s after suspending the load", time.Since(suspended).Round(100*time.Millisecond))
}

// account holds what PostgreSQL stored for the window to what the tap read,
// and sets the figures that PostgreSQL gives.
func (r *e2e) account() {
	t, ctx := r.T, r.T.Context()
	published := r.tap.published(r.from, r.to)
	stored, err := r.storedKeys(ctx)
	r.Must(err)
	lost, doubled, unmatched := 0, 0, 0
	for k, copies := range published {
		if _, ok := stored[k]; !ok {
			lost++
		}
		doubled += int(copies) - 1
	}
	for k := range stored {
		if _, ok := published[k]; !ok {
			unmatched++
		}
	}
	overcounted, uncounted := r.rollupMismatches(ctx)
	r.fig.set("e2e_due", float64(r.load.due(r.from, r.to)))
	r.fig.set("e2e_published", float64(len(published)))
	r.fig.set("e2e_stored", float64(len(stored)))
	r.fig.set("e2e_lost", float64(lost))
	r.fig.set("e2e_duplicated", float64(doubled+overcounted))
	r.fig.set("e2e_unmatched", float64(unmatched))
	r.fig.set("e2e_missed", float64(r.Count(ctx, `SELECT count(*) FROM check_results
		WHERE trigger = 0 AND outcome = 'missed' AND scheduled_at >= $1 AND scheduled_at < $2`, r.from, r.to)))
	checks := r.Count(ctx, `SELECT count(*) FROM check_results WHERE outcome <> 'missed' AND checked_at >= $1 AND checked_at < $2`, r.from, r.to)
	secs := r.to.Sub(r.from).Seconds()
	r.fig.set("e2e_checks_per_s", math.Round(float64(checks)/secs))
	r.checkDelays(ctx)
	delays := r.watch.stop(ctx, r.from, r.to)
	r.fig.set("e2e_delay_p50_ms", ms(quantile(delays, 0.5)))
	r.fig.set("e2e_delay_p99_ms", ms(quantile(delays, 0.99)))
	r.fig.set("e2e_delay_samples", float64(len(delays)))
	for _, c := range components {
		r.fig.set("cpu_s_per_1k_checks_"+c, math.Round(r.cpu[c].Seconds()/float64(max(checks, 1))*1000*1000)/1000)
	}
	for _, c := range components {
		r.fig.set("cpu_cores_"+c, math.Round(r.cpu[c].Seconds()/secs*100)/100)
	}
	for _, c := range components {
		if c != "harness" {
			r.fig.set("peak_rss_mib_"+c, math.Round(r.peaks[c]))
		}
	}

	target := r.fig.values["e2e_target_checks_per_s"]
	switch {
	case lost > 0:
		t.Errorf("%d of the %d tasks published in the window have no result", lost, len(published))
	case unmatched > 0:
		t.Errorf("%d results of the window's tasks the tap never read", unmatched)
	case doubled > 0:
		t.Errorf("%d ticks published twice", doubled)
	case overcounted > 0 || uncounted > 0:
		t.Errorf("the minute rollups count %d results twice and %d not at all", overcounted, uncounted)
	case len(published) == 0:
		t.Error("nothing was published in the window")
	case *e2eGoals && float64(checks)/secs < 0.95*target:
		t.Errorf("%.0f checks/s sustained, goal %.0f", float64(checks)/secs, target)
	}
}

// storedKeys are the keys of the regular checks stored for the window.
func (r *e2e) storedKeys(ctx context.Context) (map[checkKey]bool, error) {
	rows, err := r.DB.Query(ctx, `SELECT url_id, scheduled_at FROM check_results
		WHERE trigger = 0 AND scheduled_at >= $1 AND scheduled_at < $2`, r.from, r.to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := map[checkKey]bool{}
	for rows.Next() {
		var k checkKey
		var at time.Time
		if err := rows.Scan(&k.urlID, &at); err != nil {
			return nil, err
		}
		k.scheduledAt = at.UnixMicro()
		stored[k] = true
	}
	return stored, rows.Err()
}

// rollupMismatches compares, per URL and minute from the window's start,
// the results stored with what the minute rollups counted, the results
// still pending a rollup included (one snapshot: each stored result is in
// exactly one of the two): a redelivered result counted twice shows here,
// since its row is stored once.
func (r *e2e) rollupMismatches(ctx context.Context) (overcounted, uncounted int) {
	r.Must(r.DB.QueryRow(ctx, `
		WITH since AS (SELECT date_trunc('minute', $1::timestamptz, 'UTC') AS t),
		stored AS (SELECT url_id, date_trunc('minute', scheduled_at, 'UTC') AS bucket, count(*) AS n FROM check_results, since
			WHERE scheduled_at >= since.t GROUP BY 1, 2),
		counted AS (SELECT url_id, bucket, checks + missed AS n FROM rollups_minute, since WHERE bucket >= since.t
			UNION ALL
			SELECT url_id, date_trunc('minute', scheduled_at, 'UTC'), count(*) FROM rollup_pending, since
			WHERE scheduled_at >= since.t GROUP BY 1, 2),
		rolled AS (SELECT url_id, bucket, sum(n) AS n FROM counted GROUP BY 1, 2)
		SELECT coalesce(sum(greatest(coalesce(rolled.n, 0) - coalesce(stored.n, 0), 0)), 0)::bigint,
			coalesce(sum(greatest(coalesce(stored.n, 0) - coalesce(rolled.n, 0), 0)), 0)::bigint
		FROM stored FULL JOIN rolled USING (url_id, bucket)`, r.from).Scan(&overcounted, &uncounted))
	return overcounted, uncounted
}

// checkDelays sets the delays from scheduledAt to checked_at (when the
// checker made the check) of every check of the window.
func (r *e2e) checkDelays(ctx context.Context) {
	var p50, p99 float64
	r.Must(r.DB.QueryRow(ctx, `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0), coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0)
		FROM (SELECT extract(epoch FROM checked_at - scheduled_at) AS d FROM check_results
			WHERE trigger = 0 AND outcome <> 'missed' AND scheduled_at >= $1 AND scheduled_at < $2) AS w`, r.from, r.to).Scan(&p50, &p99))
	r.fig.set("e2e_check_delay_p50_ms", math.Round(p50*10000)/10)
	r.fig.set("e2e_check_delay_p99_ms", math.Round(p99*10000)/10)
}
