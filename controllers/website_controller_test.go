package controllers

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

func newWebsite(ns, name string, urls ...string) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, u := range urls {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(u))
	}
	if len(urls) == 0 {
		ws.Spec.URLs = []monitoringv1alpha1.WebsiteURL{monitoringv1alpha1.WebsiteURL("https://" + name + ".example.com/")}
	}
	return ws
}

func createWebsite(t testing.TB, ws *monitoringv1alpha1.Website) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
}

func getWebsite(t testing.TB, ws *monitoringv1alpha1.Website) *monitoringv1alpha1.Website {
	t.Helper()
	got := &monitoringv1alpha1.Website{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(ws), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func conditionOf(ws *monitoringv1alpha1.Website, typ string) *metav1.Condition {
	return meta.FindStatusCondition(ws.Status.Conditions, typ)
}

// eventReasons lists the reasons of the Events about a Website.
func eventReasons(t testing.TB, ws *monitoringv1alpha1.Website) map[string]string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace(ws.Namespace)); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, e := range list.Items {
		if e.Regarding.Name == ws.Name && e.Regarding.Kind == "Website" {
			reasons[e.Reason] = e.Type + ": " + e.Note
		}
	}
	return reasons
}

func TestWebsiteIsAssignedAShardAndScheduled(t *testing.T) {
	ns := "assign"
	startOperator(t, ns, ShardPolicy{Fixed: 3})
	ws := newWebsite(ns, "shop", "https://shop.example.com/", "https://shop.example.com/health")
	createWebsite(t, ws)

	var got *monitoringv1alpha1.Website
	eventually(t, 10*time.Second, "the shard label and a Scheduled condition", func() (bool, error) {
		got = getWebsite(t, ws)
		return got.Labels[monitoringv1alpha1.ShardLabel] != "" && conditionOf(got, monitoringv1alpha1.ConditionScheduled) != nil, nil
	})
	want := ShardFor(got.UID, 3)
	if label := got.Labels[monitoringv1alpha1.ShardLabel]; label != strconv.Itoa(int(want)) {
		t.Errorf("shard label %q, want %d", label, want)
	}
	if got.Status.Shard == nil || *got.Status.Shard != want {
		t.Errorf("status.shard %v, want %d", got.Status.Shard, want)
	}
	if got.Status.State != monitoringv1alpha1.WebsiteStatePending || got.Status.URLCount != 2 || got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status state=%q urlCount=%d observedGeneration=%d, want Pending, 2, %d",
			got.Status.State, got.Status.URLCount, got.Status.ObservedGeneration, got.Generation)
	}
	if c := conditionOf(got, monitoringv1alpha1.ConditionSpecValid); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != got.Generation {
		t.Errorf("SpecValid = %+v, want True at generation %d", c, got.Generation)
	}
	if c := conditionOf(got, monitoringv1alpha1.ConditionScheduled); c.Status != metav1.ConditionFalse || c.Reason != monitoringv1alpha1.ReasonSchedulerUnavailable {
		t.Errorf("Scheduled before the scheduler is available = %+v, want False/%s", c, monitoringv1alpha1.ReasonSchedulerUnavailable)
	}

	markAvailable(t, ns, SchedulerDeploymentName(want))
	eventually(t, 10*time.Second, "Scheduled=True", func() (bool, error) {
		got = getWebsite(t, ws)
		return meta.IsStatusConditionTrue(got.Status.Conditions, monitoringv1alpha1.ConditionScheduled), nil
	})
	if c := conditionOf(got, monitoringv1alpha1.ConditionScheduled); !strings.Contains(c.Message, SchedulerDeploymentName(want)) {
		t.Errorf("Scheduled message %q does not name the scheduler Deployment", c.Message)
	}
	eventually(t, 10*time.Second, "a Scheduled Event", func() (bool, error) {
		return strings.HasPrefix(eventReasons(t, ws)[eventScheduled], "Normal: checks are scheduled by shard"), nil
	})
}

