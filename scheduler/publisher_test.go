package scheduler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	clocktesting "k8s.io/utils/clock/testing"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/task"
)

// fakeProducer stands in for sarama's AsyncProducer where the test needs
// to hold acknowledgements back under an injected clock (the real producer
// against the embedded broker is in the integration test). While down it
// holds every message, as a broker that does not answer, or, refusing,
// fails each at once.
type fakeProducer struct {
	sarama.AsyncProducer // the transactional methods are not used

	input     chan *sarama.ProducerMessage
	successes chan *sarama.ProducerMessage
	errors    chan *sarama.ProducerError

	mu     sync.Mutex
	up     bool
	refuse bool // while down, fail each message at once instead of holding it
	record bool // keep copies of what is delivered
	held   []*sarama.ProducerMessage
	got    []*sarama.ProducerMessage // copies, as a broker stores them
}

func (p *fakeProducer) deliver(m *sarama.ProducerMessage) {
	if !p.record {
		p.successes <- m
		return
	}
	stored := &sarama.ProducerMessage{Topic: m.Topic, Key: sarama.ByteEncoder(mustEncode(m.Key)),
		Value: sarama.ByteEncoder(mustEncode(m.Value)), Timestamp: m.Timestamp}
	p.got = append(p.got, stored)
	p.successes <- m
}

func newFakeProducer() *fakeProducer {
	p := &fakeProducer{
		input:     make(chan *sarama.ProducerMessage),
		successes: make(chan *sarama.ProducerMessage, 1<<16),
		errors:    make(chan *sarama.ProducerError, 1<<16),
		up:        true,
		record:    true,
	}
	go func() {
		for m := range p.input {
			p.mu.Lock()
			switch {
			case p.up:
				p.deliver(m)
			case p.refuse:
				p.errors <- &sarama.ProducerError{Msg: m, Err: sarama.ErrNotLeaderForPartition}
			default:
				p.held = append(p.held, m)
			}
			p.mu.Unlock()
		}
		p.mu.Lock()
		for _, m := range p.held {
			p.errors <- &sarama.ProducerError{Msg: m, Err: sarama.ErrOutOfBrokers}
		}
		p.mu.Unlock()
		close(p.successes)
		close(p.errors)
	}()
	return p
}

func (p *fakeProducer) Input() chan<- *sarama.ProducerMessage     { return p.input }
func (p *fakeProducer) Successes() <-chan *sarama.ProducerMessage { return p.successes }
func (p *fakeProducer) Errors() <-chan *sarama.ProducerError      { return p.errors }
func (p *fakeProducer) AsyncClose()                               { close(p.input) }
func (p *fakeProducer) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if up {
		for _, m := range p.held {
			p.deliver(m)
		}
		p.held = nil
	}
}

func (p *fakeProducer) delivered() []*sarama.ProducerMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sarama.ProducerMessage(nil), p.got...)
}

type publisherRig struct {
	t        *testing.T
	clock    *clocktesting.FakeClock
	schedule *Schedule
	producer *fakeProducer
	metrics  *metrics.Scheduler
	pub      *publisher
	stop     func()
}

// The rig's Websites are checked every 10s; their ticks may be published
// up to 2s late.
const (
	rigInterval    = 10 * time.Second
	rigMaxLateness = 2 * time.Second
)

func newPublisherRig(t *testing.T, websites, urlsEach, maxInFlight int) *publisherRig {
	r := &publisherRig{
		t:        t,
		clock:    clocktesting.NewFakeClock(epoch),
		schedule: NewSchedule(),
		producer: newFakeProducer(),
		metrics:  metrics.NewScheduler(prometheus.NewRegistry()),
	}
	for range websites {
		ws := website(uuid.NewUUID(), 1, rigInterval)
		for j := range urlsEach {
			ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL("https://"+string(ws.UID)+".example/"+fmt.Sprint(j)))
		}
		r.schedule.Set(ws, epoch)
	}
	r.schedule.Start(func(types.UID) time.Time { return epoch })
	r.pub = (&publisher{
		schedule: r.schedule, producer: r.producer, topic: "tasks", clock: r.clock, metrics: r.metrics,
		log: testr.New(t), maxLateness: rigMaxLateness, maxInFlight: int64(maxInFlight), catchUpUntil: epoch,
	}).init()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.pub.run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			r.stop()
		}
	})
	return r
}

