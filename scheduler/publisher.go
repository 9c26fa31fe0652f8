package scheduler

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/task"
)

// batchSize is how many due ticks the publisher takes off the schedule at
// once: large enough to amortise the lock, small enough to keep each
// tick's lateness low.
const batchSize = 512

// recycleBatch is how many acknowledged messages go back to the loop at
// once.
const recycleBatch = 256

// retryBackoff is the pause before a task the producer gave up on is tried
// again.
const retryBackoff = 250 * time.Millisecond

// publisher takes due ticks off a schedule and hands them to a Kafka
// producer as tasks, never holding more than maxInFlight unacknowledged:
// when Kafka is slow or down, a tick that cannot be handed over while it is
// still on time is skipped and counted, and the URL's next tick is
// published as usual. Memory stays bounded and recovery is not a burst.
type publisher struct {
	schedule *Schedule
	producer sarama.AsyncProducer
	topic    string
	clock    clock.WithDelayedExecution
	metrics  *metrics.Scheduler
	log      logr.Logger

	// maxLateness is how late a regular tick may be published.
	maxLateness time.Duration
	maxInFlight int64
	// catchUpUntil: ticks due up to then were missed by a previous leader;
	// they may be published late up to their deadline.
	catchUpUntil time.Time

	inFlight atomic.Int64
	closing  atomic.Bool
	// spare are acknowledged messages ready for reuse, with their
	// buffers: at hundreds of thousands a second, garbage is the
	// scheduler's main cost. The loop takes them newest first, so that a
	// message comes back while still in cache; acked is where the results
	// goroutine returns them, a batch at a time.
	spare []*outMessage
	acked recycled
	// published are the tasks_published_total counters, looked up once.
	published [2]prometheus.Counter
	room      chan struct{}    // signalled when an acknowledgement frees room
	retries   chan *outMessage // failed tasks, back for another try
	results   sync.WaitGroup
}

// outMessage is a task on its way to Kafka, with the tick it came from.
// It is its own value's sarama.Encoder, so that handing a message to the
// producer allocates nothing.
type outMessage struct {
	sarama.ProducerMessage
	// partition is its Website's partition as last computed (see
	// cachedPartition), read here while the site is in cache.
	partition uint64
	tick      tick
	value     []byte
	// attempted: the producer failed to deliver it once, and a failed
	// write may still have reached the broker.
	attempted bool
}

// Encode returns the encoded task.
func (m *outMessage) Encode() ([]byte, error) { return m.value, nil }

// Length is the encoded task's length.
func (m *outMessage) Length() int { return len(m.value) }

// init makes the channels; call it once the settings are filled in.
func (p *publisher) init() *publisher {
	p.room = make(chan struct{}, 1)
	p.retries = make(chan *outMessage, p.maxInFlight)
	for _, t := range []task.Trigger{task.TriggerSchedule, task.TriggerCheckNow} {
		p.published[t] = p.metrics.Published.WithLabelValues(triggerLabel(t))
	}
	return p
}

// run publishes until ctx ends, then flushes what the producer holds and
// closes it.
func (p *publisher) run(ctx context.Context) {
	p.results.Add(1)
	go p.collectResults()
	defer func() {
		p.closing.Store(true)
		p.producer.AsyncClose()
		p.results.Wait()
		for len(p.retries) > 0 { // failed during the flush: too late now
			p.skip(<-p.retries)
		}
		p.metrics.InFlight.Set(float64(p.inFlight.Load()))
	}()

	buf := make([]tick, 0, batchSize)
	for ctx.Err() == nil {
		p.publishRetries(ctx)
		now := p.clock.Now()
		ticks, next, skipped := p.schedule.Due(now, batchSize, buf[:0])
		p.metrics.SkippedLate.Add(float64(skipped))
		warm(ticks)
		for _, t := range ticks {
			now = p.publish(ctx, t, now)
		}
		p.metrics.InFlight.Set(float64(p.inFlight.Load()))
		if len(ticks) == batchSize {
			continue
		}
		p.waitUntil(ctx, next)
	}
}

