package scheduler

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestTimingWheelOrder: entries come out in due order, each once, whether
// they are due within the slot being read, in the past, or several turns
// of the wheel ahead; next always names the earliest.
func TestTimingWheelOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := newTimingWheel()
	start := epoch.UnixNano()
	var pending []int64
	add := func(due int64) {
		w.add(entry{due: due})
		i, _ := slices.BinarySearch(pending, due)
		pending = slices.Insert(pending, i, due)
	}
	for range 20_000 {
		add(start + rng.Int64N(int64(10*time.Minute))) // up to 9 turns ahead
	}
	now := start
	var last int64
	for step := 0; len(pending) > 0; step++ {
		now += rng.Int64N(int64(2 * time.Second))
		if want := pending[0]; w.next() != want {
			t.Fatalf("step %d: next = %d, want %d", step, w.next()-start, want-start)
		}
		for {
			e, ok := w.popDue(now)
			if !ok {
				break
			}
			if e.due < last || e.due > now || e.due != pending[0] {
				t.Fatalf("step %d: took %d (now %d, last %d, earliest pending %d)", step, e.due-start, now-start, last-start, pending[0]-start)
			}
			last = e.due
			pending = pending[1:]
		}
		if len(pending) > 0 && pending[0] <= now {
			t.Fatalf("step %d: %d is due at %d but was not taken", step, pending[0]-start, now-start)
		}
		if step%7 == 0 && step < 2000 { // new entries: just ahead, inside the current slot, far ahead
			add(now + 1)
			add(now + rng.Int64N(int64(20*time.Minute)))
			last = min(last, now+1)
		}
		if w.len() != len(pending) {
			t.Fatalf("len = %d, want %d", w.len(), len(pending))
		}
	}
}
