// Package checker consumes check tasks from Kafka, makes the checks, and
// stores every result in PostgreSQL, summarising them into each Website's
// status.
//
// A task travels: consumer (one goroutine per assigned partition) →
// check (at most Concurrency at once: probe, expectations, plugins) →
// batcher (one goroutine: state machines and stateful plugins, in
// scheduled order) → writers (one transaction per batch) → offsets marked
// and status updates scheduled. A message's offset is committed only once
// every result up to it is stored, so a crash redelivers and never loses a
// check; storage is idempotent, so a redelivered check is stored and
// counted once. At most MaxPending results wait for storage: when
// PostgreSQL is slow or down, consumption stops rather than memory grow.
package checker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/store"
)

// Options configure a checker.
type Options struct {
	// Kafka is the consumer configuration (kafka.Config.Consumer).
	Kafka   *sarama.Config
	Brokers []string
	Topic   string
	Group   string

	// Concurrency is how many checks run at once.
	Concurrency int
	// MaxPending bounds the tasks taken from Kafka whose results are not
	// stored yet: the checker's memory when PostgreSQL is slow.
	MaxPending int
	// BatchSize and BatchInterval bound a batch: it is stored once it has
	// BatchSize results or its first result is BatchInterval old.
	BatchSize     int
	BatchInterval time.Duration
	// Writers are the batches stored at once.
	Writers int
	// StatusInterval is the least time between two status writes of a
	// Website, but for state changes, which are written at once.
	StatusInterval time.Duration
	// StatusWorkers write statuses at once.
	StatusWorkers int
	// DrainTimeout is how long a partition given up (a rebalance, or
	// shutdown) waits for its checks to be stored.
	DrainTimeout time.Duration
	// RollupInterval is how often results are counted into the rollups;
	// MaintenanceInterval how often partitions are created and dropped.
	RollupInterval      time.Duration
	MaintenanceInterval time.Duration
	Retention           store.Retention

	Probe   probe.Options
	Plugins plugins.Options

	Store *store.Store
	// Client writes statuses; Reader reads Websites and Secrets, uncached.
	Client   client.Client
	Reader   client.Reader
	Recorder recorder.EventRecorder
	Metrics  *metrics.Checker
	Clock    clock.WithTicker
	Log      logr.Logger
}

// DefaultOptions are a checker's settings unless told otherwise: 256
// checks at once, batches of up to 1,000 results or 200 ms, statuses at
// most every 30 s per Website.
func DefaultOptions() Options {
	return Options{
		Group:               "webmon-checkers",
		Concurrency:         256,
		MaxPending:          8192,
		BatchSize:           1000,
		BatchInterval:       200 * time.Millisecond,
		Writers:             2,
		StatusInterval:      30 * time.Second,
		StatusWorkers:       4,
		DrainTimeout:        15 * time.Second,
		RollupInterval:      5 * time.Second,
		MaintenanceInterval: time.Hour,
		Retention:           store.DefaultRetention,
		Probe:               probe.Options{BodyLimit: 1 << 20},
	}
}

// Validate reports options a checker cannot run with.
func (o *Options) Validate() error {
	var errs []error
	if o.Topic == "" {
		errs = append(errs, errors.New("--kafka-topic: empty"))
	}
	if o.Group == "" {
		errs = append(errs, errors.New("--kafka-group: empty"))
	}
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want at least 1", o.Concurrency))
	}
	if o.MaxPending < o.Concurrency {
		errs = append(errs, fmt.Errorf("--max-pending %d: want at least --concurrency (%d)", o.MaxPending, o.Concurrency))
	}
	if o.BatchSize < 1 || o.BatchSize > 50_000 {
		errs = append(errs, fmt.Errorf("--batch-size %d: want 1 to 50000", o.BatchSize))
	}
	if o.BatchInterval <= 0 {
		errs = append(errs, fmt.Errorf("--batch-interval %s: want a positive duration", o.BatchInterval))
	}
	if o.Writers < 1 {
		errs = append(errs, fmt.Errorf("--writers %d: want at least 1", o.Writers))
	}
	if o.StatusInterval < time.Second {
		errs = append(errs, fmt.Errorf("--status-interval %s: at least 1s (the API server is shared)", o.StatusInterval))
	}
	if o.Probe.BodyLimit < 1 {
		errs = append(errs, fmt.Errorf("--body-limit %d: want at least 1 byte", o.Probe.BodyLimit))
	}
	if err := o.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Checker is one checker process's work.