// warm reads the first bytes of each tick's Website prefix and URL before
// any is encoded. The reads do not depend on each other, so the processor
// overlaps their cache misses; encoding then finds them in cache. With a
// million URLs scattered in memory, it cuts the cost of a task by a third
// (BenchmarkPublish).
func warm(ticks []tick) {
	var sink byte
	for _, t := range ticks {
		sink ^= t.site.prefix[0] ^ t.site.urls[t.url][0]
	}
	runtime.KeepAlive(sink) // the reads are the point
}

// waitUntil sleeps until next (forever if zero), a new earlier tick, a
// retry, or the end of ctx.
func (p *publisher) waitUntil(ctx context.Context, next time.Time) {
	var fire <-chan time.Time
	if !next.IsZero() {
		d := next.Sub(p.clock.Now())
		if d <= 0 {
			return
		}
		timer := p.clock.NewTimer(d)
		defer timer.Stop()
		fire = timer.C()
	}
	select {
	case <-fire:
	case <-p.schedule.Wake():
	case m := <-p.retries:
		p.retries <- m // room is guaranteed: it just came out
	case <-ctx.Done():
	}
}

// publish hands one tick to the producer, waiting for room no longer than
// the tick may be late. now is the loop's idea of the time; publish returns
// it, renewed if it had to wait.
func (p *publisher) publish(ctx context.Context, t tick, now time.Time) time.Time {
	expires := t.due.Add(p.allowedLateness(t))
	for p.inFlight.Load() >= p.maxInFlight {
		if !p.waitForRoom(ctx, expires) {
			p.metrics.SkippedLate.Inc()
			return p.clock.Now()
		}
		now = p.clock.Now()
	}
	if !now.Before(expires) {
		p.metrics.SkippedLate.Inc()
		return now
	}
	if t.trigger == task.TriggerSchedule && !t.due.After(p.catchUpUntil) {
		p.metrics.CatchUpTicks.Inc()
	}
	m := p.newMessage()
	m.tick, m.partition = t, t.site.partition.v.Load()
	m.value = t.site.prefix.Append(m.value[:0], t.site.urls[t.url], int(t.url), t.due, t.due.Add(t.site.interval), t.trigger, t.checkNow)
	m.ProducerMessage = sarama.ProducerMessage{
		Topic: p.topic, Key: t.site.key, Value: m, Timestamp: t.due, Metadata: m,
	}
	p.inFlight.Add(1)
	p.send(ctx, m)
	return now
}

// newMessage is an acknowledged message to reuse, the most recently
// acknowledged first, or a new one.
func (p *publisher) newMessage() *outMessage {
	if len(p.spare) == 0 {
		p.spare = p.acked.swap(p.spare)
		if len(p.spare) == 0 {
			return &outMessage{}
		}
	}
	m := p.spare[len(p.spare)-1]
	p.spare = p.spare[:len(p.spare)-1]
	return m
}

// recycled holds acknowledged messages on their way back to the loop.
type recycled struct {
	mu   sync.Mutex
	free []*outMessage
}

// put adds ms, the newest last.
func (r *recycled) put(ms []*outMessage) {
	r.mu.Lock()
	r.free = append(r.free, ms...)
	r.mu.Unlock()
}

// swap takes every message held, giving empty's array in exchange.
func (r *recycled) swap(empty []*outMessage) []*outMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	free := r.free
	r.free = empty[:0]
	return free
}

// send blocks until the producer takes m; at the end of ctx m is dropped
// (as a skipped tick).
func (p *publisher) send(ctx context.Context, m *outMessage) {
	select {
	case p.producer.Input() <- &m.ProducerMessage:
		return
	default:
	}
	select {
	case p.producer.Input() <- &m.ProducerMessage:
	case <-ctx.Done():
		p.skip(m)
	}
}

// skip gives m up: it releases its place in flight and counts its tick
// as skipped, late if Kafka never had it, unacknowledged if it did (a
// failed attempt may still have been written).
func (p *publisher) skip(m *outMessage) {
	p.done(m)
	if m.attempted {
		p.metrics.SkippedUnacknowledged.Inc()
	} else {
		p.metrics.SkippedLate.Inc()
	}
}

