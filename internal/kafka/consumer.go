package kafka

import (
	"time"

	"github.com/IBM/sarama"
)

// Consumer is the sarama configuration of webmon's checkers: c's
// connection settings for a consumer group that starts a new group at the
// oldest task kept (none is lost), moves as few partitions as it can on a
// rebalance (each move costs the new owner a reload of its Websites'
// state), and commits only the offsets the checker marks, which it does
// once results are stored.
func (c *Config) Consumer() (*sarama.Config, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	// A checker that leaves drains its checks first (up to its drain
	// timeout); the rebalance waits that long.
	sc.Consumer.Group.Rebalance.Timeout = time.Minute
	sc.Consumer.Return.Errors = true
	sc.Consumer.Fetch.Default = 1 << 20
	sc.ChannelBufferSize = 1024
	return sc, nil
}
