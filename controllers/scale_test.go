package controllers

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
// one has its shard label and Scheduled=True. It logs key=value lines for
// docs/benchmarks.md.
func TestOperatorAtScale(t *testing.T) {
	n := *scaleWebsites
	ns := "scale"
	ensureNamespace(t, ns)
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			ws := newWebsite(ns, fmt.Sprintf("site-%05d", i))
			return k8sClient.Create(context.Background(), ws)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)

	cfg := rest.CopyConfig(testConfig)
	cfg.QPS, cfg.Burst = DefaultKubeAPIQPS, DefaultKubeAPIBurst
	start = time.Now()
	startOperatorWithConfig(t, cfg, ns, ShardPolicy{Fixed: 4}, func(_ *ShardReconciler, w *WebsiteReconciler) {
		w.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	})
	// Count from a watch, not by listing 10k Websites from the apiserver
	// over and over: that would be work the measured system pays for.
	watched := watchWebsites(t, ns)
	// Play the Deployment controller: each scheduler becomes available as
	// soon as it exists.
	var marked sync.Map
	var done atomic.Int64
	eventuallyEvery(t, 100*time.Millisecond, 5**scaleGoal, fmt.Sprintf("%d Websites labelled and Scheduled", n), func() (bool, error) {
		for shard := range int32(4) {
			name := SchedulerDeploymentName(shard)
			if _, ok := marked.Load(name); !ok {
				markAvailable(t, ns, name)
				marked.Store(name, true)
			}
		}
		var list monitoringv1alpha1.WebsiteList
		if err := watched.List(context.Background(), &list, client.UnsafeDisableDeepCopy); err != nil {
			return false, err
		}
		count, labelled := int64(0), 0
		var stuck string
		for i := range list.Items {
			ws := &list.Items[i]
			if ws.Labels[monitoringv1alpha1.ShardLabel] != "" {
				labelled++
			}
			if ws.Labels[monitoringv1alpha1.ShardLabel] != "" && meta.IsStatusConditionTrue(ws.Status.Conditions, monitoringv1alpha1.ConditionScheduled) {
				count++
			} else if stuck == "" {
				stuck = fmt.Sprintf("%s labels=%v conditions=%+v", ws.Name, ws.Labels, ws.Status.Conditions)
			}
		}
		done.Store(count)
		if count != int64(n) {
			return false, fmt.Errorf("%d listed, %d labelled, %d scheduled; first not done: %s", len(list.Items), labelled, count, stuck)
		}
		return true, nil
	})
	elapsed := time.Since(start)
	t.Logf("operator_websites=%d", done.Load())
	t.Logf("operator_import_s=%.1f", created.Seconds())
	t.Logf("operator_scheduled_s=%.1f", elapsed.Seconds())
	t.Logf("operator_websites_per_s=%.0f", float64(n)/elapsed.Seconds())
	if elapsed > *scaleGoal {
		t.Errorf("took %s to label and schedule %d Websites, over the %s goal", elapsed.Round(time.Second), n, *scaleGoal)
	}
}

// watchWebsites is an informer-backed reader of the Websites in ns.
func watchWebsites(t testing.TB, ns string) client.Reader {
	t.Helper()
	c, err := cache.New(testConfig, cache.Options{Scheme: testScheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
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
	return c
}
