package scheduler

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/task"
	"github.com/webmon-dev/webmon/test/testbed"
)

// `make bench-scheduler` runs TestSchedulerThroughput with a million URLs
// and the goals on; `make test` runs it small, as a check that the harness
// works, without judging figures taken under the race detector.
var (
	throughputURLs  = flag.Int("throughput.urls", 20_000, "URLs the scheduler benchmark schedules (100 per Website)")
	throughputPhase = flag.Duration("throughput.duration", time.Second, "how long each phase of the scheduler benchmark publishes")
	throughputGoals = flag.Bool("throughput.goals", false, "fail the scheduler benchmark when a figure misses its goal")
)

const urlsPerWebsite = 100

// benchWebsites are n URLs as Websites of 100 URLs each, with what a
// typical Website asks for (expectations, two plugins), so that the tasks
// have a realistic size.
func benchWebsites(n int) []*monitoringv1alpha1.Website {
	sites := make([]*monitoringv1alpha1.Website, 0, n/urlsPerWebsite)
	for i := 0; i < n; i += urlsPerWebsite {
		ws := &monitoringv1alpha1.Website{
			ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-" + fmt.Sprint(i%97), Name: fmt.Sprintf("site-%07d", i/urlsPerWebsite),
				UID: uuid.NewUUID(), Generation: 1},
			Spec: monitoringv1alpha1.WebsiteSpec{
				Method: "GET", Timeout: metav1.Duration{Duration: 10 * time.Second},
				Expect: monitoringv1alpha1.Expectations{
					StatusCodes: []monitoringv1alpha1.StatusCodeRange{"200-299"}, MaxLatency: &metav1.Duration{Duration: 2 * time.Second},
					FollowRedirects: ptr.To(true),
				},
				Plugins:          []monitoringv1alpha1.PluginSpec{{Name: "tls-expiry"}, {Name: "html-stats"}},
				FailureThreshold: 1, SuccessThreshold: 1,
			},
		}
		for j := range min(urlsPerWebsite, n-i) {
			ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(fmt.Sprintf("https://www.shop-%07d.example.com/catalog/page-%03d", i/urlsPerWebsite, j)))
		}
		sites = append(sites, ws)
	}
	return sites
}

// benchBrokerEnv makes the test binary the benchmark's broker: the
// embedded broker in a process of its own, as Kafka is in production, so
// that the scheduler's process holds, collects and spends CPU on its own
// heap only.
const benchBrokerEnv = "WEBMON_SCHEDULER_BENCH_BROKER"

func TestMain(m *testing.M) {
	if os.Getenv(benchBrokerEnv) != "" {
		os.Exit(runBenchBroker())
	}
	os.Exit(m.Run())
}

// runBenchBroker serves the embedded broker until the test is done.
func runBenchBroker() int {
	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer broker.Close()
	testbed.ServePeer("brokers=" + strings.Join(broker.Addrs(), ","))
	return 0
}