type Checker struct {
	opts     Options
	log      logr.Logger
	clock    clock.WithTicker
	metrics  *metrics.Checker
	store    *store.Store
	client   client.Client
	reader   client.Reader
	recorder recorder.EventRecorder
	prober   *probe.Prober
	plugins  *plugins.Registry
	secrets  *secretValues
	batcher  *batcher
	status   *statusWriter

	// jobs are the tasks handed to the Concurrency probers; pending
	// holds a place per task taken whose result is not stored.
	jobs         chan job
	pending      chan struct{}
	checks       sync.WaitGroup
	malformedLog rate.Sometimes
}

// New makes a checker; Start runs it.
func New(opts Options) *Checker {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	c := &Checker{
		opts: opts, log: opts.Log, clock: opts.Clock, metrics: opts.Metrics, store: opts.Store,
		client: opts.Client, reader: opts.Reader, recorder: opts.Recorder,
		prober:       probe.NewProber(opts.Probe),
		plugins:      plugins.NewRegistry(opts.Plugins),
		secrets:      newSecretValues(opts.Reader, opts.Clock),
		jobs:         make(chan job),
		pending:      make(chan struct{}, opts.MaxPending),
		malformedLog: rate.Sometimes{Interval: time.Second},
	}
	c.batcher = newBatcher(c)
	c.status = newStatusWriter(c)
	return c
}

// Start consumes and checks until ctx ends, then shuts down in order:
// it stops taking tasks, lets the checks under way finish and be stored
// (up to DrainTimeout), commits their offsets, and returns.
func (c *Checker) Start(ctx context.Context) error {
	group, err := sarama.NewConsumerGroup(c.opts.Brokers, c.opts.Group, c.opts.Kafka)
	if err != nil {
		return fmt.Errorf("joining consumer group %s: %w", c.opts.Group, err)
	}
	// work outlives ctx by the drain: checks finish, batches are stored.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var pipeline, background sync.WaitGroup
	pipeline.Go(func() { c.batcher.run(work) })
	for range c.opts.Writers {
		pipeline.Go(func() { c.batcher.write(work) })
	}
	statusCtx, stopStatus := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStatus()
	background.Go(func() { c.status.run(statusCtx, c.opts.StatusWorkers) })
	background.Go(func() { c.maintain(ctx) })
	background.Go(func() {
		for err := range group.Errors() {
			c.log.Error(err, "consumer group")
		}
	})

	// Long-lived probers rather than a goroutine per check: a new
	// goroutine's stack grows again in every check (5% of the CPU).
	for range c.opts.Concurrency {
		c.checks.Go(func() { c.probe(work) })
	}
	handler := &consumer{c: c, work: work}
	var consumeErr error
	for ctx.Err() == nil {
		// Consume returns at every rebalance; join again.
		if err := group.Consume(ctx, []string{c.opts.Topic}, handler); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			c.log.Error(err, "consuming; joining again in a second")
			select {
			case <-ctx.Done():
			case <-c.clock.After(time.Second):
			}
		}
	}
	c.log.Info("stopping: draining the checks under way")
	// Closing the group waits for each partition to drain (DrainTimeout),
	// then commits the offsets marked.
	if err := group.Close(); err != nil {
		consumeErr = fmt.Errorf("leaving the consumer group: %w", err)
	}
	// No task is dispatched any more; checks still running past the drain
	// are abandoned, unstored and uncommitted, to be redelivered.
	close(c.jobs)
	drained := make(chan struct{})
	go func() { c.checks.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-c.clock.After(c.opts.DrainTimeout):
		stopWork()
		<-drained
	}
	close(c.batcher.in)
	// The batcher and writers stop once the last batch is stored, or the
	// work context ends.
	stopAfter := time.AfterFunc(c.opts.DrainTimeout, stopWork)
	defer stopAfter.Stop()
	pipeline.Wait()
	stopStatus()
	background.Wait()
	c.prober.Close()
	return consumeErr
}

// maintain runs the rollup job every RollupInterval, and creates and
// drops partitions every MaintenanceInterval, until ctx ends. Every
// checker runs it; PostgreSQL advisory locks let one at a time do the work.
func (c *Checker) maintain(ctx context.Context) {
	rollups := c.clock.NewTicker(c.opts.RollupInterval)
	defer rollups.Stop()
	partitions := c.clock.NewTicker(c.opts.MaintenanceInterval)
	defer partitions.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rollups.C():
			start := c.clock.Now()
			if _, err := c.store.Rollup(ctx); err != nil && ctx.Err() == nil {
				c.log.Error(err, "rollup failed; retrying at the next interval")
				continue
			}
			c.metrics.RollupTime.Observe(c.clock.Since(start).Seconds())
		case <-partitions.C():
			if err := c.store.Maintain(ctx, c.clock.Now(), c.opts.Retention); err != nil && ctx.Err() == nil {
				c.log.Error(err, "partition maintenance failed; retrying at the next interval")
			}
		}
	}
}
