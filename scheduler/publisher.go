package scheduler

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/task"
)

// batchSize is how many due ticks the publisher takes off the schedule at
// once: large enough to amortise the lock, small enough to keep each
// tick's lateness low.
const batchSize = 512

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
	room     chan struct{}    // signalled when an acknowledgement frees room
	retries  chan *outMessage // failed tasks, back for another try
	results  sync.WaitGroup
}

// outMessage is a task on its way to Kafka, with the tick it came from.
type outMessage struct {
	sarama.ProducerMessage
	tick tick
}

// init makes the channels; call it once the settings are filled in.
func (p *publisher) init() *publisher {
	p.room = make(chan struct{}, 1)
	p.retries = make(chan *outMessage, p.maxInFlight)
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
			p.done(<-p.retries)
			p.metrics.SkippedTicks.Inc()
		}
	}()

	buf := make([]tick, 0, batchSize)
	for ctx.Err() == nil {
		p.publishRetries(ctx)
		ticks, next, skipped := p.schedule.Due(p.clock.Now(), batchSize, buf[:0])
		p.metrics.SkippedTicks.Add(float64(skipped))
		for _, t := range ticks {
			p.publish(ctx, t)
		}
		if len(ticks) == batchSize {
			continue
		}
		p.waitUntil(ctx, next)
	}
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
// the tick may be late.
func (p *publisher) publish(ctx context.Context, t tick) {
	expires := t.due.Add(p.allowedLateness(t))
	for p.inFlight.Load() >= p.maxInFlight {
		if !p.waitForRoom(ctx, expires) {
			p.metrics.SkippedTicks.Inc()
			return
		}
	}
	if !p.clock.Now().Before(expires) {
		p.metrics.SkippedTicks.Inc()
		return
	}
	if t.trigger == task.TriggerSchedule && !t.due.After(p.catchUpUntil) {
		p.metrics.CatchUpTicks.Inc()
	}
	deadline := t.due.Add(t.site.interval)
	value := t.site.prefix.Append(make([]byte, 0, len(t.site.prefix)+len(t.site.urls[t.url])+48),
		t.site.urls[t.url], int(t.url), t.due, deadline, t.trigger, t.checkNow)
	m := &outMessage{tick: t}
	m.ProducerMessage = sarama.ProducerMessage{
		Topic: p.topic, Key: t.site.key, Value: sarama.ByteEncoder(value), Timestamp: t.due, Metadata: m,
	}
	p.inFlight.Add(1)
	p.metrics.InFlight.Inc()
	p.send(ctx, m)
}

// send blocks until the producer takes m; at the end of ctx m is dropped
// (as a skipped tick).
func (p *publisher) send(ctx context.Context, m *outMessage) {
	select {
	case p.producer.Input() <- &m.ProducerMessage:
	case <-ctx.Done():
		p.done(m)
		p.metrics.SkippedTicks.Inc()
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
				p.done(m)
				p.metrics.SkippedTicks.Inc()
				continue
			}
			retry := &outMessage{tick: m.tick}
			retry.ProducerMessage = sarama.ProducerMessage{
				Topic: m.Topic, Key: m.Key, Value: m.Value, Timestamp: m.Timestamp, Metadata: retry,
			}
			p.send(ctx, retry)
		default:
			return
		}
	}
}

// collectResults counts the producer's acknowledgements and errors until
// it closes.
func (p *publisher) collectResults() {
	defer p.results.Done()
	successes, errs := p.producer.Successes(), p.producer.Errors()
	for successes != nil || errs != nil {
		select {
		case msg, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			m := msg.Metadata.(*outMessage)
			p.metrics.Published.WithLabelValues(triggerLabel(m.tick.trigger)).Inc()
			if m.tick.trigger == task.TriggerSchedule {
				p.metrics.Lateness.Observe(p.clock.Since(m.tick.due).Seconds())
			}
			p.done(m)
		case perr, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			p.metrics.PublishErrors.Inc()
			m := perr.Msg.Metadata.(*outMessage)
			if p.closing.Load() { // failed in the final flush: no later try
				p.log.Info("a task could not be flushed at shutdown", "error", perr.Err, "uid", m.tick.site.uid)
				p.done(m)
				p.metrics.SkippedTicks.Inc()
				continue
			}
			p.log.V(1).Info("publishing a task failed; retrying while it is on time", "error", perr.Err, "uid", m.tick.site.uid)
			// It keeps its place in flight while it waits: memory stays bounded.
			p.clock.AfterFunc(retryBackoff, func() { p.retries <- m })
		}
	}
}

// done releases m's place in flight.
func (p *publisher) done(*outMessage) {
	p.inFlight.Add(-1)
	p.metrics.InFlight.Dec()
	select {
	case p.room <- struct{}{}:
	default:
	}
}

func triggerLabel(t task.Trigger) string {
	if t == task.TriggerCheckNow {
		return "check-now"
	}
	return "schedule"
}
