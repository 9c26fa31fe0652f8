package reliability

import (
	"context"
	"flag"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/task"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

var (
	outage = flag.Duration("reliability.outage", 10*time.Second,
		"how long the Kafka broker and PostgreSQL stay down (docs/reliability.md has the figures of 30s)")
	websites = flag.Int("reliability.websites", 20, "Websites of the load")
	urls     = flag.Int("reliability.urls", 50, "URLs per Website")
)

// TestReliability runs webmon as a whole (its chart on the local control
// plane: two scheduler replicas, two checkers) under a steady load, and
// breaks one part of it after another. A tap reads every task the
// schedulers publish; once the load is suspended at the end, what
// PostgreSQL holds is compared with it, scenario by scenario: every
// published task has exactly one result (missed if it reached a checker
// after its deadline), and the rollups count each result once.
func TestReliability(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole system under load takes minutes")
	}
	started := time.Now()
	r := &run{System: sys.Start(t, sys.Options{Name: "reliability", OwnPostgres: true})}
	r.install()
	r.startLoad()
	scenarios := []struct {
		name string
		run  func(*run, *window)
	}{
		{"checker_kill", (*run).checkerKill},
		{"scheduler_kill", (*run).schedulerKill},
		{"broker_down", (*run).brokerDown},
		{"postgres_down", (*run).postgresDown},
		{"apiserver_restart", (*run).apiserverRestart},
		{"operator_restart", (*run).operatorRestart},
	}
	for _, sc := range scenarios {
		if !r.scenario(sc.name, sc.run) {
			t.Fatalf("stopping after %s failed", sc.name)
		}
	}
	r.account()
	r.figures = append(r.figures, figure{"suite_s", seconds(time.Since(started))})
	r.report()
}

// run is the system under test with its load, the tap and the memory
// sampler, and the scenarios' windows.
type run struct {
	*sys.System
	tap      *tap
	mem      *memory
	counters *counters
	names    []string  // the load's Websites
	urls     []loadURL // and their URLs
	loadFrom time.Time // every URL has results from then on
	windows  []*window
	// figures are the run's own, printed after the scenarios'.
	figures []figure
}

func (r *run) on(t *testing.T) *run {
	c := *r
	c.System = r.On(t)
	return &c
}

// window is one scenario: the time it covers, what it measured, and what
// the schedulers counted as skipped in it.
type window struct {
	name     string
	from, to time.Time
	figures  []figure
	// skippedLate are the ticks the schedulers gave up before handing
	// them to Kafka: each must be missing from the topic.
	skippedLate float64
	// skippedUnacknowledged are the ticks Kafka failed to acknowledge
	// until they were too late: a write may reach the log while its
	// acknowledgement is lost (a broker killed between the two), so each
	// may or may not be in the topic.
	skippedUnacknowledged float64
}

type figure struct {
	key   string
	value float64
}

func (w *window) set(key string, v float64) { w.figures = append(w.figures, figure{key, v}) }

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*10) / 10 }

// install installs the chart as the scenarios need it: a standby for the
// scheduler, two checkers (no autoscaling, so that their count holds).
func (r *run) install() {
	r.Install(`scheduler:
  replicas: 2
checker:
  autoscaling:
    enabled: false
  replicas: 2
`)
	r.Eventually(time.Minute, "2 scheduler and 2 checker processes", func(context.Context) (bool, error) {
		sch, chk := r.Processes(shard0Prefix, "scheduler"), r.Processes(checkerPrefix, "checker")
		return len(sch) == 2 && len(chk) == 2, fmt.Errorf("schedulers %v, checkers %v", sch, chk)
	})
}

