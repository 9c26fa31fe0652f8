package scale

import (
	"context"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

var (
	e2eURLs     = flag.Int("scale.urls", 2000, "URLs of the end-to-end run (100 per Website)")
	e2eInterval = flag.Duration("scale.interval", 10*time.Second, "interval of every URL")
	e2eDuration = flag.Duration("scale.duration", 30*time.Second, "how long the end-to-end run is measured, after the warm-up")
	e2eWarmup   = flag.Duration("scale.warmup", 10*time.Second, "how long the system runs with every URL checked before it is measured")
	e2eTargets  = flag.Int("scale.targets", 4, "local target servers (in one process of their own)")
	e2eShards   = flag.Int("scale.shards", 1, "scheduler shards")
	e2eCheckers = flag.Int("scale.checkers", 1, "checker replicas (no autoscaling)")
	e2eSample   = flag.Int("scale.delay-sample", 200, "URLs whose results are watched for the scheduledAt-to-stored delay")
	e2eDrain    = flag.Duration("scale.drain", 3*time.Minute, "how long the published tasks may take to be stored once the load is suspended")
	e2eChkArgs  = flag.String("scale.checker-args", "", "extra arguments of the checkers, comma-separated (e.g. --pprof-bind-address=127.0.0.1:0, for profiling)")
	e2eGoals    = flag.Bool("scale.goals", false, "fail when the run sustains less than 95% of the target checks per second")
)

// figures are a run's results, printed in order as key=value lines.
type figures struct {
	keys   []string
	values map[string]float64
}

func (f *figures) set(key string, v float64) {
	if f.values == nil {
		f.values = map[string]float64{}
	}
	if _, ok := f.values[key]; !ok {
		f.keys = append(f.keys, key)
	}
	f.values[key] = v
}

func (f *figures) report(t *testing.T) {
	for _, k := range f.keys {
		t.Log(k + "=" + format(f.values[k]))
	}
}

func format(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }

// e2e is one end-to-end run: the system, its load, and what watches it.
type e2e struct {
	*sys.System
	targets *targetServers
	res     *resources
	tap     *tap
	load    *load
	watch   *storedWatch
	fig     figures
	// from and to bound the measured window, of scheduledAt and of the
	// processes' counters.
	from, to time.Time
	// cpu and peaks are each component's CPU time in the window and peak
	// memory.
	cpu   map[string]time.Duration
	peaks map[string]float64
	// loadClient creates and suspends the Websites, without the default
	// client's throttling (5 requests a second).
	loadClient client.Client
}

func fastClient(s *sys.System) (client.Client, error) {
	cfg := rest.CopyConfig(s.CP.Config)
	cfg.QPS, cfg.Burst = 200, 400
	return client.New(cfg, client.Options{Scheme: s.Client.Scheme()})
}

// TestEndToEndAtScale runs the whole system (its chart on the local
// control plane: operator, scheduler shards, the embedded broker as a
// process, checkers, PostgreSQL, statuses) with -scale.urls URLs every
// -scale.interval against local target servers in a process of their own,
// and measures it for -scale.duration: checks per second, lateness,
// delays, each component's CPU per 1,000 checks and peak memory, status
// writes. Then it suspends the load, lets it drain, and holds what
// PostgreSQL stored to what a tap read from the topic: nothing lost,
// nothing counted twice.
func TestEndToEndAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole system takes minutes")
	}
	r := &e2e{System: sys.Start(t, sys.Options{Name: "scale", OwnPostgres: true})}
	r.targets = startTargets(t, *e2eTargets)
	r.res = &resources{s: r.System, targets: r.targets.pid}
	r.install()
	r.startLoad()
	r.measure()
	r.drain()
	r.account()
	r.fig.report(t)
}

func (r *e2e) install() {
	r.Install(fmt.Sprintf(`scheduler:
  shards: %d
checker:
  autoscaling:
    enabled: false
  replicas: %d
  # The production status interval (30 s): the tests' 2 s would be a
  # status write per Website every 2 s.
  env:
  - {name: WEBMON_DRAIN_TIMEOUT, value: 5s}
  extraArgs: %s
`, *e2eShards, *e2eCheckers, yamlList(*e2eChkArgs)))
	r.Eventually(2*time.Minute, "the checkers' processes", func(context.Context) (bool, error) {
		chk := r.Processes(checkerPrefix, "checker")
		return len(chk) == *e2eCheckers, fmt.Errorf("checkers %v", chk)
	})
}

