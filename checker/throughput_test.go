package checker

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
	"github.com/webmon-dev/webmon/test/testbed"
)

// `make bench-checker` runs TestCheckerThroughput large with the goals on;
// `make test` runs it small, as a check that the harness works, without
// judging figures taken under the race detector.
var (
	throughputTasks   = flag.Int("throughput.tasks", 3000, "tasks the checker benchmark checks end to end")
	throughputPhase   = flag.Duration("throughput.duration", time.Second, "how long the HTTP and COPY ceilings are measured")
	throughputGoals   = flag.Bool("throughput.goals", false, "fail the checker benchmark when a figure misses its goal")
	throughputReuse   = flag.Bool("throughput.reuse-connections", false, "check with reused connections (--reuse-connections) instead of a fresh one per check, in the ceiling too")
	throughputPlugins = flag.String("throughput.plugins", "", "plugins the benchmark's Websites enable, comma-separated (html-stats parses every page)")
	throughputConc    = flag.Int("throughput.concurrency", 0, "checks at once, in the checker and the raw loop (0: the checker's default)")
	throughputProf    = flag.String("throughput.cpuprofile", "", "write a CPU profile of the end-to-end phase to this file")
	throughputRounds  = flag.Int("throughput.rounds", 3, "rounds of ceilings and checker; the figures are their medians")
)

// The benchmark's Websites: 200 of 50 URLs each over 4 target servers,
// checked as many rounds as the tasks take.
const (
	benchWebsites       = 200
	benchURLsPerWebsite = 50
	benchTargets        = 4
)

// benchPeerEnv makes the test binary the benchmark's peer process: the
// target sites and the Kafka broker, out of the checker's process so that
// the checker's CPU time is its own.
const benchPeerEnv = "WEBMON_CHECKER_BENCH_PEER"

// benchPage is the targets' page: 2.6 kB of HTML, a small real page.
var benchPage = "<!doctype html><html><head><title>Shop</title><script src=/app.js></script></head><body>" +
	strings.Repeat(`<div class="item"><a href="/p">Product</a> <img src="/i.png"> <p>a few words of description here</p></div>`, 24) +
	"</body></html>"

// runBenchPeer serves the targets and the broker until its stdin closes.
func runBenchPeer() int {
	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{Partitions: 8})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer broker.Close()
	var targets []string
	for range benchTargets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, benchPage)
		})}
		go func() { _ = srv.Serve(ln) }()
		targets = append(targets, ln.Addr().String())
	}
	testbed.ServePeer("brokers="+strings.Join(broker.Addrs(), ","), "targets="+strings.Join(targets, ","))
	return 0
}

// benchPeer is the running peer process.
type benchPeer struct {
	brokers, targets []string
}

func startBenchPeer(t *testing.T) *benchPeer {
	t.Helper()
	p := testbed.StartPeer(t, benchPeerEnv+"=1", "brokers", "targets")
	return &benchPeer{brokers: p.List("brokers"), targets: p.List("targets")}
}

