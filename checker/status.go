package checker

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// statusWriter summarises the state of the Websites this checker owns into
// their status: at once when a URL changes state, otherwise at most once
// per StatusInterval per Website, however many checks it has. A workqueue
// keyed by UID coalesces the updates that arrive meanwhile; the client's
// rate limit bounds the writes per second of the whole checker.
type statusWriter struct {
	c     *Checker
	queue workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	names     map[string]types.NamespacedName
	lastWrite map[string]time.Time
	// lastStored is when results of the Website were last stored.
	lastStored map[string]time.Time
	// written is each Website as the API server returned it after this
	// checker's last write (without managed fields), so that the next
	// write needs no read: its patch carries that resourceVersion, and a
	// Website anyone else changed since is a conflict, read and retried.
	// A read cost the API server a quarter of what a write does.
	written map[string]*monitoringv1alpha1.Website
}

// The results of a status update, as webmon_checker_status_writes_total
// counts them.
const (
	statusWritten   = "written"
	statusUnchanged = "unchanged"
	statusConflict  = "conflict"
	statusGone      = "gone"
	statusError     = "error"
)

func newStatusWriter(c *Checker) *statusWriter {
	return &statusWriter{
		c: c,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "webmon-checker-status", Clock: c.clock}),
		names:      map[string]types.NamespacedName{},
		lastWrite:  map[string]time.Time{},
		lastStored: map[string]time.Time{},
		written:    map[string]*monitoringv1alpha1.Website{},
	}
}

// touched schedules a status update for a Website whose state moved: now
// on a transition, else once StatusInterval has passed since its last
// write.
func (s *statusWriter) touched(uid string, name types.NamespacedName, transition bool) {
	s.mu.Lock()
	s.names[uid] = name
	last, written := s.lastWrite[uid]
	s.lastStored[uid] = s.c.clock.Now()
	s.mu.Unlock()
	delay := time.Duration(0)
	if written && !transition {
		delay = s.c.opts.StatusInterval - s.c.clock.Since(last)
	}
	s.queue.AddAfter(uid, delay)
}

// run writes statuses with workers until ctx ends.
func (s *statusWriter) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
}

func (s *statusWriter) next(ctx context.Context) bool {
	uid, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(uid)
	result, err := s.write(ctx, uid)
	s.c.metrics.StatusWrites.WithLabelValues(result).Inc()
	switch {
	case err != nil && ctx.Err() == nil:
		s.c.log.V(1).Info("status write failed; retrying", "uid", uid, "result", result, "error", err.Error())
		s.queue.AddRateLimited(uid)
	default:
		s.queue.Forget(uid)
	}
	return true
}

// write summarises one Website into its status. It starts from the
// Website as this checker last wrote it, or reads it (an uncached read):
// for its spec's URLs, to skip a suspended or deleted one, and so that a
// Website recreated under the same name is not written with its
// predecessor's state. The patch carries the resourceVersion it started
// from, so a concurrent change by anyone else is a conflict, read again
// and retried, rather than lost or written over.
func (s *statusWriter) write(ctx context.Context, uid string) (string, error) {
	s.mu.Lock()
	name, ok := s.names[uid]
	var ws *monitoringv1alpha1.Website
	// A Website with no recent results may be gone: this write, its last
	// until new results come, reads it, so that a deleted one's state is
	// dropped rather than kept until a rebalance.
	if s.c.clock.Since(s.lastStored[uid]) < 2*s.c.opts.RollupInterval {
		ws = s.written[uid].DeepCopy()
	}
	s.mu.Unlock()
	state := s.c.batcher.snapshot(uid)
	if !ok || state == nil {
		s.forget(uid)
		return statusGone, nil
	}
	if ws == nil {
		ws = &monitoringv1alpha1.Website{}
		if err := s.c.reader.Get(ctx, name, ws); err != nil {
			if apierrors.IsNotFound(err) {
				s.forget(uid)
				s.c.batcher.forget(uid)
				return statusGone, nil
			}
			return statusError, err
		}
	}
	if string(ws.UID) != uid {
		s.forget(uid)
		s.c.batcher.forget(uid)
		return statusGone, nil
	}
	if ws.Spec.Suspend || ws.DeletionTimestamp != nil {
		return statusUnchanged, nil
	}
	now := s.c.clock.Now()
	summary, err := s.c.store.WebsiteSummary(ctx, uid, now)
	if err != nil {
		return statusError, err
	}
	before := ws.DeepCopy()
	summarize(ws, state, summary, metav1.NewTime(now.Truncate(time.Second)))
	s.mu.Lock()
	s.lastWrite[uid] = now
	// Results stored just before now may not be in the rollups yet (the
	// rollup job runs every RollupInterval): write once more after
	// StatusInterval, so that the last checks of a burst are not left out
	// of uptime until the next check, which may be an hour away.
	if now.Sub(s.lastStored[uid]) < 2*s.c.opts.RollupInterval {
		s.queue.AddAfter(uid, s.c.opts.StatusInterval)
	}
	s.mu.Unlock()
	if equality.Semantic.DeepEqual(before.Status, ws.Status) {
		return statusUnchanged, nil
	}
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := s.c.client.Status().Patch(ctx, ws, patch); err != nil {
		s.mu.Lock()
		delete(s.written, uid) // read it afresh
		s.mu.Unlock()
		switch {
		case apierrors.IsConflict(err):
			return statusConflict, err
		case apierrors.IsNotFound(err):
			s.forget(uid)
			s.c.batcher.forget(uid)
			return statusGone, nil
		}
		return statusError, err
	}
	ws.ManagedFields = nil
	s.mu.Lock()
	if _, owned := s.names[uid]; owned {
		s.written[uid] = ws
	}
	s.mu.Unlock()
	return statusWritten, nil
}

func (s *statusWriter) forget(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, uid)
	delete(s.lastWrite, uid)
	delete(s.lastStored, uid)
	delete(s.written, uid)
}
