package checker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/webmon-dev/webmon/internal/task"
)

// messageRef is a consumed Kafka message, marked done with once its
// result is stored.
type messageRef struct {
	claim     *claimOffsets
	offset    int64
	partition int32
}

func (m messageRef) done() {
	if m.claim != nil {
		m.claim.done(m.offset)
	}
}

// consumer is the checker's sarama.ConsumerGroupHandler: one
// ConsumeClaim per partition it is assigned.
type consumer struct {
	c *Checker
	// work is the context checks run in: it outlives consumer group
	// sessions, so that a rebalance does not abort checks half done.
	work context.Context
}

var _ sarama.ConsumerGroupHandler = (*consumer)(nil)

// Setup tells the batcher and the status writer which partitions this
// checker owns now: the state of Websites on others is dropped, as
// another checker writes their status.
func (h *consumer) Setup(sess sarama.ConsumerGroupSession) error {
	owned := map[int32]bool{}
	for _, p := range sess.Claims()[h.c.opts.Topic] {
		owned[p] = true
	}
	h.c.log.Info("partitions assigned", "partitions", sess.Claims()[h.c.opts.Topic], "generation", sess.GenerationID())
	h.c.batcher.own(owned)
	return nil
}

func (h *consumer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim hands each message of a partition to a check, with
// backpressure: it waits while MaxPending results are not stored yet.
// When the session ends it waits (up to DrainTimeout) for the checks it
// started to be stored, so that their offsets are committed and the next
// owner of the partition does not check them again.
func (h *consumer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	partition := claim.Partition()
	offsets := newClaimOffsets(func(next int64) { sess.MarkOffset(claim.Topic(), partition, next, "") })
	defer func() {
		if left := offsets.drain(h.c.opts.DrainTimeout); left > 0 {
			h.c.log.Info("partition released with checks still in flight; they will be checked again by its next owner",
				"partition", partition, "inFlight", left)
		}
		h.c.metrics.ConsumerLag.DeleteLabelValues(partitionLabel(partition))
	}()
	lag := h.c.metrics.ConsumerLag.WithLabelValues(partitionLabel(partition))
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			lag.Set(float64(claim.HighWaterMarkOffset() - msg.Offset - 1))
			offsets.add(msg.Offset)
			if err := h.c.dispatch(sess.Context(), h.work, msg, messageRef{claim: offsets, offset: msg.Offset, partition: partition}); err != nil {
				return nil // the session or the checker is ending
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// dispatch decodes a task and starts its check. It blocks while too many
// results wait to be stored, and returns an error only when ctx ends.
func (c *Checker) dispatch(ctx, work context.Context, msg *sarama.ConsumerMessage, ref messageRef) error {
	t := &task.Task{}
	if err := task.Unmarshal(msg.Value, t); err != nil {
		c.skipMalformed(msg, ref, malformedReason(err), err)
		return nil
	}
	if ahead := t.ScheduledAt.Sub(c.clock.Now()); ahead > maxClockSkew {
		c.skipMalformed(msg, ref, "scheduled_ahead", fmt.Errorf("scheduled %s ahead of this checker's clock", ahead.Round(time.Second)))
		return nil
	}
	select {
	case c.pending <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.metrics.PendingResults.Inc()
	if c.clock.Now().After(t.Deadline) {
		c.batcher.add(c.check(work, t), ref)
		return nil
	}
	select {
	case c.jobs <- job{task: t, ref: ref}:
		return nil
	case <-ctx.Done():
		c.release()
		return ctx.Err()
	}
}

// maxClockSkew is how far ahead of a checker's clock a task may be
// scheduled: a scheduler publishes a tick at its time, so a task from
// further ahead comes from a clock that is wrong, or from no scheduler. It
// is not checked (its result would be stored under a time yet to come).
const maxClockSkew = 5 * time.Minute

// skipMalformed counts and skips a message that is not a task to check.
func (c *Checker) skipMalformed(msg *sarama.ConsumerMessage, ref messageRef, reason string, err error) {
	c.metrics.MalformedTasks.WithLabelValues(reason).Inc()
	// At most a line a second: a flood of garbage must not flood the log.
	c.malformedLog.Do(func() {
		c.log.Info("skipping a malformed task message (counted in webmon_checker_malformed_tasks_total)",
			"partition", msg.Partition, "offset", msg.Offset, "reason", reason, "error", err.Error())
	})
	ref.done()
}

// job is a task handed to a prober, with the message it came from.
type job struct {
	task *task.Task
	ref  messageRef
}

// probe makes the checks handed to it until jobs is closed.
func (c *Checker) probe(work context.Context) {
	for j := range c.jobs {
		c.metrics.InFlight.Inc()
		result := c.check(work, j.task)
		c.metrics.InFlight.Dec()
		if work.Err() != nil {
			// Stopped half done: not a result. The task is checked again
			// after a restart.
			c.release()
			continue
		}
		c.batcher.add(result, j.ref)
	}
}

// release frees a pending result's place.
func (c *Checker) release() {
	<-c.pending
	c.metrics.PendingResults.Dec()
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }

func malformedReason(err error) string {
	switch {
	case errors.Is(err, task.ErrEmpty):
		return "empty"
	case errors.Is(err, task.ErrUnknownVersion):
		return "unknown_version"
	}
	return "malformed"
}