// TestCheckerThroughput measures, in one run on this machine: (a) a raw Go
// HTTP client loop against the benchmark's targets with the checker's
// concurrency and connection policy (a fresh connection per check); (b)
// raw CopyFrom of result rows into check_results, and the store's
// idempotent Write of the same rows; (c) the checker end to end, from
// tasks waiting in Kafka to results in PostgreSQL and statuses in the API
// server. It prints them as key=value lines.
func TestCheckerThroughput(t *testing.T) {
	peer := startBenchPeer(t)
	bench := newCheckerBench(t, peer)
	opts := benchOptions()
	// The shared machine's speed drifts by tens of percent within a
	// minute: ceilings and checker alternate, round after round, and the
	// figures are the medians of the rounds. The HTTP ceiling of a round
	// is the mean of the raw loop just before the checker and just after
	// it (the next round's before), so that a drift during the round
	// weighs on both sides alike.
	var httpCeilings, httpPerCPU, copyCeilings, storeRates, rates, httpRatios, copyRatios, perCPU []float64
	var run checkerRun
	nextRaw, nextRawCPU := rawHTTPRate(t, peer.targets, opts.Concurrency, *throughputPhase)
	for round := range *throughputRounds {
		copyCeiling, storeRate := copyRates(t, round, opts.BatchSize, *throughputPhase)
		before, beforeCPU := nextRaw, nextRawCPU
		run = bench.run(round, *throughputTasks)
		nextRaw, nextRawCPU = rawHTTPRate(t, peer.targets, opts.Concurrency, *throughputPhase)
		httpCeiling, httpCPU := (before+nextRaw)/2, (beforeCPU+nextRawCPU)/2
		t.Logf("round %d: http ceiling %.0f/s (%.0f per CPU second), checker %.0f/s (%.2f, %.0f per CPU second); copy ceiling %.0f rows/s, store %.0f rows/s (%.2f)",
			round, httpCeiling, httpCPU, run.rate, run.rate/httpCeiling, run.perCPU(), copyCeiling, storeRate, storeRate/copyCeiling)
		httpPerCPU = append(httpPerCPU, httpCPU)
		httpCeilings, copyCeilings, storeRates = append(httpCeilings, httpCeiling), append(copyCeilings, copyCeiling), append(storeRates, storeRate)
		rates, perCPU = append(rates, run.rate), append(perCPU, run.perCPU())
		httpRatios, copyRatios = append(httpRatios, run.rate/httpCeiling), append(copyRatios, storeRate/copyCeiling)
	}
	ratioVsHTTP, ratioVsCopy, checksPerCPU := median(httpRatios), median(copyRatios), median(perCPU)
	for _, line := range []string{
		fmt.Sprintf("rounds=%d", *throughputRounds),
		fmt.Sprintf("tasks=%d", run.tasks),
		fmt.Sprintf("concurrency=%d", opts.Concurrency),
		fmt.Sprintf("reuse_connections=%v", *throughputReuse),
		fmt.Sprintf("plugins=%s", *throughputPlugins),
		fmt.Sprintf("http_ceiling_per_s=%.0f", median(httpCeilings)),
		fmt.Sprintf("copy_ceiling_rows_per_s=%.0f", median(copyCeilings)),
		fmt.Sprintf("checker_per_s=%.0f", median(rates)),
		fmt.Sprintf("ratio_vs_http=%.2f", ratioVsHTTP),
		fmt.Sprintf("store_rows_per_s=%.0f", median(storeRates)),
		fmt.Sprintf("ratio_vs_copy=%.2f", ratioVsCopy),
		fmt.Sprintf("checks_per_cpu_s=%.0f", checksPerCPU),
		fmt.Sprintf("http_ceiling_per_cpu_s=%.0f", median(httpPerCPU)),
		fmt.Sprintf("cpu_ratio_vs_http=%.2f", checksPerCPU/median(httpPerCPU)),
		fmt.Sprintf("status_writes=%d", run.statusWrites),
	} {
		t.Log(line)
	}
	if *throughputGoals {
		if ratioVsHTTP < 0.7 {
			t.Errorf("ratio_vs_http %.2f: under the goal of 0.7", ratioVsHTTP)
		}
		if ratioVsCopy < 0.7 {
			t.Errorf("ratio_vs_copy %.2f: under the goal of 0.7", ratioVsCopy)
		}
		if checksPerCPU < 5000 {
			t.Errorf("%.0f checks per CPU second of the checker: under the goal of 5,000", checksPerCPU)
		}
	}
}

func median(xs []float64) float64 {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// rawHTTPRate is the HTTP ceiling: concurrency goroutines getting the
// targets' page in a loop, each on a fresh connection, the body read as
// the probe reads it.
func rawHTTPRate(t *testing.T, targets []string, concurrency int, d time.Duration) (rate, perCPU float64) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: !*throughputReuse, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: concurrency}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var done, failed atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	start, cpuBefore := time.Now(), testbed.ProcessCPU(t)
	for i := range concurrency {
		wg.Go(func() {
			url := "http://" + targets[i%len(targets)] + "/"
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20+1))
				_ = resp.Body.Close()
				if err != nil {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), testbed.ProcessCPU(t)-cpuBefore
	if n := failed.Load(); n > done.Load()/100 {
		t.Fatalf("the HTTP ceiling failed %d requests of %d", n, n+done.Load())
	}
	return float64(done.Load()) / elapsed.Seconds(), float64(done.Load()) / cpu.Seconds()
}

