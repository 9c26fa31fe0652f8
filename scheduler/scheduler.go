package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
)

// DefaultMaxInFlight covers a shard's rate over tens of milliseconds of
// acknowledgement time (16,384 tasks: 160,000 a second at 100 ms). A
// deeper queue buys no throughput: it leaves the tasks in it colder in
// the processor's caches and later (measured in docs/benchmarks.md).
const DefaultMaxInFlight = 16_384

// Options configure a shard's scheduler.
type Options struct {
	Shard int32
	// Kafka is the producer configuration (kafka.Config.Producer).
	Kafka   *sarama.Config
	Brokers []string
	Topic   kafka.TopicSpec
	// MaxLateness is how late a regular tick may be handed to Kafka before
	// it is skipped (never more than its interval).
	MaxLateness time.Duration
	// MaxInFlight bounds the tasks handed to the producer and not yet
	// acknowledged: the scheduler's memory when Kafka is slow.
	// DefaultMaxInFlight unless told otherwise.
	MaxInFlight int
	// CatchUpWindow is how far back a new leader looks for ticks its
	// predecessor did not publish.
	CatchUpWindow time.Duration
	Metrics       *metrics.Scheduler
	Clock         clock.WithDelayedExecution
}

// Validate reports options a scheduler cannot run with.
func (o *Options) Validate() error {
	var errs []error
	if o.Shard < 0 {
		errs = append(errs, fmt.Errorf("--shard %d: negative", o.Shard))
	}
	if o.MaxLateness <= 0 {
		errs = append(errs, fmt.Errorf("--max-lateness %s: want a positive duration", o.MaxLateness))
	}
	if o.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-in-flight %d: want at least 1", o.MaxInFlight))
	}
	if o.CatchUpWindow < 0 {
		errs = append(errs, fmt.Errorf("--catch-up-window %s: negative", o.CatchUpWindow))
	}
	if err := o.Topic.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Scheduler publishes a task for every URL of one shard's Websites at its
// interval. Every replica keeps the schedule current from its informer; the
// replica holding the shard's Lease publishes (Start runs only there).
type Scheduler struct {
	opts     Options
	schedule *Schedule
	log      logr.Logger
	// filled reports whether the event handler has handed the schedule
	// every Website the informer listed at start.
	filled func() bool
}

// New returns a scheduler; SetupWithManager wires it in.
func New(opts Options, log logr.Logger) *Scheduler {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Kafka != nil {
		kcfg := *opts.Kafka
		kcfg.Producer.Partitioner = newSitePartitioner
		opts.Kafka = &kcfg
	}
	return &Scheduler{opts: opts, schedule: NewSchedule(), log: log, filled: func() bool { return true }}
}

// SetupWithManager feeds the schedule from the manager's Website informer
// (which the caller restricts to the shard) and adds the publisher, which
// runs on the elected leader only.
func (s *Scheduler) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	informer, err := mgr.GetCache().GetInformer(ctx, &monitoringv1alpha1.Website{})
	if err != nil {
		return err
	}
	registration, err := informer.AddEventHandler(s.EventHandler())
	if err != nil {
		return err
	}
	s.filled = registration.HasSynced
	return mgr.Add(s)
}

// EventHandler keeps the schedule in step with the informer's Websites.
func (s *Scheduler) EventHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.set(obj) },
		UpdateFunc: func(_, obj any) { s.set(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if ws, ok := obj.(*monitoringv1alpha1.Website); ok {
				// Deleted, or relabelled for another shard.
				s.schedule.Depart(ws.UID, s.opts.Clock.Now())
				s.updateGauges()
			}
		},
	}
}

func (s *Scheduler) set(obj any) {
	if ws, ok := obj.(*monitoringv1alpha1.Website); ok {
		s.schedule.Set(ws, s.opts.Clock.Now())
		s.updateGauges()
	}
}

func (s *Scheduler) updateGauges() {
	sites, urls := s.schedule.Size()
	s.opts.Metrics.Websites.Set(float64(sites))
	s.opts.Metrics.URLs.Set(float64(urls))
}

// NeedLeaderElection makes the manager run Start on the leader only.
func (s *Scheduler) NeedLeaderElection() bool { return true }

// Start publishes as the shard's leader until ctx ends, then flushes.
func (s *Scheduler) Start(ctx context.Context) error {
	// The manager starts leaders once the informer has synced, but its
	// handler hands the Websites over asynchronously: a process that wins
	// the Lease at once (the killed leader restarted) would otherwise read
	// where its predecessor stopped for a partial schedule, and start the
	// Websites it learns of later from now, neither publishing nor counting
	// the ticks missed since the predecessor died.
	if !toolscache.WaitForCacheSync(ctx.Done(), s.filled) {
		return nil
	}
	kc, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = kc.Close() }()
	sites, urls := s.schedule.Size()
	s.log.Info("leading the shard: publishing", "topic", s.opts.Topic.Name, "websites", sites, "urls", urls)
	s.opts.Metrics.Leader.Set(1)
	defer s.opts.Metrics.Leader.Set(0)
	return s.lead(ctx, kc)
}