// TestSchedulerThroughput measures, in one run against the embedded broker
// (a process of its own): the raw sarama AsyncProducer's rate with the
// scheduler's settings, message size and keys (the ceiling); the
// scheduler's rate with its URLs due faster than Kafka takes them; its
// lateness when not saturated; and its heap per URL. It prints them as
// key=value lines, with the CPU time this process spent per message in
// the ceiling and in the scheduler.
func TestSchedulerThroughput(t *testing.T) {
	urls, phase := *throughputURLs, *throughputPhase

	brokers := testbed.StartPeer(t, benchBrokerEnv+"=1", "brokers").List("brokers")
	kcfg := kafka.Config{Brokers: brokers, ClientID: "bench"}
	pcfg, err := kcfg.Producer()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(newClient(t, brokers, pcfg))
	if err != nil {
		t.Fatal(err)
	}
	// Each phase writes to a topic of its own, deleted after it, so that
	// the broker's memory does not grow from phase to phase.
	withTopic := func(name string, phase func(kafka.TopicSpec)) {
		spec := kafka.TopicSpec{Name: name, Partitions: 32, ReplicationFactor: 1}
		if err := kafka.EnsureTopic(admin, spec); err != nil {
			t.Fatal(err)
		}
		phase(spec)
		if err := admin.DeleteTopic(name); err != nil {
			t.Fatal(err)
		}
	}

	// The heap a scheduler holds per URL: its schedule, and the Websites
	// (trimmed, as the informer keeps them).
	before := heapInUse()
	sites := benchWebsites(urls)
	schedule := NewSchedule()
	now := time.Now()
	for _, ws := range sites {
		schedule.Set(ws, now)
	}
	schedule.Start(func(types.UID) time.Time { return now })
	bytesPerURL := float64(heapInUse()-before) / float64(urls)
	schedule.Stop()
	runtime.KeepAlive(sites)

	// The shared machine's speed drifts by tens of percent within a
	// minute: ceiling and scheduler alternate, three rounds, and the
	// figures are the medians of the rounds.
	var ceilings, rates, ratios, ceilingCPUs, schedulerCPUs []float64
	var saturated schedulerRun
	for round := range 3 {
		var ceiling producerRun
		withTopic(fmt.Sprintf("ceiling-%d", round), func(spec kafka.TopicSpec) {
			ceiling = rawProducerRate(t, newClient(t, brokers, pcfg), spec, sites, phase)
		})
		// Fully loaded: due as fast as the ceiling.
		interval := time.Duration(float64(urls) / ceiling.rate * float64(time.Second))
		withTopic(fmt.Sprintf("saturated-%d", round), func(spec kafka.TopicSpec) {
			saturated = runScheduler(t, brokers, pcfg, spec, sites, interval, phase)
		})
		t.Logf("round %d: ceiling %.0f/s (%.2f µs of CPU a message), scheduler %.0f/s (%.2f µs), ratio %.2f",
			round, ceiling.rate, ceiling.cpuPerMsg, saturated.rate, saturated.cpuPerMsg, saturated.rate/ceiling.rate)
		ceilings, rates, ratios = append(ceilings, ceiling.rate), append(rates, saturated.rate), append(ratios, saturated.rate/ceiling.rate)
		ceilingCPUs, schedulerCPUs = append(ceilingCPUs, ceiling.cpuPerMsg), append(schedulerCPUs, saturated.cpuPerMsg)
	}
	ceiling, ratio := median(ceilings), median(ratios)
	saturated.rate = median(rates)
	// Not saturated: due at half the ceiling.
	var relaxed schedulerRun
	withTopic("relaxed", func(spec kafka.TopicSpec) {
		relaxed = runScheduler(t, brokers, pcfg, spec, sites, time.Duration(float64(urls)/(0.5*ceiling)*float64(time.Second)), phase)
	})

	for _, line := range []string{
		fmt.Sprintf("urls=%d", urls),
		fmt.Sprintf("ceiling_msgs_per_s=%.0f", ceiling),
		fmt.Sprintf("scheduler_msgs_per_s=%.0f", saturated.rate),
		fmt.Sprintf("ratio=%.2f", ratio),
		fmt.Sprintf("lateness_p99_ms=%.1f", relaxed.latenessP99*1000),
		fmt.Sprintf("lateness_p50_ms=%.1f", relaxed.latenessP50*1000),
		fmt.Sprintf("relaxed_msgs_per_s=%.0f", relaxed.rate),
		fmt.Sprintf("relaxed_skipped=%.0f", relaxed.skipped),
		fmt.Sprintf("saturated_skipped_per_s=%.0f", saturated.skipped/phase.Seconds()),
		fmt.Sprintf("bytes_per_url=%.0f", bytesPerURL),
		fmt.Sprintf("ceiling_cpu_us_per_msg=%.2f", median(ceilingCPUs)),
		fmt.Sprintf("scheduler_cpu_us_per_msg=%.2f", median(schedulerCPUs)),
		fmt.Sprintf("message_bytes=%d", messageSize(sites[0])),
	} {
		t.Log(line)
	}
	if saturated.rate <= 0 || relaxed.rate <= 0 {
		t.Fatal("the scheduler published nothing")
	}
	if relaxed.skipped > 0 {
		t.Errorf("%v ticks skipped while not saturated", relaxed.skipped)
	}
	if *throughputGoals {
		if ratio < 0.8 {
			t.Errorf("ratio %.2f: under the goal of 0.8", ratio)
		}
		if relaxed.latenessP99 > 0.1 {
			t.Errorf("lateness p99 %.0f ms: over the goal of 100 ms", relaxed.latenessP99*1000)
		}
		if bytesPerURL > 300 {
			t.Errorf("%.0f bytes per URL: over the goal of 300", bytesPerURL)
		}
	}
}

