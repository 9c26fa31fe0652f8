package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/pflag"
)

// DefaultTopic is the topic of the check tasks unless told otherwise.
const DefaultTopic = "webmon-tasks"

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

// AddFlags registers the topic flags on fs, with s's current values as defaults.
func (s *TopicSpec) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.Name, "kafka-topic", s.Name, "Kafka topic of the check tasks")
	fs.Int32Var(&s.Partitions, "kafka-topic-partitions", s.Partitions,
		"partitions of the tasks topic when it is created; they bound how many checkers share the work")
	fs.Int16Var(&s.ReplicationFactor, "kafka-topic-replication-factor", s.ReplicationFactor,
		"replication factor of the tasks topic when it is created; -1 takes the brokers' default")
	fs.DurationVar(&s.Retention, "kafka-topic-retention", s.Retention,
		"how long the brokers keep tasks; a task is useless after its deadline (its interval)")
}

// Validate reports a topic spec that cannot be created.
func (s *TopicSpec) Validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("--kafka-topic: empty"))
	}
	if s.Partitions < 1 {
		errs = append(errs, fmt.Errorf("--kafka-topic-partitions %d: want at least 1", s.Partitions))
	}
	if s.ReplicationFactor == 0 || s.ReplicationFactor < -1 {
		errs = append(errs, fmt.Errorf("--kafka-topic-replication-factor %d: want -1 (the brokers' default) or at least 1", s.ReplicationFactor))
	}
	if s.Retention < 0 {
		errs = append(errs, fmt.Errorf("--kafka-topic-retention %s: negative", s.Retention))
	}
	return errors.Join(errs...)
}
