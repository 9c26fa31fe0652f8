package kafka

import (
	"time"

	"github.com/IBM/sarama"
)

// Producer is the sarama configuration of webmon's task producers: c's
// connection settings, made idempotent (a retried batch is never written
// twice), acknowledged by all in-sync replicas, lz4-compressed, and
// reporting every success and error so that the caller can count them and
// bound what is in flight.
func (c *Config) Producer() (*sarama.Config, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	// Idempotence keeps order with one request in flight per broker.
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Retry.Max = 5
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Compression = sarama.CompressionLZ4
	// Batches form by themselves while the previous request is in flight;
	// a short linger makes them fuller at low rates without adding lateness
	// that matters.
	sc.Producer.Flush.Frequency = 2 * time.Millisecond
	sc.Producer.Flush.Bytes = 512 << 10
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.ChannelBufferSize = 4096
	// Keys are Website UIDs: sarama's hash partitioner puts all of a
	// Website's tasks on one partition.
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	return sc, nil
}
