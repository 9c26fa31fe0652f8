package scale

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/webmon-dev/webmon/internal/kafka"
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

// tap reads every task of the tasks topic from its start with a consumer
// of its own (no group: it takes no checker's partitions) and counts the
// copies of each scheduled check: what PostgreSQL is held to. (As
// test/reliability's tap, but lean enough for millions of tasks.)
type tap struct {
	client     sarama.Client
	consumer   sarama.Consumer
	partitions []int32
	readers    []sarama.PartitionConsumer
	done       sync.WaitGroup

	mu        sync.Mutex
	copies    map[checkKey]uint16
	urls      map[int64]bool  // every URL a task was read for
	next      map[int32]int64 // offset after the last one read, by partition
	malformed int
	last      time.Time // when the last task arrived
}

func startTap(t *testing.T, broker string) *tap {
	t.Helper()
	cfg := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(kafka.DefaultVersion)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = v
	cfg.ClientID = "scale-tap"
	tp := &tap{copies: map[checkKey]uint16{}, urls: map[int64]bool{}, next: map[int32]int64{}}
	if tp.client, err = sarama.NewClient([]string{broker}, cfg); err != nil {
		t.Fatalf("tap: %v", err)
	}
	t.Cleanup(tp.close)
	if tp.partitions, err = tp.client.Partitions(sys.Topic); err != nil {
		t.Fatalf("tap: partitions of %s: %v", sys.Topic, err)
	}
	if tp.consumer, err = sarama.NewConsumerFromClient(tp.client); err != nil {
		t.Fatalf("tap: %v", err)
	}
	for _, p := range tp.partitions {
		pc, err := tp.consumer.ConsumePartition(sys.Topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("tap: reading partition %d: %v", p, err)
		}
		tp.readers = append(tp.readers, pc)
		tp.done.Add(2)
		go func() {
			defer tp.done.Done()
			for msg := range pc.Messages() {
				tp.add(msg)
			}
		}()
		go func() {
			defer tp.done.Done()
			for range pc.Errors() { // the consumer retries by itself
			}
		}()
	}
	return tp
}

func (tp *tap) add(msg *sarama.ConsumerMessage) {
	var tk task.Task
	err := task.Unmarshal(msg.Value, &tk)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.next[msg.Partition] = msg.Offset + 1
	if err != nil {
		tp.malformed++
		return
	}
	tp.last = time.Now()
	if tk.Trigger != task.TriggerSchedule {
		return
	}
	id := store.URLID(tk.UID, tk.URL)
	tp.urls[id] = true
	tp.copies[checkKey{urlID: id, scheduledAt: tk.ScheduledAt.UnixMicro()}]++
}

// urlsSeen counts the URLs the tap read a task for.
func (tp *tap) urlsSeen() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.urls)
}

func (tp *tap) close() {
	for _, pc := range tp.readers {
		pc.AsyncClose()
	}
	tp.done.Wait()
	if tp.consumer != nil {
		_ = tp.consumer.Close()
	}
	_ = tp.client.Close()
}

// catchUp waits until the tap has read every message the topic holds.
func (tp *tap) catchUp(ctx context.Context, timeout time.Duration) error {
	ends := map[int32]int64{}
	for _, p := range tp.partitions {
		end, err := tp.client.GetOffset(sys.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("the tap reading the end of partition %d: %w", p, err)
		}
		ends[p] = end
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		for p, end := range ends {
			if tp.next[p] < end {
				return false, nil
			}
		}
		return true, nil
	})
}

func (tp *tap) quietSince() time.Time {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.last
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