// startLoad creates the Websites and waits until every URL was checked
// once, and the warm-up.
func (r *e2e) startLoad() {
	t, ctx := r.T, r.T.Context()
	mctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	r.res.samplePostgres(mctx)
	r.tap = startTap(t, r.Broker.Addr)
	created := time.Now()
	var err error
	if r.loadClient, err = fastClient(r.System); err != nil {
		t.Fatal(err)
	}
	if r.load, err = createLoad(ctx, r.loadClient, *e2eURLs, *e2eInterval, r.targets.addrs); err != nil {
		t.Fatalf("creating the load: %v", err)
	}
	t.Logf("created %d Websites (%d URLs) in %s", len(r.load.names), len(r.load.urls), time.Since(created).Round(100*time.Millisecond))
	r.Eventually(2*time.Minute+3**e2eInterval, "the scheduler shards", func(context.Context) (bool, error) {
		sch := r.Processes(schedulerPrefix, "scheduler")
		return len(sch) == *e2eShards, fmt.Errorf("schedulers %v", sch)
	})
	r.watch = watchStored(mctx, r.DB, r.load.sample(*e2eSample), 250*time.Millisecond)
	// Every URL published once (a checker that cannot keep up stores
	// late tasks as missed, so "every URL checked" may never come).
	r.Eventually(5*time.Minute+3**e2eInterval, "a task published for every URL", func(context.Context) (bool, error) {
		n := r.tap.urlsSeen()
		return n >= len(r.load.urls), fmt.Errorf("%d of %d URLs published", n, len(r.load.urls))
	})
	t.Logf("every URL published %s after creating them; warming up for %s", time.Since(created).Round(100*time.Millisecond), *e2eWarmup)
	time.Sleep(*e2eWarmup)
}

// counters are the processes' counters the window is measured with.
type counters struct {
	cpu                cpuSnapshot
	lateness, writeDur bucketCounts
	statusWrites       float64
	skipped            float64
}

func (r *e2e) counters() counters {
	c := counters{cpu: r.res.cpu(), lateness: bucketCounts{}, writeDur: bucketCounts{}}
	for pod := range r.Processes(schedulerPrefix, "scheduler") {
		key := types.NamespacedName{Namespace: sys.Namespace, Name: pod}
		s, err := r.Samples(key, "webmon_scheduler_")
		r.Must(err)
		c.lateness.addBuckets(withPrefix(s, "webmon_scheduler_lateness_seconds_bucket"))
		c.skipped += s[`webmon_scheduler_skipped_ticks_total{reason="late"}`] + s[`webmon_scheduler_skipped_ticks_total{reason="unacknowledged"}`]
	}
	for pod := range r.Processes(checkerPrefix, "checker") {
		key := types.NamespacedName{Namespace: sys.Namespace, Name: pod}
		s, err := r.Samples(key, "webmon_")
		r.Must(err)
		c.writeDur.addBuckets(withPrefix(s, "webmon_store_write_seconds_bucket"))
		c.statusWrites += s[`webmon_checker_status_writes_total{result="written"}`]
	}
	return c
}

func withPrefix(samples map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range samples {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// measure runs the window and sets the figures the processes' counters
// give.
func (r *e2e) measure() {
	r.from = time.Now()
	start := r.counters()
	r.T.Logf("measuring for %s", *e2eDuration)
	time.Sleep(*e2eDuration)
	r.to = time.Now()
	end := r.counters()
	secs := r.to.Sub(r.from).Seconds()
	r.cpu = cpuSince(start.cpu, end.cpu)
	lateness := end.lateness.minus(start.lateness)
	writes := end.writeDur.minus(start.writeDur)
	r.fig.set("e2e_urls", float64(len(r.load.urls)))
	r.fig.set("e2e_websites", float64(len(r.load.names)))
	r.fig.set("e2e_interval_s", r.load.interval.Seconds())
	r.fig.set("e2e_shards", float64(*e2eShards))
	r.fig.set("e2e_checkers", float64(*e2eCheckers))
	r.fig.set("e2e_targets", float64(*e2eTargets))
	r.fig.set("e2e_duration_s", math.Round(secs*10)/10)
	r.fig.set("e2e_target_checks_per_s", float64(len(r.load.urls))/r.load.interval.Seconds())
	r.fig.set("lateness_p50_ms", ms(time.Duration(lateness.quantile(0.5)*float64(time.Second))))
	r.fig.set("lateness_p99_ms", ms(time.Duration(lateness.quantile(0.99)*float64(time.Second))))
	r.fig.set("store_write_p50_ms", ms(time.Duration(writes.quantile(0.5)*float64(time.Second))))
	r.fig.set("store_write_p99_ms", ms(time.Duration(writes.quantile(0.99)*float64(time.Second))))
	r.fig.set("e2e_skipped_ticks", end.skipped-start.skipped)
	r.fig.set("status_writes_per_s", math.Round((end.statusWrites-start.statusWrites)/secs*10)/10)
	r.peaks = r.res.peakMiB()
}

// yamlList writes comma-separated values as a YAML flow sequence.
func yamlList(csv string) string {
	var quoted []string
	for v := range strings.SplitSeq(csv, ",") {
		if v != "" {
			quoted = append(quoted, strconv.Quote(v))
		}
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
