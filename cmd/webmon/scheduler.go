package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/scheduler"
)

type schedulerOptions struct {
	shard, shards int32
	namespace     string
	kafka         kafka.Config
	topic         kafka.TopicSpec
	sched         scheduler.Options

	leaseDuration, renewDeadline, retryPeriod time.Duration
	managerOptions
}

func newSchedulerCommand() *cobra.Command {
	o := &schedulerOptions{
		shard:         -1,
		namespace:     os.Getenv("POD_NAMESPACE"),
		kafka:         kafka.Config{ClientID: "webmon-scheduler", Version: kafka.DefaultVersion},
		topic:         kafka.TopicSpec{Name: kafka.DefaultTopic, Partitions: 32, ReplicationFactor: -1, Retention: time.Hour},
		sched:         scheduler.Options{MaxLateness: 5 * time.Second, MaxInFlight: scheduler.DefaultMaxInFlight, CatchUpWindow: 30 * time.Second},
		leaseDuration: 15 * time.Second,
		renewDeadline: 10 * time.Second,
		retryPeriod:   2 * time.Second,
		managerOptions: managerOptions{
			leaderElect:  true,
			metricsAddr:  defaultMetricsAddr,
			probeAddr:    defaultProbeAddr,
			kubeAPIQPS:   20,
			kubeAPIBurst: 40,
		},
	}
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Publish a check task to Kafka for every URL of one shard at its interval",
		Long: `The scheduler of one shard watches the Websites labelled with its shard and
publishes a check task to Kafka for each of their URLs at its interval, each
URL at its own place inside the interval. With several replicas, the one
holding the shard's Lease publishes and the others stand by with a warm
schedule; a new leader first reads where its predecessor stopped, so that a
failover neither repeats nor (within --catch-up-window) loses a tick.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runScheduler(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	fs.Int32Var(&o.shard, "shard", o.shard, "the shard this scheduler publishes for (0-based)")
	fs.Int32Var(&o.shards, "shards", o.shards, "how many shards there are, for checking --shard")
	fs.StringVar(&o.namespace, "namespace", o.namespace, "namespace of the shard's leader election Lease (default $POD_NAMESPACE)")
	o.kafka.AddFlags(fs)
	o.topic.AddFlags(fs)
	fs.DurationVar(&o.sched.MaxLateness, "max-lateness", o.sched.MaxLateness,
		"how late a tick may be handed to Kafka; later ones are skipped and counted (at most the URL's interval)")
	fs.IntVar(&o.sched.MaxInFlight, "max-in-flight", o.sched.MaxInFlight,
		"tasks handed to Kafka and not yet acknowledged, at most: bounds memory when Kafka is slow")
	fs.DurationVar(&o.sched.CatchUpWindow, "catch-up-window", o.sched.CatchUpWindow,
		"how far back a new leader publishes the ticks its predecessor missed (each until its deadline); 0 disables it")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", o.leaseDuration, "how long a standby waits for a silent leader: the failover time")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", o.renewDeadline, "how long the leader tries to renew before it steps down")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", o.retryPeriod, "how often the replicas try to take or renew the Lease")
	o.addFlags(fs, "elect a leader among the shard's replicas; only it publishes")
	return cmd
}

func (o *schedulerOptions) validate() error {
	var errs []error
	if o.shard < 0 {
		errs = append(errs, errors.New("--shard: none given (or $WEBMON_SHARD)"))
	}
	if o.shards > 0 && o.shard >= o.shards {
		errs = append(errs, fmt.Errorf("--shard %d: not below --shards %d", o.shard, o.shards))
	}
	if o.leaderElect && o.namespace == "" {
		errs = append(errs, errors.New("--namespace: none given and $POD_NAMESPACE is empty; the Lease lives there"))
	}
	if o.leaderElect && (o.leaseDuration <= o.renewDeadline || o.renewDeadline <= o.retryPeriod || o.retryPeriod <= 0) {
		errs = append(errs, fmt.Errorf("leader election: want lease duration (%s) > renew deadline (%s) > retry period (%s) > 0",
			o.leaseDuration, o.renewDeadline, o.retryPeriod))
	}
	producer, err := o.kafka.Producer()
	if err != nil {
		errs = append(errs, err)
	}
	o.sched.Shard = o.shard
	o.sched.Kafka = producer
	o.sched.Brokers = o.kafka.Brokers
	o.sched.Topic = o.topic
	if err := o.sched.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// schedulerMetrics registers the scheduler's metrics once per process (the
// tests run the command more than once).
var schedulerMetrics = sync.OnceValue(func() *metrics.Scheduler { return metrics.NewScheduler(ctrlmetrics.Registry) })

func runScheduler(ctx context.Context, o *schedulerOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	scheme, cfg, err := o.setUp()
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("scheduler").WithValues("shard", o.shard)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "webmon-scheduler-" + strconv.Itoa(int(o.shard)),
		LeaderElectionNamespace:       o.namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		Cache:                         cache.Options{ByObject: scheduler.CacheByObject(o.shard)},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	o.sched.Metrics = schedulerMetrics()
	if err := scheduler.New(o.sched, log).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the scheduler: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// A standby is ready once its schedule is warm.
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("the Website cache has not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	log.Info("starting", "topic", o.topic.Name, "brokers", o.kafka.Brokers, "leaderElection", o.leaderElect)
	return mgr.Start(ctx)
}
