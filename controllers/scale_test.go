package controllers

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// `make test` runs the scale test small, under the race detector, as a
// check that a mass import converges; `make bench` runs it at 10,000
// Websites without it, to measure against the goal.
var (
	scaleWebsites = flag.Int("scale.websites", 1000, "Websites TestOperatorAtScale imports")
	scaleGoal     = flag.Duration("scale.goal", 60*time.Second, "time budget to label and schedule them all")
)

// TestOperatorAtScale imports -scale.websites Websites, then starts the
// operator with its default API rates and measures how long until every
// one has its shard label and Scheduled=True, and the heap it took. It
// logs key=value lines for docs/benchmarks.md.
func TestOperatorAtScale(t *testing.T) {
	n := *scaleWebsites
	ns := "scale"
	ensureNamespace(t, ns)
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			ws := newWebsite(ns, fmt.Sprintf("site-%06d", i))
			return k8sClient.Create(context.Background(), ws)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	// The tally's own informer starts first, so that the heap sampled
	// from the operator's start on is the operator's (the tally keeps a
	// few bytes a Website).
	scheduled := tallyScheduled(t, ns)
	heapBefore := heapInUse()

	cfg := rest.CopyConfig(testConfig)
	cfg.QPS, cfg.Burst = DefaultKubeAPIQPS, DefaultKubeAPIBurst
	start = time.Now()
	startOperatorWithConfig(t, cfg, ns, ShardPolicy{Fixed: 4}, func(_ *ShardReconciler, w *WebsiteReconciler) {
		w.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	})
	// Play the Deployment controller: each scheduler becomes available as
	// soon as it exists.
	for shard := range int32(4) {
		markAvailable(t, ns, SchedulerDeploymentName(shard))
	}
	var peakHeap uint64
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	eventuallyEvery(t, 100*time.Millisecond, 5**scaleGoal, fmt.Sprintf("%d Websites labelled and Scheduled", n), func() (bool, error) {
		peakHeap = max(peakHeap, heapInUseNoGC())
		count := scheduled.count()
		select {
		case <-progress.C:
			t.Logf("after %s: %d of %d Websites scheduled", time.Since(start).Round(time.Second), count, n)
		default:
		}
		if count != n {
			return false, fmt.Errorf("%d of %d scheduled; first not done: %s", count, n, scheduled.firstPending())
		}
		return true, nil
	})
	elapsed := time.Since(start)
	heapAfter := heapInUse()
	t.Logf("operator_websites=%d", n)
	t.Logf("operator_import_s=%.1f", created.Seconds())
	t.Logf("operator_scheduled_s=%.1f", elapsed.Seconds())
	t.Logf("operator_websites_per_s=%.0f", float64(n)/elapsed.Seconds())
	t.Logf("operator_heap_mib=%.0f", mib(heapAfter-min(heapBefore, heapAfter)))
	t.Logf("operator_peak_heap_mib=%.0f", mib(peakHeap-min(heapBefore, peakHeap)))
	if elapsed > *scaleGoal {
		t.Errorf("took %s to label and schedule %d Websites, over the %s goal", elapsed.Round(time.Second), n, *scaleGoal)
	}
}

// scheduledTally follows the Websites of a namespace through a watch and
// counts those labelled with a shard and Scheduled=True. It keeps one bit
// a Website, so that it neither lists 100,000 objects a poll nor holds a
// second copy of them beside the operator's cache. The test deletes none,
// so deletions are not followed.
type scheduledTally struct {
	mu sync.Mutex
	// seen are the Websites observed; pending those of them not scheduled.
	seen    map[types.UID]struct{}
	pending map[types.UID]string
}

func tallyScheduled(t testing.TB, ns string) *scheduledTally {
	t.Helper()
	tally := &scheduledTally{seen: map[types.UID]struct{}{}, pending: map[types.UID]string{}}
	// The informer's store holds only the metadata it needs to key objects.
	trim := func(obj any) (any, error) {
		ws, ok := obj.(*monitoringv1alpha1.Website)
		if !ok {
			return obj, nil
		}
		tally.observe(ws)
		return &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{
			Namespace: ws.Namespace, Name: ws.Name, UID: ws.UID, ResourceVersion: ws.ResourceVersion}}, nil
	}
	c, err := cache.New(testConfig, cache.Options{Scheme: testScheme, DefaultNamespaces: map[string]cache.Config{ns: {}},
		DefaultTransform: trim})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInformer(context.Background(), &monitoringv1alpha1.Website{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the test's Website informer did not sync")
	}
	return tally
}

func (s *scheduledTally) observe(ws *monitoringv1alpha1.Website) {
	ok := ws.Labels[monitoringv1alpha1.ShardLabel] != "" && meta.IsStatusConditionTrue(ws.Status.Conditions, monitoringv1alpha1.ConditionScheduled)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[ws.UID] = struct{}{}
	if ok {
		delete(s.pending, ws.UID)
	} else {
		s.pending[ws.UID] = ws.Name
	}
}

func (s *scheduledTally) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen) - len(s.pending)
}

func (s *scheduledTally) firstPending() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, what := range s.pending {
		return what
	}
	return "none"
}

func heapInUse() uint64 {
	runtime.GC()
	return heapInUseNoGC()
}

func heapInUseNoGC() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
