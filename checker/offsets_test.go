package checker

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestClaimOffsetsMarkOnlyStoredPrefixes: checks finish out of order; the
// offset committed never passes a message whose result is not stored.
func TestClaimOffsetsMarkOnlyStoredPrefixes(t *testing.T) {
	var marks []int64
	c := newClaimOffsets(func(next int64) { marks = append(marks, next) })
	for _, off := range []int64{10, 11, 12, 14, 15} { // 13 was compacted away
		c.add(off)
	}
	for _, step := range []struct {
		done int64
		want []int64
	}{
		{12, nil},
		{11, nil},
		{10, []int64{13}},     // 10, 11, 12 stored
		{15, []int64{13}},     // 14 still in flight
		{99, []int64{13}},     // never received: ignored
		{14, []int64{13, 16}}, // all stored
	} {
		c.done(step.done)
		if !slices.Equal(marks, step.want) {
			t.Fatalf("after %d done: marked %v, want %v", step.done, marks, step.want)
		}
	}
	if n := c.inFlight(); n != 0 {
		t.Errorf("%d in flight, want 0", n)
	}
}

func TestClaimOffsetsDrain(t *testing.T) {
	var mu sync.Mutex
	var marks []int64
	c := newClaimOffsets(func(next int64) { mu.Lock(); marks = append(marks, next); mu.Unlock() })
	for off := range int64(1000) {
		c.add(off)
	}
	go func() {
		for off := int64(999); off >= 0; off-- {
			c.done(off)
		}
	}()
	if left := c.drain(10 * time.Second); left != 0 {
		t.Fatalf("drain left %d in flight", left)
	}
	mu.Lock()
	if len(marks) != 1 || marks[0] != 1000 {
		t.Errorf("marks %v, want one mark at 1000", marks)
	}
	mu.Unlock()

	// A drain that times out marks nothing afterwards: the session is over.
	c.add(1000)
	c.add(1001)
	start := time.Now()
	if left := c.drain(100 * time.Millisecond); left != 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("drain with 2 in flight: left %d after %s", left, time.Since(start))
	}
	c.done(1000)
	mu.Lock()
	defer mu.Unlock()
	if len(marks) != 1 {
		t.Errorf("marked %v after the drain ended", marks)
	}
}