func TestInvalidSpecIsReported(t *testing.T) {
	ns := "invalid-spec"
	startOperator(t, ns, ShardPolicy{Fixed: 1})
	ws := newWebsite(ns, "shop")
	ws.Spec.Expect.BodyRegex = "(unclosed"
	ws.Spec.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "tls-expiry"}, {Name: "screenshot"}}
	createWebsite(t, ws)

	var c *metav1.Condition
	eventually(t, 10*time.Second, "SpecValid=False", func() (bool, error) {
		c = conditionOf(getWebsite(t, ws), monitoringv1alpha1.ConditionSpecValid)
		return c != nil && c.Status == metav1.ConditionFalse, nil
	})
	for _, want := range []string{"expect.bodyRegex", "missing closing )", `plugin "screenshot" is unknown`, "tls-expiry, html-stats"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("SpecValid message %q does not mention %q", c.Message, want)
		}
	}
	eventually(t, 10*time.Second, "an InvalidSpec Warning Event", func() (bool, error) {
		return strings.HasPrefix(eventReasons(t, ws)[eventInvalidSpec], "Warning: "), nil
	})

	// Fixing the spec clears the condition, at the new generation.
	fixed := getWebsite(t, ws)
	fixed.Spec.Expect.BodyRegex = "(closed)"
	fixed.Spec.Plugins = fixed.Spec.Plugins[:1]
	if err := k8sClient.Update(context.Background(), fixed); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "SpecValid=True at the new generation", func() (bool, error) {
		got := getWebsite(t, ws)
		c := conditionOf(got, monitoringv1alpha1.ConditionSpecValid)
		return c.Status == metav1.ConditionTrue && c.ObservedGeneration == got.Generation && got.Status.ObservedGeneration == got.Generation, nil
	})
}

func TestSuspendedWebsite(t *testing.T) {
	ns := "suspend"
	startOperator(t, ns, ShardPolicy{Fixed: 1})
	markAvailable(t, ns, SchedulerDeploymentName(0))
	ws := newWebsite(ns, "paused")
	ws.Spec.Suspend = true
	createWebsite(t, ws)
	eventually(t, 10*time.Second, "Suspended state", func() (bool, error) {
		got := getWebsite(t, ws)
		c := conditionOf(got, monitoringv1alpha1.ConditionScheduled)
		return got.Status.State == monitoringv1alpha1.WebsiteStateSuspended && c != nil && c.Reason == monitoringv1alpha1.ReasonSuspended, nil
	})
	got := getWebsite(t, ws)
	got.Spec.Suspend = false
	if err := k8sClient.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Pending and Scheduled after resuming", func() (bool, error) {
		got := getWebsite(t, ws)
		return got.Status.State == monitoringv1alpha1.WebsiteStatePending &&
			meta.IsStatusConditionTrue(got.Status.Conditions, monitoringv1alpha1.ConditionScheduled), nil
	})
}

// TestOperatorLeavesCheckerStatusAlone checks that the operator's status
// writes keep what the checkers wrote.
func TestOperatorLeavesCheckerStatusAlone(t *testing.T) {
	ns := "checker-status"
	startOperator(t, ns, ShardPolicy{Fixed: 1})
	ws := newWebsite(ns, "shop")
	createWebsite(t, ws)
	eventually(t, 10*time.Second, "the operator's first status", func() (bool, error) {
		return getWebsite(t, ws).Status.Shard != nil, nil
	})
	// A checker's summary.
	got := getWebsite(t, ws)
	got.Status.State = monitoringv1alpha1.WebsiteStateUp
	got.Status.Latency = &monitoringv1alpha1.LatencySummary{Last: metav1.Duration{Duration: 120 * time.Millisecond}}
	meta.SetStatusCondition(&got.Status.Conditions, metav1.Condition{Type: monitoringv1alpha1.ConditionAvailable,
		Status: metav1.ConditionTrue, Reason: monitoringv1alpha1.ReasonAllURLsUp, ObservedGeneration: got.Generation})
	if err := k8sClient.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	// The scheduler becomes available: the operator writes Scheduled=True.
	markAvailable(t, ns, SchedulerDeploymentName(0))
	eventually(t, 10*time.Second, "Scheduled=True", func() (bool, error) {
		return meta.IsStatusConditionTrue(getWebsite(t, ws).Status.Conditions, monitoringv1alpha1.ConditionScheduled), nil
	})
	final := getWebsite(t, ws)
	if final.Status.State != monitoringv1alpha1.WebsiteStateUp || final.Status.Latency == nil ||
		!meta.IsStatusConditionTrue(final.Status.Conditions, monitoringv1alpha1.ConditionAvailable) {
		t.Errorf("the operator's write lost the checker's status: %+v", final.Status)
	}
}