func median(xs []float64) float64 {
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

func newClient(t *testing.T, brokers []string, cfg *sarama.Config) sarama.Client {
	t.Helper()
	kc, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kc.Close() })
	return kc
}

func messageSize(ws *monitoringv1alpha1.Website) int {
	now := time.Now()
	return len(task.NewPrefix(task.ForWebsite(ws)).Append(nil, string(ws.Spec.URLs[0]), 0, now, now, task.TriggerSchedule, ""))
}

// producerRun is what a ceiling phase measured: messages acknowledged a
// second, and this process's CPU time per message.
type producerRun struct {
	rate, cpuPerMsg float64
}

// rawProducerRate is the ceiling: sarama's AsyncProducer fed as fast as it
// takes messages of the scheduler's size, over the same keys, for d.
func rawProducerRate(t *testing.T, kc sarama.Client, spec kafka.TopicSpec, sites []*monitoringv1alpha1.Website, d time.Duration) producerRun {
	producer, err := sarama.NewAsyncProducerFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	type prepared struct {
		key   sarama.Encoder
		value []byte
	}
	msgs := make([]prepared, len(sites))
	now := time.Now()
	for i, ws := range sites {
		msgs[i] = prepared{sarama.ByteEncoder(ws.UID),
			task.NewPrefix(task.ForWebsite(ws)).Append(nil, string(ws.Spec.URLs[0]), 0, now, now, task.TriggerSchedule, "")}
	}
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range producer.Successes() {
			acked.Add(1)
		}
	}()
	go func() {
		for err := range producer.Errors() {
			t.Errorf("raw producer: %v", err)
		}
	}()
	start := time.Now()
	var measureFrom int64
	var cpuFrom time.Duration
	warm := start.Add(d / 4)
	for i := 0; time.Since(start) < d; i++ {
		if measureFrom == 0 && time.Now().After(warm) {
			measureFrom, warm, cpuFrom = acked.Load(), time.Now(), testbed.ProcessCPU(t)
		}
		m := msgs[i%len(msgs)]
		producer.Input() <- &sarama.ProducerMessage{Topic: spec.Name, Key: m.key, Value: sarama.ByteEncoder(m.value), Timestamp: time.Now()}
	}
	n, elapsed, cpu := acked.Load()-measureFrom, time.Since(warm), testbed.ProcessCPU(t)-cpuFrom
	producer.AsyncClose()
	<-done
	return producerRun{rate: float64(n) / elapsed.Seconds(), cpuPerMsg: float64(cpu.Microseconds()) / float64(n)}
}

type schedulerRun struct {
	rate, skipped            float64
	latenessP50, latenessP99 float64
	// cpuPerMsg is this process's CPU time per message published, µs.
	cpuPerMsg float64
}

