package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/webmon-dev/webmon/checker"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/version"
)

type checkerOptions struct {
	kafka     kafka.Config
	topic     kafka.TopicSpec
	check     checker.Options
	db        store.Config
	bodyLimit string
	// allowNetworks are the CIDRs of --allow-networks, parsed in validate.
	allowNetworks []string
	migrate       bool
	managerOptions
}

func newCheckerCommand() *cobra.Command {
	o := &checkerOptions{
		kafka:     kafka.Config{ClientID: "webmon-checker", Version: kafka.DefaultVersion},
		topic:     kafka.TopicSpec{Name: kafka.DefaultTopic, Partitions: 32, ReplicationFactor: -1, Retention: time.Hour},
		check:     checker.DefaultOptions(),
		bodyLimit: "1Mi",
		managerOptions: managerOptions{
			metricsAddr:  defaultMetricsAddr,
			probeAddr:    defaultProbeAddr,
			kubeAPIQPS:   20,
			kubeAPIBurst: 40,
		},
	}
	cmd := &cobra.Command{
		Use:   "checker",
		Short: "Consume check tasks, probe the URLs, store results and summarise them into status",
		Long: `The checker joins the Kafka consumer group of the tasks topic, checks each
task's URL (probe, expectations, plugins), stores every result in
PostgreSQL, and summarises the results into each Website's status: at once
when a URL changes state, otherwise at most once per --status-interval.

An offset is committed only once the results up to it are stored, and
storage is idempotent: killed at any moment, a checker loses no result and
a redelivered task is stored once. Every check opens a connection of its
own (DNS, connect and TLS measured as a first visitor sees them) unless
--reuse-connections.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runChecker(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	o.kafka.AddFlags(fs)
	o.topic.AddFlags(fs)
	o.db.AddFlags(fs)
	c := &o.check
	fs.StringVar(&c.Group, "kafka-group", c.Group, "Kafka consumer group of the checkers")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "checks made at once")
	fs.IntVar(&c.MaxPending, "max-pending", c.MaxPending, "tasks taken from Kafka whose results are not stored yet, at most: bounds memory when PostgreSQL is slow")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "results stored per batch, at most")
	fs.DurationVar(&c.BatchInterval, "batch-interval", c.BatchInterval, "how long a result waits for its batch to fill, at most")
	fs.IntVar(&c.Writers, "writers", c.Writers, "batches stored at once")
	fs.DurationVar(&c.StatusInterval, "status-interval", c.StatusInterval, "least time between two status writes of a Website; state changes are written at once")
	fs.IntVar(&c.StatusWorkers, "status-workers", c.StatusWorkers, "status writes made at once")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "how long a checker that stops, or gives a partition up, waits for its checks to be stored")
	fs.DurationVar(&c.RollupInterval, "rollup-interval", c.RollupInterval, "how often stored results are counted into the uptime rollups")
	fs.DurationVar(&c.MaintenanceInterval, "maintenance-interval", c.MaintenanceInterval, "how often daily partitions are created ahead and dropped past retention")
	fs.DurationVar(&c.Retention.Results, "results-retention", c.Retention.Results, "how long every check's result is kept (whole days)")
	fs.DurationVar(&c.Retention.MinuteRollups, "minute-rollups-retention", c.Retention.MinuteRollups, "how long per-minute rollups are kept")
	fs.DurationVar(&c.Retention.HourRollups, "hour-rollups-retention", c.Retention.HourRollups, "how long per-hour rollups are kept")
	fs.StringVar(&o.bodyLimit, "body-limit", o.bodyLimit, "most of a response body read; a longer body fails the check (a quantity: 1Mi, 512Ki)")
	fs.BoolVar(&c.Probe.ReuseConnections, "reuse-connections", c.Probe.ReuseConnections,
		"keep connections open between checks of a host; by default each check opens its own, to measure DNS, connect and TLS")
	fs.BoolVar(&c.Probe.Addresses.DenyPrivate, "deny-private-networks", false,
		"refuse to connect to private, loopback, CGNAT and unique-local addresses too (cloud metadata and link-local addresses are always refused), for the URL and every redirect")
	fs.StringSliceVar(&o.allowNetworks, "allow-networks", nil,
		"CIDRs checks may connect to even where refused otherwise (comma-separated, such as 10.20.0.0/16)")
	fs.StringVar(&c.Plugins.BlocklistResolver, "dns-blocklist-resolver", "", "filtering DNS resolver (host:port) the dns-blocklist plugin asks (default Quad9, 9.9.9.9:53)")
	fs.BoolVar(&o.migrate, "migrate", o.migrate, "apply the PostgreSQL schema migrations at start (as webmon migrate does)")
	o.addFlags(fs, "")
	return cmd
}

func (o *checkerOptions) validate() error {
	var errs []error
	consumer, err := o.kafka.Consumer()
	if err != nil {
		errs = append(errs, err)
	}
	if err := o.topic.Validate(); err != nil {
		errs = append(errs, err)
	}
	if q, err := resource.ParseQuantity(o.bodyLimit); err != nil {
		errs = append(errs, fmt.Errorf("--body-limit %q: want a quantity such as 1Mi", o.bodyLimit))
	} else {
		o.check.Probe.BodyLimit = q.Value()
	}
	if _, err := o.db.URL(); err != nil {
		errs = append(errs, err)
	}
	o.check.Probe.Addresses.Allow = nil
	for _, cidr := range o.allowNetworks {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(cidr))
		if err != nil {
			errs = append(errs, fmt.Errorf("--allow-networks %q: want a CIDR such as 10.20.0.0/16", cidr))
			continue
		}
		o.check.Probe.Addresses.Allow = append(o.check.Probe.Addresses.Allow, prefix.Masked())
	}
	o.check.Kafka, o.check.Brokers, o.check.Topic = consumer, o.kafka.Brokers, o.topic.Name
	o.check.Probe.UserAgent = version.UserAgent()
	if err := o.check.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkerMetrics registers the checker's metrics once per process (the
// tests run the command more than once).
var checkerMetrics = sync.OnceValue(func() *metrics.Checker { return metrics.NewChecker(ctrlmetrics.Registry) })

func runChecker(ctx context.Context, o *checkerOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	scheme, cfg, err := o.setUp()
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("checker")
	if o.migrate {
		// Before the writers' pool: its connections set up a staging
		// table like check_results.
		applied, err := migrateDatabase(ctx, &o.db)
		if err != nil {
			return err
		}
		log.Info("schema migrated", "applied", applied)
	}
	pool, err := o.db.Pool(ctx, true)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)
	if err := st.Maintain(ctx, time.Now(), o.check.Retention); err != nil {
		return fmt.Errorf("creating partitions (has webmon migrate run?): %w", err)
	}
	if err := ensureTopic(o); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	o.check.Store, o.check.Client, o.check.Reader = st, mgr.GetClient(), mgr.GetAPIReader()
	o.check.Recorder = mgr.GetEventRecorder("webmon-checker")
	o.check.Metrics = checkerMetrics()
	o.check.Log = log
	if err := mgr.Add(checker.New(o.check)); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("postgresql", func(req *http.Request) error { return pool.Ping(req.Context()) }); err != nil {
		return err
	}
	log.Info("starting", "topic", o.topic.Name, "group", o.check.Group, "brokers", o.kafka.Brokers, "concurrency", o.check.Concurrency)
	return mgr.Start(ctx)
}

// ensureTopic creates the tasks topic if no scheduler did yet, so that
// checkers can start first.
func ensureTopic(o *checkerOptions) error {
	admin, err := sarama.NewClusterAdmin(o.kafka.Brokers, o.check.Kafka)
	if err != nil {
		return fmt.Errorf("reaching Kafka at %v: %w", o.kafka.Brokers, err)
	}
	defer func() { _ = admin.Close() }()
	return kafka.EnsureTopic(admin, o.topic)
}
