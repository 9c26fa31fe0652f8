package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/types"

	"github.com/webmon-dev/webmon/internal/task"
)

// resumeFrom is where a new leader takes over, read from the topic: the
// scheduledAt of the newest regular task of each of its Websites, and of
// its Websites on each partition, published since the catch-up window
// began.
type resumeFrom struct {
	websites   map[types.UID]time.Time
	partitions map[int32]time.Time
}

// after is the point up to which uid's ticks are known to be published, or
// false if nothing of ours was published lately on its partition.
//
// A Website's own newest task comes first: all of a Website's tasks go to
// one partition, published in due order (the idempotent producer keeps
// that order), so every tick of it due before its newest landed too,
// whoever published them: the previous leader of this shard, or that of
// the shard the Website moved from, which stopped publishing it when it
// moved, sooner than it stopped the partition's other Websites. Without a
// task of its own (a long interval), the partition's newest of ours is the
// point: a previous leader published the partition in due order.
func (r resumeFrom) after(uid types.UID, partition int32) (time.Time, bool) {
	if t, ok := r.websites[uid]; ok {
		return t, true
	}
	t, ok := r.partitions[partition]
	return t, ok
}

// resumePoints reads, from every partition of the topic, the regular tasks
// of this shard published since `since`. ours tells this shard's Websites
// from the rest.
func resumePoints(ctx context.Context, client sarama.Client, topic string, since time.Time, ours func(types.UID) bool) (resumeFrom, error) {
	partitions, err := client.Partitions(topic)
	if err != nil {
		return resumeFrom{}, fmt.Errorf("listing the partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return resumeFrom{}, err
	}
	defer func() { _ = consumer.Close() }()

	newest := make([]map[types.UID]time.Time, len(partitions))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, partition := range partitions {
		g.Go(func() error {
			var err error
			newest[i], err = newestOurs(ctx, client, consumer, topic, partition, since, ours)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return resumeFrom{}, err
	}
	r := resumeFrom{websites: map[types.UID]time.Time{}, partitions: map[int32]time.Time{}}
	for i, websites := range newest {
		for uid, t := range websites {
			r.websites[uid] = t
			if t.After(r.partitions[partitions[i]]) {
				r.partitions[partitions[i]] = t
			}
		}
	}
	return r, nil
}

// newestOurs reads one partition from the first message stamped at or after
// since to its end, and returns the newest scheduledAt of each of our
// Websites' regular tasks.
func newestOurs(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, partition int32,
	since time.Time, ours func(types.UID) bool) (map[types.UID]time.Time, error) {
	from, err := client.GetOffset(topic, partition, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("finding the offset of %s/%d at %s: %w", topic, partition, since, err)
	}
	end, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("finding the end of %s/%d: %w", topic, partition, err)
	}
	if from < 0 || from >= end {
		return nil, nil
	}
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return nil, fmt.Errorf("reading %s/%d: %w", topic, partition, err)
	}
	defer func() { _ = pc.Close() }()

	newest := map[types.UID]time.Time{}
	var t task.Task
	for {
		select {
		case msg := <-pc.Messages():
			uid := types.UID(msg.Key)
			if ours(uid) && task.Unmarshal(msg.Value, &t) == nil &&
				t.Trigger == task.TriggerSchedule && t.ScheduledAt.After(newest[uid]) {
				newest[uid] = t.ScheduledAt
			}
			if msg.Offset >= end-1 {
				return newest, nil
			}
		case err := <-pc.Errors():
			return nil, fmt.Errorf("reading %s/%d: %w", topic, partition, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