// runScheduler publishes sites at interval for d with the scheduler's own
// publishing path, and measures its acknowledged rate after a warm-up.
// The scheduler shares the Websites with the caller, as it shares them
// with its informer's cache.
func runScheduler(t *testing.T, brokers []string, pcfg *sarama.Config, spec kafka.TopicSpec,
	sites []*monitoringv1alpha1.Website, interval time.Duration, d time.Duration) schedulerRun {
	m := metrics.NewScheduler(prometheus.NewRegistry())
	s := New(Options{
		Kafka: pcfg, Brokers: brokers, Topic: spec, MaxLateness: 5 * time.Second, MaxInFlight: DefaultMaxInFlight, Metrics: m,
	}, logr.Discard())
	now := time.Now()
	for _, ws := range sites {
		ws.Spec.Interval = metav1.Duration{Duration: interval}
		s.schedule.Set(ws, now)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.lead(ctx, newClient(t, brokers, s.opts.Kafka)) }()
	published := func() float64 { return testutil.ToFloat64(m.Published.WithLabelValues("schedule")) }
	skipped := func() float64 { return testutil.ToFloat64(m.SkippedLate) + testutil.ToFloat64(m.SkippedUnacknowledged) }
	time.Sleep(d / 4)
	from, fromSkipped, start, cpuFrom := published(), skipped(), time.Now(), testbed.ProcessCPU(t)
	fromLateness := histogram(t, m.Lateness)
	time.Sleep(d)
	lateness := histogram(t, m.Lateness)
	n, elapsed, cpu := published()-from, time.Since(start), testbed.ProcessCPU(t)-cpuFrom
	run := schedulerRun{
		rate:      n / elapsed.Seconds(),
		skipped:   skipped() - fromSkipped,
		cpuPerMsg: float64(cpu.Microseconds()) / n,
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Lateness over the measured window only, as a rate() would show it.
	for i := range lateness.counts {
		lateness.counts[i] -= fromLateness.counts[i]
	}
	run.latenessP50 = lateness.quantile(0.50)
	run.latenessP99 = lateness.quantile(0.99)
	return run
}

// cumulative is a histogram's cumulative bucket counts.
type cumulative struct {
	bounds, counts []float64
}

func histogram(t *testing.T, h prometheus.Histogram) cumulative {
	var out dto.Metric
	if err := h.Write(&out); err != nil {
		t.Fatal(err)
	}
	var c cumulative
	for _, b := range out.GetHistogram().GetBucket() {
		c.bounds = append(c.bounds, b.GetUpperBound())
		c.counts = append(c.counts, float64(b.GetCumulativeCount()))
	}
	c.bounds = append(c.bounds, math.Inf(1))
	c.counts = append(c.counts, float64(out.GetHistogram().GetSampleCount()))
	return c
}

// quantile estimates a quantile by linear interpolation inside its bucket,
// as Prometheus's histogram_quantile does.
func (c cumulative) quantile(q float64) float64 {
	rank := q * c.counts[len(c.counts)-1]
	lower, below := 0.0, 0.0
	for i, bound := range c.bounds {
		count := c.counts[i]
		if count >= rank {
			if count == below || math.IsInf(bound, 1) {
				return bound
			}
			return lower + (bound-lower)*(rank-below)/(count-below)
		}
		lower, below = bound, count
	}
	return math.Inf(1)
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkPublish is the scheduler's own cost per task with a million
// URLs: schedule, encoding and the producer's input channel, with a
// producer that acknowledges at once (no broker), so that only webmon's
// side is measured. go test -run='^$' -bench=Publish ./scheduler
func BenchmarkPublish(b *testing.B) {
	sites := benchWebsites(1_000_000)
	s := NewSchedule()
	start := time.Now()
	for _, ws := range sites {
		ws.Spec.Interval = metav1.Duration{Duration: time.Second}
		s.Set(ws, start)
	}
	s.Start(func(types.UID) time.Time { return start })
	producer := newFakeProducer()
	m := metrics.NewScheduler(prometheus.NewRegistry())
	p := (&publisher{schedule: s, producer: producer, topic: "tasks", clock: clock.RealClock{}, metrics: m,
		log: logr.Discard(), maxLateness: time.Hour, maxInFlight: 100_000, catchUpUntil: start}).init()
	producer.record = false
	ctx, cancel := context.WithCancel(b.Context())
	var collected sync.WaitGroup
	p.results.Add(1)
	collected.Go(p.collectResults)
	buf := make([]tick, 0, batchSize)
	now := start.Add(time.Second) // every URL is due
	b.ResetTimer()
	for published := 0; published < b.N; {
		ticks, _, _ := s.Due(now, min(batchSize, b.N-published), buf[:0])
		warm(ticks)
		for _, t := range ticks {
			p.publish(ctx, t, now)
		}
		published += len(ticks)
		if len(ticks) == 0 {
			now = now.Add(time.Second)
		}
	}
	b.StopTimer()
	cancel()
	producer.AsyncClose()
	collected.Wait()
}
