package kafka

import (
	"crypto/tls"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DevBrokerOptions configure the embedded broker.
type DevBrokerOptions struct {
	// Port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Partitions of topics created without a partition count.
	Partitions int
	// DataDir keeps topics, messages and committed offsets across restarts;
	// empty keeps everything in memory.
	DataDir string
	// Log receives the broker's warnings; nil discards them.
	Log io.Writer
	// TLS, when set, makes the broker speak TLS only.
	TLS *tls.Config
	// Users, when any, turn SASL on and are the only ones let in.
	Users []SASLUser
}

// SASLUser is an account on the embedded broker.
type SASLUser struct {
	Mechanism, Username, Password string
}

// DevBroker is an in-process Kafka cluster of one broker (kfake) that speaks
// the real Kafka protocol: sarama cannot tell it from Apache Kafka for what
// webmon uses (topics, idempotent producers, consumer groups, offsets). It
// keeps data in memory without retention unless given a DataDir.
type DevBroker struct {
	cluster *kfake.Cluster
}

// StartDevBroker starts the embedded broker; Close stops it.
func StartDevBroker(opts DevBrokerOptions) (*DevBroker, error) {
	kopts := []kfake.Opt{
		kfake.Ports(opts.Port),
		kfake.ClusterID("webmon-dev"),
		// sarama's consumer groups in tests use sessions shorter than Kafka's
		// 6 s minimum so that rebalances take seconds.
		kfake.GroupMinSessionTimeout(time.Second),
	}
	if opts.Partitions > 0 {
		kopts = append(kopts, kfake.DefaultNumPartitions(opts.Partitions))
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	if opts.Log != nil {
		kopts = append(kopts, kfake.WithLogger(kfake.BasicLogger(opts.Log, kfake.LogLevelWarn)))
	}
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
	}
	if len(opts.Users) > 0 {
		kopts = append(kopts, kfake.EnableSASL())
		for _, u := range opts.Users {
			kopts = append(kopts, kfake.Superuser(u.Mechanism, u.Username, u.Password))
		}
	}
	cluster, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded Kafka broker: %w", err)
	}
	return &DevBroker{cluster: cluster}, nil
}

// Addrs are the broker's host:port addresses, for Config.Brokers.
func (b *DevBroker) Addrs() []string { return b.cluster.ListenAddrs() }

// Close stops the broker, flushing its data to DataDir if it has one.
func (b *DevBroker) Close() { b.cluster.Close() }
