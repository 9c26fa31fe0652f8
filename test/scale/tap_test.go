package scale

import (
	"sync"
	"testing"
	"time"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// checkKey identifies a check as check_results' primary key does: the
// URL's id and scheduledAt in the microseconds PostgreSQL keeps.
type checkKey struct {
	urlID       int64
	scheduledAt int64
}

// tap counts the copies of each scheduled check the schedulers published,
// as the system's Tap reads them: what PostgreSQL is held to. (Leaner than
// test/reliability's, for millions of tasks.)
type tap struct {
	*sys.Tap
	mu     sync.Mutex
	copies map[checkKey]uint16
	urls   map[int64]bool // every URL a task was read for
}

func startTap(t *testing.T, broker string) *tap {
	tp := &tap{copies: map[checkKey]uint16{}, urls: map[int64]bool{}}
	tp.Tap = sys.StartTap(t, broker, "scale-tap", tp.add)
	return tp
}

func (tp *tap) add(tk *task.Task) {
	if tk.Trigger != task.TriggerSchedule {
		return
	}
	id := store.URLID(tk.UID, tk.URL)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.urls[id] = true
	tp.copies[checkKey{urlID: id, scheduledAt: tk.ScheduledAt.UnixMicro()}]++
}

// urlsSeen counts the URLs the tap read a task for.
func (tp *tap) urlsSeen() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.urls)
}

// published are the scheduled checks the tap read with scheduledAt in
// [from, to), with their copies in the topic.
func (tp *tap) published(from, to time.Time) map[checkKey]uint16 {
	lo, hi := from.UnixMicro(), to.UnixMicro()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := map[checkKey]uint16{}
	for k, n := range tp.copies {
		if k.scheduledAt >= lo && k.scheduledAt < hi {
			out[k] = n
		}
	}
	return out
}
