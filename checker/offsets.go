package checker

import (
	"slices"
	"sync"
	"time"
)

// marker records that every message of a partition below an offset is
// done with (sarama.ConsumerGroupSession.MarkOffset).
type marker func(next int64)

// claimOffsets tracks the messages of one partition claim from receipt
// until their results are stored. Checks finish out of order; the
// committed offset only ever moves past messages that are all stored, so
// that a crash redelivers, and never skips, a message.
type claimOffsets struct {
	mark marker

	mu sync.Mutex
	// offsets are the messages in flight, ascending from head; finished
	// says which of them are done with.
	offsets  []int64
	finished []bool
	head     int
	closed   bool
	empty    *sync.Cond
}

func newClaimOffsets(mark marker) *claimOffsets {
	c := &claimOffsets{mark: mark}
	c.empty = sync.NewCond(&c.mu)
	return c
}

// add records a message received; offsets come in ascending order.
func (c *claimOffsets) add(offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offsets = append(c.offsets, offset)
	c.finished = append(c.finished, false)
}

// done records that a message is done with: its result stored, or it was
// skipped as malformed.
func (c *claimOffsets) done(offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, found := slices.BinarySearch(c.offsets[c.head:], offset)
	if !found || c.closed {
		return
	}
	c.finished[c.head+i] = true
	moved := false
	for c.head < len(c.offsets) && c.finished[c.head] {
		c.head++
		moved = true
	}
	if !moved {
		return
	}
	c.mark(c.offsets[c.head-1] + 1)
	if c.head == len(c.offsets) {
		c.offsets, c.finished, c.head = c.offsets[:0], c.finished[:0], 0
		c.empty.Broadcast()
	} else if c.head > 1024 && c.head > len(c.offsets)/2 {
		n := copy(c.offsets, c.offsets[c.head:])
		copy(c.finished, c.finished[c.head:])
		c.offsets, c.finished, c.head = c.offsets[:n], c.finished[:n], 0
	}
}

// inFlight counts the messages not done with.
func (c *claimOffsets) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.offsets) - c.head
}

// drain waits until every message is done with, or timeout; after it,
// nothing more is marked: the claim's session is over.
func (c *claimOffsets) drain(timeout time.Duration) (left int) {
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.closed = true
		c.empty.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.closed && c.head < len(c.offsets) {
		c.empty.Wait()
	}
	c.closed = true
	return len(c.offsets) - c.head
}