// waitForRoom waits for an acknowledgement until expires; false if the
// time ran out first.
func (p *publisher) waitForRoom(ctx context.Context, expires time.Time) bool {
	d := expires.Sub(p.clock.Now())
	if d <= 0 {
		return false
	}
	timer := p.clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.room:
		return true
	case <-timer.C():
		return false
	case <-ctx.Done():
		return false
	}
}

// allowedLateness is how late t may still be published: regular ticks by
// maxLateness (at most their interval), a predecessor's missed ticks and
// check-now ticks until their deadline.
func (p *publisher) allowedLateness(t tick) time.Duration {
	if t.trigger == task.TriggerCheckNow || !t.due.After(p.catchUpUntil) {
		return t.site.interval
	}
	return min(p.maxLateness, t.site.interval)
}

// publishRetries sends the tasks whose retry is due, or counts them as
// skipped once they can no longer be on time.
func (p *publisher) publishRetries(ctx context.Context) {
	for {
		select {
		case m := <-p.retries:
			if !p.clock.Now().Before(m.tick.due.Add(p.allowedLateness(m.tick))) {
				p.skip(m)
				continue
			}
			retry := &outMessage{tick: m.tick, value: m.value, attempted: true}
			retry.ProducerMessage = sarama.ProducerMessage{
				Topic: m.Topic, Key: m.Key, Value: retry, Timestamp: m.Timestamp, Metadata: retry,
			}
			p.send(ctx, retry)
		default:
			return
		}
	}
}

// collectResults counts the producer's acknowledgements and errors until
// it closes. Each channel has its own goroutine: a plain receive costs a
// fraction of a select at these rates.
func (p *publisher) collectResults() {
	defer p.results.Done()
	var errs sync.WaitGroup
	errs.Go(func() {
		for perr := range p.producer.Errors() {
			p.failed(perr)
		}
	})
	// Acknowledged messages go back to the loop in batches, or as soon as
	// no other acknowledgement is waiting.
	batch := make([]*outMessage, 0, recycleBatch)
	for msg := range p.producer.Successes() {
		m := msg.Metadata.(*outMessage)
		p.published[m.tick.trigger].Inc()
		if m.tick.trigger == task.TriggerSchedule {
			p.metrics.Lateness.Observe(p.clock.Since(m.tick.due).Seconds())
		}
		p.done(m)
		m.tick, m.ProducerMessage, m.attempted = tick{}, sarama.ProducerMessage{}, false
		batch = append(batch, m)
		if len(batch) == recycleBatch || len(p.producer.Successes()) == 0 {
			p.acked.put(batch)
			batch = batch[:0]
		}
	}
	errs.Wait()
}

// failed counts a task the producer gave up on and schedules another try,
// unless the publisher is closing.
func (p *publisher) failed(perr *sarama.ProducerError) {
	p.metrics.PublishErrors.Inc()
	m := perr.Msg.Metadata.(*outMessage)
	m.attempted = true
	if p.closing.Load() { // failed in the final flush: no later try
		p.log.Info("a task could not be flushed at shutdown", "error", perr.Err, "uid", m.tick.site.uid)
		p.skip(m)
		return
	}
	p.log.V(1).Info("publishing a task failed; retrying while it is on time", "error", perr.Err, "uid", m.tick.site.uid)
	// It keeps its place in flight while it waits: memory stays bounded.
	p.clock.AfterFunc(retryBackoff, func() { p.retries <- m })
}

// done releases m's place in flight, and wakes the loop if it was full.
func (p *publisher) done(*outMessage) {
	if p.inFlight.Add(-1) == p.maxInFlight-1 {
		select {
		case p.room <- struct{}{}:
		default:
		}
	}
}

func triggerLabel(t task.Trigger) string {
	if t == task.TriggerCheckNow {
		return "check-now"
	}
	return "schedule"
}
