package reliability

import (
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// checkKey identifies a check as check_results' primary key does: the
// URL's id and scheduledAt, in the microseconds PostgreSQL keeps.
type checkKey struct {
	urlID       int64
	scheduledAt int64
}

func keyOf(uid, url string, scheduledAt time.Time) checkKey {
	return checkKey{urlID: store.URLID(uid, url), scheduledAt: scheduledAt.UnixMicro()}
}

// publishedTask is a task as the tap read it from the topic.
type publishedTask struct {
	uid, url    string
	scheduledAt time.Time
	trigger     task.Trigger
	// copies counts the messages of this check in the topic: more than one
	// is a doubled tick.
	copies int
}

// tap keeps every task the schedulers published, as the system's Tap
// reads them.
type tap struct {
	*sys.Tap
	mu    sync.Mutex
	tasks map[checkKey]*publishedTask
}

func startTap(t *testing.T, broker string) *tap {
	tp := &tap{tasks: map[checkKey]*publishedTask{}}
	tp.Tap = sys.StartTap(t, broker, "reliability-tap", tp.add)
	return tp
}

func (tp *tap) add(tk *task.Task) {
	k := keyOf(tk.UID, tk.URL, tk.ScheduledAt)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if p := tp.tasks[k]; p != nil {
		p.copies++
		return
	}
	tp.tasks[k] = &publishedTask{uid: tk.UID, url: tk.URL, scheduledAt: tk.ScheduledAt, trigger: tk.Trigger, copies: 1}
}

// snapshot copies what was published so far.
func (tp *tap) snapshot() map[checkKey]publishedTask {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	out := make(map[checkKey]publishedTask, len(tp.tasks))
	for k, p := range tp.tasks {
		out[k] = *p
	}
	return out
}

// partitionOf is the partition of a Website's tasks, as the schedulers'
// hash partitioner puts them.
func partitionOf(uid string, partitions int) int32 {
	p, _ := sarama.NewHashPartitioner(sys.Topic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(uid)}, int32(partitions))
	return p
}
