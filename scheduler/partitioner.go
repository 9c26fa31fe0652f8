package scheduler

import (
	"sync/atomic"

	"github.com/IBM/sarama"
)

// sitePartitioner puts each task on the partition sarama's hash
// partitioner picks for its Website's UID, asking it once per Website (and
// partition count) rather than for every task: hashing the key of every
// message reads a cold UID each time, one cache miss a task at a million
// URLs. Messages that are not tasks go to the hash partitioner.
type sitePartitioner struct {
	hash sarama.Partitioner
}

// newSitePartitioner is a sarama.PartitionerConstructor.
func newSitePartitioner(topic string) sarama.Partitioner {
	return sitePartitioner{hash: sarama.NewHashPartitioner(topic)}
}

func (p sitePartitioner) Partition(msg *sarama.ProducerMessage, partitions int32) (int32, error) {
	m, ok := msg.Metadata.(*outMessage)
	if !ok {
		return p.hash.Partition(msg, partitions)
	}
	if int32(m.partition>>32) == partitions {
		return int32(uint32(m.partition)), nil
	}
	return m.tick.site.partition.of(partitions, func() (int32, error) { return p.hash.Partition(msg, partitions) })
}

// RequiresConsistency: a Website's tasks must always land on one
// partition.
func (sitePartitioner) RequiresConsistency() bool { return true }

// cachedPartition is a Website's partition for the partition count it was
// computed for, read by the producer while the publisher makes new sites.
type cachedPartition struct {
	// v holds partitions<<32 | partition; zero until computed (a topic
	// has at least one partition).
	v atomic.Uint64
}

func (c *cachedPartition) of(partitions int32, compute func() (int32, error)) (int32, error) {
	if v := c.v.Load(); int32(v>>32) == partitions {
		return int32(uint32(v)), nil
	}
	p, err := compute()
	if err == nil {
		c.v.Store(uint64(partitions)<<32 | uint64(uint32(p)))
	}
	return p, err
}