// advance steps the clock to `to` in steps of 100ms, letting the publisher settle
// after each: it is settled when it waits on the clock again.
func (r *publisherRig) advance(to time.Time, each func()) {
	const step = 100 * time.Millisecond
	for r.clock.Now().Before(to) {
		r.clock.Step(step)
		r.settle()
		if each != nil {
			each()
		}
	}
}

func (r *publisherRig) settle() {
	deadline := time.Now().Add(10 * time.Second)
	for !r.clock.HasWaiters() || len(r.producer.input) > 0 {
		if time.Now().After(deadline) {
			r.t.Fatal("the publisher did not settle")
		}
		time.Sleep(50 * time.Microsecond)
	}
	time.Sleep(200 * time.Microsecond) // let the result collector catch up
}

func (r *publisherRig) published() int {
	return int(testutil.ToFloat64(r.metrics.Published.WithLabelValues("schedule")))
}

// skipped is every tick counted as skipped, whatever the reason.
func (r *publisherRig) skipped() float64 {
	return testutil.ToFloat64(r.metrics.SkippedLate) + testutil.ToFloat64(r.metrics.SkippedUnacknowledged)
}

func (r *publisherRig) eventually(what string, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPublisherPublishesEveryTickOnTime(t *testing.T) {
	r := newPublisherRig(t, 100, 3, 1000)
	r.advance(epoch.Add(30*time.Second), nil)
	r.eventually("900 tasks (300 URLs, 3 intervals)", func() bool { return r.published() == 900 })

	seen := map[string]bool{}
	for _, m := range r.producer.delivered() {
		var tk task.Task
		value, _ := m.Value.Encode()
		if err := task.Unmarshal(value, &tk); err != nil {
			t.Fatal(err)
		}
		key := tk.URL + "@" + tk.ScheduledAt.String()
		if seen[key] {
			t.Errorf("%s published twice", key)
		}
		seen[key] = true
		// Each task names the URL whose phase it was due at.
		if want := NextRun(Phase(types.UID(tk.UID), tk.URL, 10*time.Second), 10*time.Second, tk.ScheduledAt.Add(-time.Nanosecond)); !want.Equal(tk.ScheduledAt) {
			t.Errorf("%s: due at %s, not at the phase of its URL", key, tk.ScheduledAt)
		}
		if !strings.HasSuffix(tk.URL, fmt.Sprintf("/%d", tk.URLIndex)) {
			t.Errorf("%s: URL index %d", key, tk.URLIndex)
		}
		if string(mustEncode(m.Key)) != tk.UID || !m.Timestamp.Equal(tk.ScheduledAt) || !tk.Deadline.Equal(tk.ScheduledAt.Add(10*time.Second)) {
			t.Errorf("message of %s: key %s, timestamp %s, deadline %s", key, mustEncode(m.Key), m.Timestamp, tk.Deadline)
		}
	}
	if got := r.skipped(); got != 0 {
		t.Errorf("%v ticks skipped with a healthy producer", got)
	}
	r.stop()
	if got := testutil.ToFloat64(r.metrics.InFlight); got != 0 {
		t.Errorf("%v tasks still in flight after the flush", got)
	}
}

func mustEncode(e sarama.Encoder) []byte {
	b, _ := e.Encode()
	return append([]byte(nil), b...)
}

// TestPublisherSkipsAndCountsUnderOutage: with the producer holding every
// message, in-flight stays at its cap, the ticks that cannot be on time are
// skipped and counted, and after recovery the pace is the normal one.
func TestPublisherSkipsAndCountsUnderOutage(t *testing.T) {
	const urls, maxInFlight = 1000, 50
	r := newPublisherRig(t, urls, 1, maxInFlight)
	r.advance(epoch.Add(rigInterval), nil)
	r.eventually("one interval published", func() bool { return r.published() == urls })

	r.producer.setUp(false)
	outageStart := r.clock.Now()
	r.advance(outageStart.Add(3*rigInterval), func() {
		if inFlight := r.pub.inFlight.Load(); inFlight > maxInFlight {
			t.Fatalf("%d tasks in flight, over the cap of %d", inFlight, maxInFlight)
		}
	})
	skipped := testutil.ToFloat64(r.metrics.SkippedLate)
	if unacked := testutil.ToFloat64(r.metrics.SkippedUnacknowledged); unacked != 0 {
		t.Errorf("%v ticks counted unacknowledged, though none was refused", unacked)
	}
	// 3 intervals of 1000 ticks; 50 are held in flight, and up to the
	// last 2s of ticks may still be waiting for room.
	if skipped < 3*urls-maxInFlight-2*2*urls/10 || skipped > 3*urls-maxInFlight {
		t.Errorf("%v ticks skipped during 3 intervals of outage, want about %d", skipped, 3*urls-maxInFlight)
	}
	if n := r.schedule.queue.len(); n != urls {
		t.Errorf("the queue holds %d entries for %d URLs during the outage", n, urls)
	}

	r.producer.setUp(true)
	base := r.published()
	recovery := r.clock.Now()
	var perStep []int
	last := 0
	r.advance(recovery.Add(rigInterval), func() {
		// Acknowledgements are counted on their own goroutine: wait for
		// every one before reading the step's count, or a slow collector
		// makes the step after look like a burst.
		r.eventually("the step's acknowledgements", func() bool { return r.pub.inFlight.Load() == 0 })
		n := r.published() - base
		perStep = append(perStep, n-last)
		last = n
	})
	r.eventually("a full interval after recovery", func() bool { return r.published()-base >= urls })
	// At once: the 50 held, and the ticks of the last 2s that are still
	// allowed to be late. After that, the normal pace of 10 per 100ms step
	// (1000 URLs over 10s), give or take the hash's spread: no burst.
	fair := urls / 100
	if perStep[0] > maxInFlight+2*int(rigMaxLateness.Seconds()/rigInterval.Seconds()*urls)+2*fair {
		t.Errorf("recovery: %d tasks in the first step", perStep[0])
	}
	for i, n := range perStep[1:] {
		if n > 3*fair {
			t.Errorf("recovery burst: %d tasks in step %d; the normal pace is %d", n, i+1, fair)
		}
	}
}

// TestPublisherFlushesOnShutdown: the tasks the producer holds at shutdown
// are flushed (or, failing, counted), never left in flight.
func TestPublisherFlushesOnShutdown(t *testing.T) {
	r := newPublisherRig(t, 100, 1, 1000)
	r.producer.setUp(false)
	r.advance(epoch.Add(time.Second), nil)
	held := r.pub.inFlight.Load()
	if held == 0 {
		t.Fatal("nothing in flight to flush")
	}
	r.stop()
	if got := r.pub.inFlight.Load(); got != 0 {
		t.Errorf("%d tasks left in flight after shutdown", got)
	}
	errs, unacked := testutil.ToFloat64(r.metrics.PublishErrors), testutil.ToFloat64(r.metrics.SkippedUnacknowledged)
	if int64(errs) != held || int64(unacked) != held || r.skipped() != unacked {
		t.Errorf("%v publish errors and %v ticks skipped, %v of them unacknowledged, for %d tasks the producer could not flush",
			errs, r.skipped(), unacked, held)
	}
}

// TestPublisherCountsRefusedTicksUnacknowledged: a task the producer
// failed is retried while it is on time, then counted as skipped
// unacknowledged, never late: Kafka may have written a failed attempt, so
// a reader of the metrics knows these ticks may still have been checked.
func TestPublisherCountsRefusedTicksUnacknowledged(t *testing.T) {
	const urls = 100
	r := newPublisherRig(t, urls, 1, 1000)
	r.advance(epoch.Add(rigInterval), nil)
	r.eventually("one interval published", func() bool { return r.published() == urls })

	r.producer.mu.Lock()
	r.producer.up, r.producer.refuse = false, true
	r.producer.mu.Unlock()
	r.advance(r.clock.Now().Add(3*rigInterval), nil)
	r.producer.setUp(true)
	base := r.published()
	r.advance(r.clock.Now().Add(rigInterval), nil)
	r.eventually("an interval published after the outage", func() bool { return r.published()-base >= urls })

	late, unacked := testutil.ToFloat64(r.metrics.SkippedLate), testutil.ToFloat64(r.metrics.SkippedUnacknowledged)
	if late != 0 {
		t.Errorf("%v ticks counted late: each was handed to the producer on time", late)
	}
	// 3 intervals of refusals; the ticks of their last 2s (up to twice
	// their fair share, as the hash spreads them) may still be retried in
	// time once the producer is back.
	if low, high := float64(3*urls-2*2*urls/10), float64(3*urls); unacked < low || unacked > high {
		t.Errorf("%v ticks counted unacknowledged after 3 intervals of refusals, want %v to %v", unacked, low, high)
	}
	if errs := testutil.ToFloat64(r.metrics.PublishErrors); errs < unacked {
		t.Errorf("%v publish errors for %v ticks given up unacknowledged", errs, unacked)
	}
	if n := r.pub.inFlight.Load(); n > urls {
		t.Errorf("%d tasks in flight after the outage", n)
	}
}
