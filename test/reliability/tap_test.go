package reliability

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

// tap reads every task of the tasks topic from its start, with a consumer
// of its own (no group: it commits nothing and takes no checker's
// partitions), and keeps what the schedulers published: the ground truth
// that PostgreSQL is held to.
type tap struct {
	client     sarama.Client
	consumer   sarama.Consumer
	partitions []int32
	readers    []sarama.PartitionConsumer
	done       sync.WaitGroup

	mu        sync.Mutex
	tasks     map[checkKey]*publishedTask
	next      map[int32]int64 // offset after the last one read, by partition
	malformed int
	errors    int
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
	cfg.ClientID = "reliability-tap"
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Retry.Backoff = 250 * time.Millisecond
	cfg.Metadata.Retry.Max = 1 << 20
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	tp := &tap{tasks: map[checkKey]*publishedTask{}, next: map[int32]int64{}}
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
			for range pc.Errors() {
				tp.mu.Lock()
				tp.errors++ // the broker is down: the consumer tries again
				tp.mu.Unlock()
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
	k := keyOf(tk.UID, tk.URL, tk.ScheduledAt)
	if p := tp.tasks[k]; p != nil {
		p.copies++
		return
	}
	tp.tasks[k] = &publishedTask{uid: tk.UID, url: tk.URL, scheduledAt: tk.ScheduledAt, trigger: tk.Trigger, copies: 1}
}

func (tp *tap) close() {
	for _, pc := range tp.readers {
		pc.AsyncClose() // closes its channels once it has stopped
	}
	tp.done.Wait()
	if tp.consumer != nil {
		_ = tp.consumer.Close()
	}
	_ = tp.client.Close()
}

// catchUp waits until the tap has read every message the topic held when
// it was called.
func (tp *tap) catchUp(ctx context.Context, timeout time.Duration) error {
	ends := map[int32]int64{}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, p := range tp.partitions {
			if _, ok := ends[p]; ok {
				continue
			}
			end, err := tp.client.GetOffset(sys.Topic, p, sarama.OffsetNewest)
			if err != nil {
				return false, nil
			}
			ends[p] = end
		}
		tp.mu.Lock()
		defer tp.mu.Unlock()
		for p, end := range ends {
			if tp.next[p] < end {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the tap reading the tasks topic to its end %v: %w", ends, err)
	}
	return nil
}

// quietSince is when the last task arrived.
func (tp *tap) quietSince() time.Time {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.last
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