// startLoad starts the targets, the tap and the memory sampler, creates
// the load's Websites and waits until every URL has a result.
func (r *run) startLoad() {
	ctx := r.T.Context()
	servers := startTargets(r.T)
	r.tap = startTap(r.T, r.Broker.Addr)
	mctx, stop := context.WithCancel(context.Background())
	r.T.Cleanup(stop)
	r.mem = startMemory(mctx, r.System)
	r.counters = startCounters(mctx, r.System, skippedLateSample, skippedUnackSample, catchUpSample, publishErrorsSample)
	created := time.Now()
	for i := range *websites {
		ws := loadWebsite(i, *urls, servers)
		r.Must(r.Client.Create(ctx, ws))
		r.names = append(r.names, ws.Name)
		for _, u := range ws.Spec.URLs {
			r.urls = append(r.urls, loadURL{name: ws.Name, uid: string(ws.UID), url: string(u), interval: ws.Spec.Interval.Duration})
		}
	}
	r.Eventually(2*time.Minute, fmt.Sprintf("a result for each of the %d URLs", len(r.urls)), func(ctx context.Context) (bool, error) {
		var n int
		err := r.DB.QueryRow(ctx, `SELECT count(DISTINCT url_id) FROM check_results WHERE outcome = 'up' AND scheduled_at >= $1`, created).Scan(&n)
		return n == len(r.urls), fmt.Errorf("%d URLs checked: %w", n, err)
	})
	r.loadFrom = time.Now()
	perSecond := 0.0
	for _, u := range r.urls {
		perSecond += 1 / u.interval.Seconds()
	}
	r.figures = append(r.figures, figure{"load_websites", float64(*websites)}, figure{"load_urls", float64(len(r.urls))},
		figure{"load_checks_per_s", math.Round(perSecond)}, figure{"outage_s", outage.Seconds()})
	r.T.Logf("load: %d URLs of %d Websites, %.0f checks/s; every URL checked %s after creating them",
		len(r.urls), *websites, perSecond, time.Since(created).Round(100*time.Millisecond))
}

// scenario runs one scenario as a subtest, in a window of its own: it
// records the window's peak memory of each component, the restarts of
// their processes, and the ticks the schedulers counted as skipped.
func (r *run) scenario(name string, fn func(*run, *window)) bool {
	return r.T.Run(name, func(t *testing.T) {
		rr := r.on(t)
		w := &window{name: name, from: time.Now()}
		mem := r.mem.track()
		late0, unacked0 := r.counters.now(skippedLateSample), r.counters.now(skippedUnackSample)
		restarts0 := rr.restarts()
		fn(rr, w)
		w.to = time.Now()
		w.skippedLate = delta(late0, r.counters.now(skippedLateSample))
		w.skippedUnacknowledged = delta(unacked0, r.counters.now(skippedUnackSample))
		peaks := mem.stop()
		restarts := rr.restarts()
		for _, c := range components {
			w.set("peak_rss_mib_"+c, roundMiB(peaks[c]))
			if c != "broker" {
				n := int32(0)
				for pod, v := range restarts[c] {
					n += v - restarts0[c][pod]
				}
				w.set("restarts_"+c, float64(n))
			}
		}
		r.windows = append(r.windows, w)
		var live []string
		for _, f := range w.figures {
			live = append(live, f.key+"="+format(f.value))
		}
		t.Logf("%s took %s: %s", name, w.to.Sub(w.from).Round(100*time.Millisecond), strings.Join(live, " "))
	})
}

// perProcess reads a sample from each live process of a container, by
// process id: a restarted process starts its counters again.
func (r *run) perProcess(prefix, container, sample string) map[int]float64 {
	values := map[int]float64{}
	for pod, pid := range r.Processes(prefix, container) {
		v, err := r.Metric(types.NamespacedName{Namespace: sys.Namespace, Name: pod}, sample)
		if err == nil {
			values[pid] = v
		}
	}
	return values
}

// delta is how much the processes in end counted since start (all of it
// for those that started meanwhile).
func delta(start, end map[int]float64) float64 {
	d := 0.0
	for pid, v := range end {
		d += v - start[pid]
	}
	return d
}

func sum(values map[int]float64) float64 {
	s := 0.0
	for _, v := range values {
		s += v
	}
	return s
}

