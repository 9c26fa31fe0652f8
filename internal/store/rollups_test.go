package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRollupCountsEachResultOnce: results are counted in the minute and
// hour rollups once, however often they are redelivered, and however
// often the job runs.
func TestRollupCountsEachResultOnce(t *testing.T) {
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 1); err != nil {
		t.Fatal(err)
	}
	// 10 URLs, one check each every 30 s, for 10 minutes: 200 results;
	// every 7th down.
	batch := results(200, day0.Add(time.Hour), 30*time.Second)
	for _, b := range [][]Result{batch[:150], batch[100:], batch} {
		if _, err := s.Write(ctx, &Batch{Results: b}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Rollup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Rollup(ctx); err != nil {
		t.Fatal(err)
	}
	var up, down int64
	for _, r := range batch {
		if r.Outcome == OutcomeUp {
			up++
		} else {
			down++
		}
	}
	for _, table := range []string{TableMinuteRollups, TableHourRollups} {
		var checks, ups, latencyCount, rows int64
		if err := pool.QueryRow(ctx, "SELECT sum(checks), sum(up), sum(latency_count), count(*) FROM "+table).
			Scan(&checks, &ups, &latencyCount, &rows); err != nil {
			t.Fatal(err)
		}
		if checks != up+down || ups != up || latencyCount != up+down {
			t.Errorf("%s: %d checks, %d up, %d with a latency; want %d, %d, %d", table, checks, ups, latencyCount, up+down, up, up+down)
		}
		wantRows := int64(10 * 10) // 10 URLs × 10 minutes
		if table == TableHourRollups {
			wantRows = 10
		}
		if rows != wantRows {
			t.Errorf("%s: %d rows, want %d", table, rows, wantRows)
		}
	}
	if got := count(t, pool, ""); got != 200 {
		t.Errorf("%d results stored, want 200", got)
	}
	var pending int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM rollup_pending").Scan(&pending); err != nil || pending != 0 {
		t.Errorf("%d results still pending after the job, %v", pending, err)
	}
}

