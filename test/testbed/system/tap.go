package system

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/task"
)

// Tap reads every task of the tasks topic from its start, with a consumer
// of its own (no group: it commits nothing and takes no checker's
// partitions), and hands each to its callback: what the schedulers
// published, the ground truth PostgreSQL is held to. It rides out broker
// outages.
type Tap struct {
	// Partitions are the topic's partitions.
	Partitions []int32

	client   sarama.Client
	consumer sarama.Consumer
	readers  []sarama.PartitionConsumer
	done     sync.WaitGroup
	onTask   func(*task.Task)

	mu   sync.Mutex
	next map[int32]int64 // offset after the last one read, by partition
	last time.Time       // when the last task arrived
}

// StartTap starts reading the topic; onTask is called for each task, from
// one goroutine per partition. The tap stops when the test ends.
func StartTap(t *testing.T, broker, clientID string, onTask func(*task.Task)) *Tap {
	t.Helper()
	cfg := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(kafka.DefaultVersion)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Version = v
	cfg.ClientID = clientID
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Retry.Backoff = 250 * time.Millisecond
	cfg.Metadata.Retry.Max = 1 << 20
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	tp := &Tap{onTask: onTask, next: map[int32]int64{}}
	if tp.client, err = sarama.NewClient([]string{broker}, cfg); err != nil {
		t.Fatalf("tap: %v", err)
	}
	t.Cleanup(tp.close)
	if tp.Partitions, err = tp.client.Partitions(Topic); err != nil {
		t.Fatalf("tap: partitions of %s: %v", Topic, err)
	}
	if tp.consumer, err = sarama.NewConsumerFromClient(tp.client); err != nil {
		t.Fatalf("tap: %v", err)
	}
	for _, p := range tp.Partitions {
		pc, err := tp.consumer.ConsumePartition(Topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("tap: reading partition %d: %v", p, err)
		}
		tp.readers = append(tp.readers, pc)
		tp.done.Add(2)
		go func() {
			defer tp.done.Done()
			var tk task.Task
			for msg := range pc.Messages() {
				tp.read(msg, &tk)
			}
		}()
		go func() {
			defer tp.done.Done()
			for range pc.Errors() { // the broker is down: the consumer tries again
			}
		}()
	}
	return tp
}

func (tp *Tap) read(msg *sarama.ConsumerMessage, tk *task.Task) {
	err := task.Unmarshal(msg.Value, tk)
	if err == nil {
		tp.onTask(tk)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.next[msg.Partition] = msg.Offset + 1
	if err == nil {
		tp.last = time.Now()
	}
}

func (tp *Tap) close() {
	for _, pc := range tp.readers {
		pc.AsyncClose() // closes its channels once it has stopped
	}
	tp.done.Wait()
	if tp.consumer != nil {
		_ = tp.consumer.Close()
	}
	_ = tp.client.Close()
}

// CatchUp waits until the tap has read every message the topic held when
// it was called.
func (tp *Tap) CatchUp(ctx context.Context, timeout time.Duration) error {
	ends := map[int32]int64{}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, p := range tp.Partitions {
			if _, ok := ends[p]; ok {
				continue
			}
			end, err := tp.client.GetOffset(Topic, p, sarama.OffsetNewest)
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

// QuietSince is when the last task arrived.
func (tp *Tap) QuietSince() time.Time {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.last
}
