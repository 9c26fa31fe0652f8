package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// TopicSpec is a topic as webmon wants it.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// Retention is how long the brokers keep messages; zero keeps the broker's default.
	Retention time.Duration
}

// EnsureTopic creates the topic if it is missing. An existing topic is left
// as it is, but one with fewer partitions than asked for is reported:
// partitions bound how many checkers can share the work.
func EnsureTopic(admin sarama.ClusterAdmin, spec TopicSpec) error {
	detail := &sarama.TopicDetail{NumPartitions: spec.Partitions, ReplicationFactor: spec.ReplicationFactor}
	if spec.Retention > 0 {
		ms := strconv.FormatInt(spec.Retention.Milliseconds(), 10)
		detail.ConfigEntries = map[string]*string{"retention.ms": &ms}
	}
	err := admin.CreateTopic(spec.Name, detail, false)
	if err == nil {
		return nil
	}
	var topicErr *sarama.TopicError
	if !errors.As(err, &topicErr) || topicErr.Err != sarama.ErrTopicAlreadyExists {
		return fmt.Errorf("creating topic %s: %w", spec.Name, err)
	}
	metas, err := admin.DescribeTopics([]string{spec.Name})
	if err != nil {
		return fmt.Errorf("describing topic %s: %w", spec.Name, err)
	}
	if len(metas) == 1 && metas[0].Err == sarama.ErrNoError && int32(len(metas[0].Partitions)) < spec.Partitions {
		return fmt.Errorf("topic %s has %d partitions, fewer than the %d configured: add partitions with your Kafka tools",
			spec.Name, len(metas[0].Partitions), spec.Partitions)
	}
	return nil
}
