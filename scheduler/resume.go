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

// resumePoints finds, for each partition of the topic, the scheduledAt of
// the newest regular task this shard published since `since`: the point up
// to which a previous leader is known to have published that partition's
// ticks. A leader publishes in due order and the idempotent producer keeps
// that order within a partition, so every tick due before it landed too.
//
// ours tells this shard's Websites from the rest. A partition with no task
// of ours since `since` is missing from the answer.
func resumePoints(ctx context.Context, client sarama.Client, topic string, since time.Time, ours func(types.UID) bool) (map[int32]time.Time, error) {
	partitions, err := client.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("listing the partitions of %s: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer func() { _ = consumer.Close() }()

	points := make([]time.Time, len(partitions))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, partition := range partitions {
		g.Go(func() error {
			t, err := newestOurs(ctx, client, consumer, topic, partition, since, ours)
			points[i] = t
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	found := map[int32]time.Time{}
	for i, t := range points {
		if !t.IsZero() {
			found[partitions[i]] = t
		}
	}
	return found, nil
}

// newestOurs reads one partition from the first message stamped at or after
// since to its end, and returns the newest scheduledAt of our regular tasks.
func newestOurs(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, partition int32,
	since time.Time, ours func(types.UID) bool) (time.Time, error) {
	from, err := client.GetOffset(topic, partition, since.UnixMilli())
	if err != nil {
		return time.Time{}, fmt.Errorf("finding the offset of %s/%d at %s: %w", topic, partition, since, err)
	}
	end, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return time.Time{}, fmt.Errorf("finding the end of %s/%d: %w", topic, partition, err)
	}
	if from < 0 || from >= end {
		return time.Time{}, nil
	}
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading %s/%d: %w", topic, partition, err)
	}
	defer func() { _ = pc.Close() }()

	var newest time.Time
	var t task.Task
	for {
		select {
		case msg := <-pc.Messages():
			if ours(types.UID(msg.Key)) && task.Unmarshal(msg.Value, &t) == nil &&
				t.Trigger == task.TriggerSchedule && t.ScheduledAt.After(newest) {
				newest = t.ScheduledAt
			}
			if msg.Offset >= end-1 {
				return newest, nil
			}
		case err := <-pc.Errors():
			return time.Time{}, fmt.Errorf("reading %s/%d: %w", topic, partition, err)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