// restarts are the runner's restarts of each component's containers, by
// pod.
func (r *run) restarts() map[string]map[string]int32 {
	n := map[string]map[string]int32{}
	for _, c := range components[:3] {
		n[c] = map[string]int32{}
	}
	for _, pod := range r.Runner.Pods() {
		for _, c := range components[:3] {
			if ct, ok := r.Runner.Container(pod, c); ok {
				n[c][pod.Name] = ct.Restarts
			}
		}
	}
	return n
}

// resumed waits until a result of a task scheduled at or after since is
// stored for the Websites of every partition, and returns how long after
// since that was: the time to recover from an outage that ended then.
func (r *run) resumed(since time.Time, timeout time.Duration) float64 {
	r.T.Helper()
	want := map[int32]bool{}
	byUID := map[string]int32{}
	for _, u := range r.urls {
		p := partitionOf(u.uid, len(r.tap.Partitions))
		byUID[u.uid], want[p] = p, true
	}
	var at time.Duration
	r.Eventually(timeout, "results of tasks scheduled after "+since.Format(time.TimeOnly)+" on every partition", func(ctx context.Context) (bool, error) {
		rows, err := r.DB.Query(ctx, `SELECT DISTINCT website_uid::text FROM check_results WHERE scheduled_at >= $1`, since)
		if err != nil {
			return false, err
		}
		defer rows.Close()
		got := map[int32]bool{}
		for rows.Next() {
			var uid string
			if err := rows.Scan(&uid); err != nil {
				return false, err
			}
			if p, ok := byUID[uid]; ok {
				got[p] = true
			}
		}
		at = time.Since(since)
		return len(got) == len(want), rows.Err()
	})
	return seconds(at)
}

// account suspends the load, lets what was published drain into
// PostgreSQL and the rollups, and compares, window by window and over the
// whole run, what PostgreSQL holds with what the tap read.
func (r *run) account() {
	t, ctx := r.T, r.T.Context()
	end := time.Now()
	for _, name := range r.names {
		ws := &monitoringv1alpha1.Website{}
		r.Must(r.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, ws))
		patch := client.MergeFrom(ws.DeepCopy())
		ws.Spec.Suspend = true
		r.Must(r.Client.Patch(ctx, ws, patch))
	}
	suspended := time.Now()
	r.Eventually(time.Minute, "the schedulers to stop publishing", func(context.Context) (bool, error) {
		return time.Since(r.tap.QuietSince()) > 3*time.Second, nil
	})
	r.Must(r.tap.CatchUp(ctx, 30*time.Second))
	published := r.tap.snapshot()
	var stored map[checkKey]string
	r.Eventually(time.Minute, "a result for every task published", func(ctx context.Context) (bool, error) {
		var err error
		if stored, err = r.storedResults(ctx); err != nil {
			return false, err
		}
		missing := 0
		for k := range published {
			if _, ok := stored[k]; !ok {
				missing++
			}
		}
		return missing == 0, fmt.Errorf("%d of %d published tasks have no result yet", missing, len(published))
	})
	r.Eventually(30*time.Second, "the rollups to count every result", func(ctx context.Context) (bool, error) {
		var n int
		err := r.DB.QueryRow(ctx, `SELECT count(*) FROM rollup_pending`).Scan(&n)
		return err == nil && n == 0, err
	})
	buckets, err := r.rollupMismatches(ctx)
	r.Must(err)
	t.Logf("accounting: %d tasks published, %d results stored, %s after suspending the load",
		len(published), len(stored), time.Since(suspended).Round(100*time.Millisecond))

	whole := &window{name: "total", from: r.loadFrom, to: end}
	for _, w := range append(slices.Clone(r.windows), whole) {
		r.accountWindow(w, published, stored, buckets)
	}
	for _, f := range whole.figures {
		r.figures = append(r.figures, figure{"total_" + f.key, f.value})
	}
}