// lead is the leader's work with a connected client: it finds where the
// previous leader stopped, starts the schedule from there, and publishes
// until ctx ends.
func (s *Scheduler) lead(ctx context.Context, kc sarama.Client) error {
	takeover := s.opts.Clock.Now()
	resumeAfter := func(types.UID) time.Time { return takeover }
	if s.opts.CatchUpWindow > 0 {
		points, err := resumePoints(ctx, kc, s.opts.Topic.Name, takeover.Add(-s.opts.CatchUpWindow), s.schedule.Knows)
		if err != nil {
			return fmt.Errorf("finding where the previous leader stopped: %w", err)
		}
		partitionOf, err := partitioner(kc, s.opts.Topic.Name)
		if err != nil {
			return err
		}
		resumeAfter = func(uid types.UID) time.Time {
			if t, ok := points.after(uid, partitionOf(uid)); ok {
				return t
			}
			// Nothing of ours on that partition lately: a first start, or a
			// gap too old to catch up on.
			return takeover
		}
		s.log.Info("resuming after the previous leader", "partitionsWithTasks", len(points.partitions), "websitesWithTasks", len(points.websites))
	}
	producer, err := sarama.NewAsyncProducerFromClient(kc)
	if err != nil {
		return fmt.Errorf("creating the Kafka producer: %w", err)
	}
	s.schedule.Start(resumeAfter)
	defer s.schedule.Stop()
	p := (&publisher{
		schedule:     s.schedule,
		producer:     producer,
		topic:        s.opts.Topic.Name,
		clock:        s.opts.Clock,
		metrics:      s.opts.Metrics,
		log:          s.log,
		maxLateness:  s.opts.MaxLateness,
		maxInFlight:  int64(s.opts.MaxInFlight),
		catchUpUntil: takeover,
	}).init()
	p.run(ctx)
	s.log.Info("stopped publishing; in-flight tasks flushed")
	return nil
}

// connect reaches Kafka and makes sure the topic exists, retrying with
// backoff until it succeeds or ctx ends: a broker outage at start-up is
// waited out, not crashed on.
func (s *Scheduler) connect(ctx context.Context) (sarama.Client, error) {
	backoff := time.Second
	for {
		kc, err := sarama.NewClient(s.opts.Brokers, s.opts.Kafka)
		if err == nil {
			err = ensureTopic(kc, s.opts.Topic)
			if err == nil {
				return kc, nil
			}
			_ = kc.Close()
		}
		s.log.Error(err, "cannot reach Kafka yet; retrying", "brokers", s.opts.Brokers, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func ensureTopic(kc sarama.Client, spec kafka.TopicSpec) error {
	admin, err := sarama.NewClusterAdminFromClient(kc)
	if err != nil {
		return err
	}
	// Closing the admin would close the client it shares.
	return kafka.EnsureTopic(admin, spec)
}

// partitioner maps a Website to the partition of its tasks, as the
// producer's hash partitioner does.
func partitioner(kc sarama.Client, topic string) (func(types.UID) int32, error) {
	partitions, err := kc.Partitions(topic)
	if err != nil {
		return nil, err
	}
	hash := sarama.NewHashPartitioner(topic)
	n := int32(len(partitions))
	return func(uid types.UID) int32 {
		p, _ := hash.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(uid)}, n)
		return p
	}, nil
}

// CacheByObject restricts a manager's cache to one shard's Websites, and
// keeps of each only what the scheduler reads: a shard's million URLs must
// fit in a small pod.
func CacheByObject(shard int32) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&monitoringv1alpha1.Website{}: {
			Label:     labels.SelectorFromSet(labels.Set{monitoringv1alpha1.ShardLabel: strconv.Itoa(int(shard))}),
			Transform: trimWebsite,
		},
	}
}

// trimWebsite drops managed fields, status and every annotation but
// check-now and the shard handoff (kubectl's last-applied copy of the spec
// among them).
func trimWebsite(obj any) (any, error) {
	ws, ok := obj.(*monitoringv1alpha1.Website)
	if !ok {
		return obj, nil
	}
	ws.ManagedFields = nil
	ws.Status = monitoringv1alpha1.WebsiteStatus{}
	var kept map[string]string
	for _, name := range []string{monitoringv1alpha1.CheckNowAnnotation, monitoringv1alpha1.ShardHandoffAnnotation} {
		if v, ok := ws.Annotations[name]; ok {
			if kept == nil {
				kept = map[string]string{}
			}
			kept[name] = v
		}
	}
	ws.Annotations = kept
	return ws, nil
}