// copyRates are the COPY ceiling, raw CopyFrom of result rows into
// check_results in batches of batchSize, and the store's rate for the same
// batches through Write (idempotent: the COPY, the rollup queue and the URL
// states in one transaction).
func copyRates(t *testing.T, round, batchSize int, d time.Duration) (ceiling, write float64) {
	t.Helper()
	ctx := t.Context()
	at := time.Now().Add(24*time.Hour + time.Duration(round)*time.Hour)
	batch := func(round int, uid string) []store.Result {
		rs := make([]store.Result, batchSize)
		for i := range rs {
			rs[i] = store.Result{
				WebsiteUID: uid, Namespace: "bench", Name: "copy", URL: fmt.Sprintf("https://shop.example.com/p/%d", i%500), URLIndex: i % 500,
				ScheduledAt: at.Add(time.Duration(round*batchSize+i) * time.Millisecond), CheckedAt: at,
				Outcome: store.OutcomeUp, StatusCode: 200, Connect: 200 * time.Microsecond, TTFB: time.Millisecond, Total: 2 * time.Millisecond,
				BodyBytes: len(benchPage), Plugins: []byte(`[{"name":"html-stats","result":"OK","message":"learning: 3 of 10 checks"}]`),
			}
		}
		return rs
	}
	measure := func(write func(round int) error) float64 {
		start := time.Now()
		rows := 0
		for round := 0; time.Since(start) < d; round++ {
			if err := write(round); err != nil {
				t.Fatal(err)
			}
			rows += batchSize
		}
		return float64(rows) / time.Since(start).Seconds()
	}
	const copyUID, writeUID = "00000000-0000-4000-8000-00000000c0de", "00000000-0000-4000-8000-00000000face"
	ceiling = measure(func(round int) error {
		rs := batch(round, copyUID)
		_, err := db.CopyFrom(ctx, pgx.Identifier{store.TableResults}, store.ResultColumns, pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
			return rs[i].Row(), nil
		}))
		return err
	})
	write = measure(func(round int) error {
		_, err := st.Write(ctx, &store.Batch{Results: batch(round, writeUID)})
		return err
	})
	return ceiling, write
}

// checkerRun is what an end-to-end round measured.
type checkerRun struct {
	tasks        int
	rate         float64
	cpu          time.Duration
	statusWrites int
}

func (r checkerRun) perCPU() float64 { return float64(r.tasks) / r.cpu.Seconds() }

// checkerBench is the end-to-end phase's Websites and Kafka settings.
type checkerBench struct {
	t        *testing.T
	bed      *bed
	peer     *benchPeer
	kafka    kafka.Config
	websites []*monitoringv1alpha1.Website
}

// newCheckerBench creates the benchmark's Websites: 200 of 50 URLs each,
// over the peer's targets, with a typical Website's expectations.
func newCheckerBench(t *testing.T, peer *benchPeer) *checkerBench {
	t.Helper()
	cb := &checkerBench{t: t, bed: newBed(t), peer: peer, kafka: kafka.Config{Brokers: peer.brokers, ClientID: "checker-bench"}}
	for i := range benchWebsites {
		target := peer.targets[i%len(peer.targets)]
		var urls []string
		for j := range benchURLsPerWebsite {
			urls = append(urls, fmt.Sprintf("http://%s/site-%d/page-%d", target, i, j))
		}
		cb.websites = append(cb.websites, cb.bed.website(fmt.Sprintf("site-%03d", i), urls, func(s *monitoringv1alpha1.WebsiteSpec) {
			s.Interval = metav1.Duration{Duration: time.Hour}
			s.Expect.StatusCodes = []monitoringv1alpha1.StatusCodeRange{"200-299"}
			s.Expect.MaxLatency = &metav1.Duration{Duration: 2 * time.Second}
			for _, name := range strings.FieldsFunc(*throughputPlugins, func(r rune) bool { return r == ',' }) {
				s.Plugins = append(s.Plugins, monitoringv1alpha1.PluginSpec{Name: name})
			}
		}))
	}
	return cb
}

