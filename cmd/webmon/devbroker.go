package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/webmon-dev/webmon/internal/kafka"
)

func newDevBrokerCommand() *cobra.Command {
	opts := kafka.DevBrokerOptions{Port: 9092, Partitions: 8, Log: os.Stderr}
	cmd := &cobra.Command{
		Use:   "dev-broker",
		Short: "Run an embedded Kafka-protocol broker for development and tests",
		Long: `Runs a single in-process Kafka broker (franz-go's kfake) on 127.0.0.1.
It speaks the real Kafka protocol, so webmon's components use it exactly as
they would a Kafka cluster. Not for production: it has no replication and,
without --data-dir, keeps every message in memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			broker, err := kafka.StartDevBroker(opts)
			if err != nil {
				return err
			}
			defer broker.Close()
			if _, err := fmt.Fprintf(cmd.OutOrStdout(), "embedded Kafka broker listening on %s\n", strings.Join(broker.Addrs(), ",")); err != nil {
				return err
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&opts.Port, "port", opts.Port, "port to listen on, on 127.0.0.1 (0 picks a free one)")
	fs.IntVar(&opts.Partitions, "partitions", opts.Partitions, "partitions of topics created without a count")
	fs.StringVar(&opts.DataDir, "data-dir", opts.DataDir, "keep topics, messages and offsets in this folder across restarts (default: in memory)")
	return cmd
}