// TestStatusIsNotRewrittenWhenUnchanged counts status writes: reconciling a
// Website whose status is current writes nothing.
func TestStatusIsNotRewrittenWhenUnchanged(t *testing.T) {
	ns := "no-rewrite"
	op := startOperator(t, ns, ShardPolicy{Fixed: 1})
	markAvailable(t, ns, SchedulerDeploymentName(0))
	ws := newWebsite(ns, "steady")
	createWebsite(t, ws)
	eventually(t, 10*time.Second, "Scheduled=True", func() (bool, error) {
		return meta.IsStatusConditionTrue(getWebsite(t, ws).Status.Conditions, monitoringv1alpha1.ConditionScheduled), nil
	})
	time.Sleep(500 * time.Millisecond) // let reconciles already queued finish
	settled := op.statusUpdates.Load()
	// Wake the reconciler without changing anything it computes: the
	// scheduler Deployment's status is written again (new timestamps).
	markAvailable(t, ns, SchedulerDeploymentName(0))
	markAvailable(t, ns, SchedulerDeploymentName(0))
	time.Sleep(2 * time.Second)
	if extra := op.statusUpdates.Load() - settled; extra != 0 {
		t.Errorf("%d status writes with nothing changed", extra)
	}
}

// TestStuckPlanningIsReported: when the shards cannot be planned (here the
// apiserver refuses the scheduler Deployments), Websites say so after a
// grace period, instead of staying silent.
func TestStuckPlanningIsReported(t *testing.T) {
	ns := "stuck-plan"
	clk := &offsetClock{}
	startOperator(t, ns, ShardPolicy{Fixed: 1}, func(s *ShardReconciler, w *WebsiteReconciler) {
		s.Scheduler.ImagePullPolicy = "Sometimes" // invalid: every create fails
		w.Clock = clk
	})
	ws := newWebsite(ns, "waiting")
	createWebsite(t, ws)
	time.Sleep(time.Second)
	if c := conditionOf(getWebsite(t, ws), monitoringv1alpha1.ConditionScheduled); c != nil {
		t.Fatalf("within the grace period, Scheduled = %+v; want no status written yet", c)
	}
	clk.offset.Store(int64(awaitingShardGrace + time.Second))
	touched := getWebsite(t, ws)
	touched.Spec.Interval = metav1.Duration{Duration: 2 * time.Minute}
	if err := k8sClient.Update(context.Background(), touched); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Scheduled=False/AwaitingShard and SpecValid", func() (bool, error) {
		got := getWebsite(t, ws)
		c := conditionOf(got, monitoringv1alpha1.ConditionScheduled)
		return c != nil && c.Reason == monitoringv1alpha1.ReasonAwaitingShard &&
			meta.IsStatusConditionTrue(got.Status.Conditions, monitoringv1alpha1.ConditionSpecValid), nil
	})
}

// offsetClock is the real clock moved forward by offset.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestOperatorSeesOnlyItsNamespace guards the suite's isolation.
func TestOperatorSeesOnlyItsNamespace(t *testing.T) {
	op := startOperator(t, "isolation-a", ShardPolicy{Fixed: 1})
	other := newWebsite("isolation-b", "elsewhere")
	ensureNamespace(t, "isolation-b")
	createWebsite(t, other)
	time.Sleep(time.Second)
	if l := getWebsite(t, other).Labels[monitoringv1alpha1.ShardLabel]; l != "" {
		t.Fatalf("operator of %s labelled a Website in isolation-b (shard %s)", op.namespace, l)
	}
}