// run publishes the round's tasks to a topic of its own first, then
// starts a checker with the default settings and times it from its first
// stored batch to its last.
func (cb *checkerBench) run(round, tasks int) checkerRun {
	t := cb.t
	t.Helper()
	ctx := t.Context()
	topic, group := fmt.Sprintf("%s-round-%d", cb.bed.topic, round), fmt.Sprintf("%s-round-%d", cb.bed.group, round)
	pc, err := cb.kafka.Producer()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(cb.peer.brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopic(admin, kafka.TopicSpec{Name: topic, Partitions: 8, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close()
	// Each round checks later ticks than the one before: new results.
	since := time.Now()
	publishRounds(t, pc, cb.peer.brokers, topic, cb.websites, tasks, since)

	cc, err := cb.kafka.Consumer()
	if err != nil {
		t.Fatal(err)
	}
	opts := benchOptions()
	opts.Kafka, opts.Brokers, opts.Topic, opts.Group = cc, cb.peer.brokers, topic, group
	opts.Probe.UserAgent = "webmon/bench"
	opts.Probe.ReuseConnections = *throughputReuse
	opts.Store = st
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Client, opts.Reader, opts.Recorder = mgr.GetClient(), mgr.GetAPIReader(), mgr.GetEventRecorder("webmon-checker")
	opts.Metrics = metrics.NewChecker(prometheus.NewRegistry())
	opts.Log = ctrl.Log.WithName("checker-bench")
	c := New(opts)
	if err := mgr.Add(c); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	if *throughputProf != "" && round == 0 {
		f, err := os.Create(*throughputProf)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	cpuBefore := testbed.ProcessCPU(t)
	go func() { stopped <- mgr.Start(runCtx) }()

	stored := func() int { return int(testutil.ToFloat64(opts.Metrics.Results.WithLabelValues("new"))) }
	var first time.Time
	firstStored := 0
	deadline := time.Now().Add(10*time.Minute + time.Duration(tasks)*time.Millisecond)
	for stored() < tasks {
		if n := stored(); n > 0 && first.IsZero() {
			first, firstStored = time.Now(), n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d results stored before the deadline", stored(), tasks)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(first)
	cpu := testbed.ProcessCPU(t) - cpuBefore
	stop()
	if err := <-stopped; err != nil {
		t.Error(err)
	}
	var rows int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM check_results WHERE namespace = $1 AND scheduled_at >= $2`,
		cb.bed.namespace, since).Scan(&rows); err != nil || rows != tasks {
		t.Errorf("round %d: %d results in PostgreSQL, %v; want %d", round, rows, err, tasks)
	}
	if n := testutil.ToFloat64(opts.Metrics.Checks.WithLabelValues(string(store.OutcomeUp), "")); int(n) != tasks {
		t.Errorf("round %d: %v checks passed of %d", round, n, tasks)
	}
	return checkerRun{
		tasks: tasks, rate: float64(tasks-firstStored) / elapsed.Seconds(), cpu: cpu,
		statusWrites: int(testutil.ToFloat64(opts.Metrics.StatusWrites.WithLabelValues(statusWritten))),
	}
}

// publishRounds publishes tasks tasks, round after round over every URL of
// the Websites, keyed by Website UID as the scheduler does.
func publishRounds(t *testing.T, cfg *sarama.Config, brokers []string, topic string, websites []*monitoringv1alpha1.Website, tasks int, start time.Time) {
	t.Helper()
	producer, err := sarama.NewAsyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for range producer.Successes() {
			acked.Add(1)
		}
	})
	wg.Go(func() {
		for err := range producer.Errors() {
			failed.Add(1)
			t.Log(err)
		}
	})
	prefixes := make([]task.Prefix, len(websites))
	for i, ws := range websites {
		prefixes[i] = task.NewPrefix(task.ForWebsite(ws))
	}
	for n := 0; n < tasks; {
		round := n / (benchWebsites * benchURLsPerWebsite)
		at := start.Add(time.Duration(round) * time.Second)
		for i, ws := range websites {
			for j, u := range ws.Spec.URLs {
				if n == tasks {
					break
				}
				value := prefixes[i].Append(nil, string(u), j, at, at.Add(time.Hour), task.TriggerSchedule, "")
				producer.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(ws.UID), Value: sarama.ByteEncoder(value), Timestamp: at}
				n++
			}
		}
	}
	producer.AsyncClose()
	wg.Wait()
	if failed.Load() > 0 || acked.Load() != int64(tasks) {
		t.Fatalf("published %d of %d tasks, %d failed", acked.Load(), tasks, failed.Load())
	}
}

// benchOptions are the checker's defaults, with -throughput.concurrency.
func benchOptions() Options {
	opts := DefaultOptions()
	if *throughputConc > 0 {
		opts.Concurrency, opts.MaxPending = *throughputConc, max(opts.MaxPending, 4**throughputConc)
	}
	return opts
}