func TestWebsiteSummary(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	now := day0.Add(30 * time.Hour)
	if err := s.EnsurePartitions(ctx, day0, 2); err != nil {
		t.Fatal(err)
	}
	uid := "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11"
	result := func(at time.Time, outcome Outcome, latency time.Duration) Result {
		return Result{WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: "https://shop.example.com/",
			ScheduledAt: at, CheckedAt: at, Outcome: outcome, Total: latency}
	}
	var batch []Result
	// In the last hour: 90 up at 100 ms, 10 down at 2 s, 5 missed.
	for i := range 105 {
		at := now.Add(-time.Hour + time.Duration(i+1)*30*time.Second)
		switch {
		case i < 90:
			batch = append(batch, result(at, OutcomeUp, 100*time.Millisecond))
		case i < 100:
			batch = append(batch, result(at, OutcomeDown, 2*time.Second))
		default:
			batch = append(batch, result(at, OutcomeMissed, 0))
		}
	}
	// Earlier that day: 100 more up; and two days ago, outside both windows.
	for i := range 100 {
		batch = append(batch, result(now.Add(-20*time.Hour+time.Duration(i)*time.Minute), OutcomeUp, 50*time.Millisecond))
		batch = append(batch, result(now.Add(-48*time.Hour+time.Duration(i)*time.Minute), OutcomeDown, 0))
	}
	if _, err := s.Write(ctx, &Batch{Results: batch}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollup(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.WebsiteSummary(ctx, uid, now)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{
		// p95 of 90 × 100 ms and 10 × 2 s: rank 95 falls in the (1.5 s, 2 s] bucket.
		LastHour: Uptime{Checks: 100, Up: 90, Missed: 5, P95: 1750 * time.Millisecond},
		LastDay:  Uptime{Checks: 200, Up: 190, Missed: 5, P95: 150 * time.Millisecond},
	}
	// p95 over the day: rank 190 of 100 × 50 ms, 90 × 100 ms, 10 × 2 s:
	// the last of the 100 ms ones, at the top of the (75, 100] bucket.
	want.LastDay.P95 = 100 * time.Millisecond
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if r, ok := got.LastHour.Ratio(); !ok || r != 0.9 {
		t.Errorf("1h ratio %v, %v; want 0.9", r, ok)
	}
	if _, ok := (Uptime{}).Ratio(); ok {
		t.Error("a ratio without checks")
	}
}

func TestQuantile(t *testing.T) {
	// LatencyBounds start 5, 10, 25, 50 ms.
	for name, tc := range map[string]struct {
		q     float64
		count int64
		le    []int64
		want  time.Duration
	}{
		"no checks":          {0.95, 0, nil, 0},
		"all in the first":   {0.5, 10, []int64{10, 10, 10}, 2500 * time.Microsecond},
		"interpolated":       {0.5, 4, []int64{0, 2, 4}, 10 * time.Millisecond},
		"top of the bucket":  {1, 4, []int64{0, 2, 4}, 25 * time.Millisecond},
		"beyond every bound": {0.99, 10, make([]int64, len(LatencyBounds)), time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Quantile(tc.q, tc.count, tc.le); got != tc.want {
				t.Errorf("Quantile(%v, %d, %v) = %v, want %v", tc.q, tc.count, tc.le, got, tc.want)
			}
		})
	}
}

// TestStatesOnlyMoveForward: a URL's state and a plugin's history are
// only replaced by those of a newer check, whatever order batches land in.
func TestStatesOnlyMoveForward(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 1); err != nil {
		t.Fatal(err)
	}
	uid, url := "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", "https://shop.example.com/"
	id := URLID(uid, url)
	state := func(st string, at time.Time) URLState {
		return URLState{URLID: id, WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: url, State: st, Since: at, ScheduledAt: at}
	}
	history := func(n int, at time.Time) PluginState {
		return PluginState{URLID: id, Plugin: "html-stats", State: json.RawMessage(`{"n":` + string(rune('0'+n)) + `}`), ScheduledAt: at}
	}
	t1, t2, t3 := day0.Add(time.Hour), day0.Add(2*time.Hour), day0.Add(3*time.Hour)
	batches := []Batch{
		{URLs: []URLState{{URLID: id, WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: url}}},
		{URLs: []URLState{state("Down", t2), state("Up", t1)}, PluginStates: []PluginState{history(2, t2), history(1, t1)}},
		{URLs: []URLState{state("Up", t1)}, PluginStates: []PluginState{history(1, t1)}},                  // older: ignored
		{URLs: []URLState{{URLID: id, WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: url}}}, // a bare record keeps the state
		{URLs: []URLState{state("Up", t3)}},                           // newer: taken
		{PluginStates: []PluginState{history(3, t3), history(3, t3)}}, // duplicates in one batch
	}
	for i, b := range batches {
		if _, err := s.Write(ctx, &b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if i == 3 {
			urls, err := s.LoadURLs(ctx, []string{uid}, day0, 5)
			if err != nil || len(urls) != 1 || urls[0].State != "Down" || !urls[0].Since.Equal(t2) {
				t.Fatalf("after an older state and a bare record: %+v, %v; want Down since %v", urls, err, t2)
			}
		}
	}
	urls, err := s.LoadURLs(ctx, []string{uid}, day0, 5)
	if err != nil || len(urls) != 1 || urls[0].State != "Up" || !urls[0].Since.Equal(t3) {
		t.Errorf("final state: %+v, %v; want Up since %v", urls, err, t3)
	}
	states, err := s.LoadPluginStates(ctx, "html-stats", []int64{id})
	if err != nil || string(states[id].State) != `{"n": 3}` || !states[id].ScheduledAt.Equal(t3) {
		t.Errorf("plugin history: %+v, %v; want n 3 as of %v", states[id], err, t3)
	}
}

// TestLoadURLs: a checker taking a Website over reads each URL's state
// and its latest passed or failed results, newest first, up to a depth.
func TestLoadURLs(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.EnsurePartitions(ctx, day0, 1); err != nil {
		t.Fatal(err)
	}
	batch := results(50, day0.Add(time.Hour), 30*time.Second) // 10 URLs × 5 checks
	batch[49].Outcome = OutcomeMissed                         // the last check of URL 9
	var known []URLState
	for _, r := range batch[:10] {
		known = append(known, URLState{URLID: URLID(r.WebsiteUID, r.URL), WebsiteUID: r.WebsiteUID, Namespace: r.Namespace, Name: r.Name, URL: r.URL})
	}
	if _, err := s.Write(ctx, &Batch{Results: batch, URLs: known}); err != nil {
		t.Fatal(err)
	}
	urls, err := s.LoadURLs(ctx, []string{batch[0].WebsiteUID, "00000000-0000-0000-0000-000000000000"}, day0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(urls) != 10 {
		t.Fatalf("%d URLs, want 10", len(urls))
	}
	for _, u := range urls {
		if u.State != "Pending" || len(u.Recent) != 3 {
			t.Errorf("%s: state %q, %d recent results; want Pending, 3", u.URL, u.State, len(u.Recent))
			continue
		}
		latest := day0.Add(time.Hour + 4*30*time.Second)
		if u.URL == batch[9].URL {
			latest = latest.Add(-30 * time.Second) // its missed check is not a result to judge by
		}
		if !u.Recent[0].ScheduledAt.Equal(latest) || !u.Recent[0].ScheduledAt.After(u.Recent[1].ScheduledAt) {
			t.Errorf("%s: recent results from %v, %v; want newest first from %v", u.URL, u.Recent[0].ScheduledAt, u.Recent[1].ScheduledAt, latest)
		}
	}
}
