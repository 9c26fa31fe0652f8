package scheduler

import (
	"cmp"
	"math"
	"slices"
)

// The timing wheel's geometry: slots of 2^22 ns (about 4.2 ms), 2^14 of
// them, so one turn spans about 69 s. An entry due further out waits in its
// slot for the turns to come.
const (
	slotShift  = 22
	wheelBits  = 14
	wheelSlots = 1 << wheelBits
	slotMask   = wheelSlots - 1
)

// maxSpareSlots bounds the emptied slot arrays kept for reuse, should the
// schedule shrink.
const maxSpareSlots = 1024

// timingWheel holds the schedule's entries by due time. Adding an entry is
// an append to its slot; taking the due ones sorts one slot at a time (a
// few thousand entries at the highest rates) and reads it in order. Unlike
// a heap of a million entries, it touches memory in sequence, and entries
// still come out in due order, which the takeover protocol relies on.
type timingWheel struct {
	slots [][]entry
	// cursor is the absolute number (due >> slotShift) of the slot whose
	// entries are in current.
	cursor int64
	// current holds the cursor slot's entries, sorted; pos is the first
	// one not yet taken.
	current []entry
	pos     int
	n       int
	// spare are the arrays of slots emptied by open, for slots that fill
	// next: at a given rate a slot holds about the same number of entries
	// every turn, so after one interval appending no longer allocates,
	// and slots beyond the longest interval hold no memory.
	spare [][]entry
}

func newTimingWheel() *timingWheel {
	return &timingWheel{slots: make([][]entry, wheelSlots), cursor: math.MinInt64}
}

func (w *timingWheel) len() int { return w.n }

// fill queues entries into an empty wheel, starting its turn at the
// earliest: a leader's whole schedule at once, each entry an append.
func (w *timingWheel) fill(entries []entry) {
	if len(entries) == 0 {
		return
	}
	earliest := entries[0].due
	for _, e := range entries {
		earliest = min(earliest, e.due)
	}
	w.cursor = earliest>>slotShift - 1
	for _, e := range entries {
		w.add(e)
	}
}

// add queues e. An entry at or before the current slot joins it in order.
func (w *timingWheel) add(e entry) {
	w.n++
	abs := e.due >> slotShift
	if w.cursor == math.MinInt64 {
		w.cursor = abs
	}
	if abs <= w.cursor {
		i, _ := slices.BinarySearchFunc(w.current[w.pos:], e.due, func(x entry, due int64) int { return cmp.Compare(x.due, due+1) })
		w.current = slices.Insert(w.current, w.pos+i, e)
		return
	}
	slot := &w.slots[abs&slotMask]
	if *slot == nil && len(w.spare) > 0 {
		*slot, w.spare = w.spare[len(w.spare)-1], w.spare[:len(w.spare)-1]
	}
	*slot = append(*slot, e)
}

// popDue removes and returns the earliest entry due at or before now.
func (w *timingWheel) popDue(now int64) (entry, bool) {
	for {
		if w.pos < len(w.current) {
			e := w.current[w.pos]
			if e.due > now {
				return entry{}, false
			}
			w.current[w.pos] = entry{} // no dangling site pointer
			w.pos++
			w.n--
			return e, true
		}
		if w.n == 0 || (w.cursor+1)<<slotShift > now {
			return entry{}, false
		}
		w.open(w.cursor + 1)
	}
}

// open makes abs the current slot: its entries for this turn move to
// current, sorted; those of later turns stay.
func (w *timingWheel) open(abs int64) {
	w.cursor = abs
	w.current, w.pos = w.current[:0], 0
	slot := w.slots[abs&slotMask]
	later := slot[:0]
	for _, e := range slot {
		if e.due>>slotShift <= abs {
			w.current = append(w.current, e)
		} else {
			later = append(later, e)
		}
	}
	clear(slot[len(later):])
	w.slots[abs&slotMask] = later
	if len(later) == 0 && cap(later) > 0 && len(w.spare) < maxSpareSlots {
		w.slots[abs&slotMask] = nil
		w.spare = append(w.spare, later)
	}
	slices.SortFunc(w.current, func(a, b entry) int { return cmp.Compare(a.due, b.due) })
}

// next is the earliest due time, or the largest int64 when empty.
func (w *timingWheel) next() int64 {
	if w.pos < len(w.current) {
		return w.current[w.pos].due
	}
	if w.n == 0 {
		return math.MaxInt64
	}
	// The first slot of this turn that holds an entry of this turn.
	for abs := w.cursor + 1; abs <= w.cursor+wheelSlots; abs++ {
		earliest := int64(math.MaxInt64)
		for _, e := range w.slots[abs&slotMask] {
			if e.due>>slotShift == abs {
				earliest = min(earliest, e.due)
			}
		}
		if earliest != math.MaxInt64 {
			return earliest
		}
	}
	// Everything is more than a turn away.
	earliest := int64(math.MaxInt64)
	for _, slot := range w.slots {
		for _, e := range slot {
			earliest = min(earliest, e.due)
		}
	}
	return earliest
}