// accountWindow sets a window's figures from what was published in it
// (tasks scheduled within it) and what was stored, and checks them.
func (r *run) accountWindow(w *window, published map[checkKey]publishedTask, stored map[checkKey]string, buckets []bucketCount) {
	t := r.T
	in := func(at time.Time) bool { return !at.Before(w.from) && at.Before(w.to) }
	var nPublished, lost, doubled, missed, unmatched, unpublished, expected int
	var doubledExamples []string
	for k, p := range published {
		if p.trigger != task.TriggerSchedule || !in(p.scheduledAt) {
			continue
		}
		nPublished++
		if p.copies > 1 {
			doubled += p.copies - 1
			if len(doubledExamples) < 5 {
				doubledExamples = append(doubledExamples, fmt.Sprintf("%s %s at %s", p.uid, p.url, p.scheduledAt.Format(time.StampMilli)))
			}
		}
		if _, ok := stored[k]; !ok {
			lost++
		}
	}
	for k, outcome := range stored {
		at := time.UnixMicro(k.scheduledAt)
		if !in(at) {
			continue
		}
		if outcome == "missed" {
			missed++
		}
		if _, ok := published[k]; !ok {
			unmatched++
		}
	}
	var examples []string
	for _, u := range r.urls {
		for _, at := range u.dueIn(w.from, w.to) {
			expected++
			if _, ok := published[keyOf(u.uid, u.url, at)]; !ok {
				unpublished++
				if len(examples) < 5 {
					examples = append(examples, fmt.Sprintf("%s %s at %s", u.name, u.url, at.Format(time.StampMilli)))
				}
			}
		}
	}

	counted, uncounted := 0, 0
	for _, b := range buckets {
		if b.bucket.Add(time.Minute).After(w.from) && b.bucket.Before(w.to) {
			counted += max(0, b.rolled-b.rows)
			uncounted += max(0, b.rows-b.rolled)
		}
	}
	w.set("published", float64(nPublished))
	w.set("lost", float64(lost))
	w.set("duplicated", float64(counted))
	w.set("missed", float64(missed))
	w.set("unpublished_ticks", float64(unpublished))
	w.set("doubled_ticks", float64(doubled))
	if w.name != "total" {
		w.set("skipped_ticks_counted", w.skippedLate+w.skippedUnacknowledged)
		w.set("skipped_unacknowledged", w.skippedUnacknowledged)
	}
	switch {
	case lost > 0:
		t.Errorf("%s: %d of the %d tasks published have no result", w.name, lost, nPublished)
	case unmatched > 0:
		t.Errorf("%s: %d results of tasks the tap never read", w.name, unmatched)
	case counted > 0 || uncounted > 0:
		t.Errorf("%s: the minute rollups count %d results twice and %d not at all", w.name, counted, uncounted)
	case doubled > 0:
		t.Errorf("%s: %d ticks published twice, such as (Website UID, URL, scheduledAt) %v", w.name, doubled, doubledExamples)
	case w.name != "total" && (float64(unpublished) < w.skippedLate || float64(unpublished) > w.skippedLate+w.skippedUnacknowledged):
		t.Errorf("%s: %d of %d due ticks were not published, and the schedulers counted %v skipped late and %v unacknowledged; such as %v\n"+
			"scrapes of the schedulers' counters that failed: %v\nwhat the schedulers logged:\n%s",
			w.name, unpublished, expected, w.skippedLate, w.skippedUnacknowledged, examples, r.counters.misses(), r.schedulerEvents(w.from.Add(-time.Minute), w.to))
	}
}

// schedulerEvents are the lines of the schedulers' logs from..to that
// say who led when and what went wrong, for a failure message: the logs of
// a CI run are gone with its machine.
func (r *run) schedulerEvents(from, to time.Time) string {
	keep := func(line string) bool {
		at, err := time.Parse(time.RFC3339, logTime.FindString(line))
		if err != nil || at.Before(from.Truncate(time.Second)) || at.After(to.Add(time.Second)) {
			return false
		}
		for _, s := range []string{"lease", "leading", "leader", "resuming", "stopped publishing", "starting", `"error"`, "Kafka"} {
			if strings.Contains(line, s) {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, p := range r.Runner.Pods() {
		if strings.HasPrefix(p.Name, schedulerPrefix) {
			for _, l := range r.LogLines(p, "scheduler", 60, keep) {
				fmt.Fprintf(&b, "  %s| %s\n", p.Name, l)
			}
		}
	}
	return b.String()
}

// logTime finds the time of a log line: zap's "ts", or the runner's
// marker of a start.
var logTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// storedResults are the regular checks' results, by key, with their
// outcome.
func (r *run) storedResults(ctx context.Context) (map[checkKey]string, error) {
	rows, err := r.DB.Query(ctx, `SELECT url_id, scheduled_at, outcome FROM check_results WHERE trigger = 0`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := map[checkKey]string{}
	for rows.Next() {
		var k checkKey
		var at time.Time
		var outcome string
		if err := rows.Scan(&k.urlID, &at, &outcome); err != nil {
			return nil, err
		}
		k.scheduledAt = at.UnixMicro()
		stored[k] = outcome
	}
	return stored, rows.Err()
}

// bucketCount is a URL's minute whose results and rollup disagree.
type bucketCount struct {
	bucket       time.Time
	rows, rolled int
}

// rollupMismatches compares, per URL and minute, the results stored with
// what the minute rollups counted (checks and missed): a redelivered task
// counted twice shows here, since its row can only be stored once. The
// hour rollups are held to the minute ones.
func (r *run) rollupMismatches(ctx context.Context) ([]bucketCount, error) {
	rows, err := r.DB.Query(ctx, `
		WITH stored AS (SELECT url_id, date_trunc('minute', scheduled_at, 'UTC') AS bucket, count(*) AS n FROM check_results GROUP BY 1, 2),
		rolled AS (SELECT url_id, bucket, checks + missed AS n FROM rollups_minute)
		SELECT bucket, coalesce(stored.n, 0), coalesce(rolled.n, 0) FROM stored FULL JOIN rolled USING (url_id, bucket)
		WHERE coalesce(stored.n, 0) <> coalesce(rolled.n, 0)`)
	if err != nil {
		return nil, err
	}
	var out []bucketCount
	for rows.Next() {
		var b bucketCount
		if err := rows.Scan(&b.bucket, &b.rows, &b.rolled); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var hourly int
	err = r.DB.QueryRow(ctx, `
		WITH m AS (SELECT url_id, date_trunc('hour', bucket, 'UTC') AS bucket, sum(checks) AS checks, sum(missed) AS missed FROM rollups_minute GROUP BY 1, 2)
		SELECT count(*) FROM m FULL JOIN rollups_hour h USING (url_id, bucket)
		WHERE coalesce(m.checks, 0) <> coalesce(h.checks, 0) OR coalesce(m.missed, 0) <> coalesce(h.missed, 0)`).Scan(&hourly)
	if err != nil {
		return nil, err
	}
	if hourly > 0 {
		r.T.Errorf("%d URL hours where the hour rollups disagree with the minute rollups", hourly)
	}
	return out, nil
}

// report prints every figure as a key=value line, scenario by scenario,
// for `make test-reliability` and docs/reliability.md.
func (r *run) report() {
	for _, w := range r.windows {
		for _, f := range w.figures {
			r.T.Log(w.name + "_" + f.key + "=" + format(f.value))
		}
	}
	for _, f := range r.figures {
		r.T.Log(f.key + "=" + format(f.value))
	}
}

func format(v float64) string {
	if v == math.Trunc(v) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// lastChecks are the Websites' status lastCheckTime, by name.
func (r *run) lastChecks(ctx context.Context) (map[string]time.Time, error) {
	var list monitoringv1alpha1.WebsiteList
	if err := r.Client.List(ctx, &list, client.InNamespace("default")); err != nil {
		return nil, err
	}
	last := map[string]time.Time{}
	for _, ws := range list.Items {
		if ws.Status.LastCheckTime != nil {
			last[ws.Name] = ws.Status.LastCheckTime.Time
		}
	}
	return last, nil
}
