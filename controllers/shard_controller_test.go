package controllers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/metrics"
)

func schedulerDeployments(t testing.TB, ns string) map[string]appsv1.Deployment {
	t.Helper()
	var list appsv1.DeploymentList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace(ns),
		client.MatchingLabels{ComponentLabel: componentScheduler}); err != nil {
		t.Fatal(err)
	}
	byName := map[string]appsv1.Deployment{}
	for _, d := range list.Items {
		byName[d.Name] = d
	}
	return byName
}

func names(m map[string]appsv1.Deployment) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestSchedulerDeploymentsFollowTheShardCount(t *testing.T) {
	ns := "deployments"
	ensureNamespace(t, ns)
	// The operator's own Deployment owns the schedulers.
	owner := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webmon-operator"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "op"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "op"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "op", Image: "webmon:test"}}}},
		},
	}
	if err := k8sClient.Create(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	ownerRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: owner.Name, UID: owner.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	withOwner := func(s *ShardReconciler, _ *WebsiteReconciler) { s.Scheduler.Owner = &ownerRef }

	op := startOperator(t, ns, ShardPolicy{Fixed: 3}, withOwner)
	want := []string{"webmon-scheduler-0", "webmon-scheduler-1", "webmon-scheduler-2"}
	eventually(t, 10*time.Second, "3 scheduler Deployments", func() (bool, error) {
		return cmp.Equal(want, names(schedulerDeployments(t, ns))), nil
	})
	deps := schedulerDeployments(t, ns)
	d := deps["webmon-scheduler-1"]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	for _, arg := range []string{"scheduler", "--shard=1", "--shards=3", "--leader-elect=true", "--kafka-brokers=kafka:9092", "--kafka-topic=webmon-tasks"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %q", c.Args, arg)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["WEBMON_SHARD"] != "1" || env["WEBMON_SHARDS"] != "3" {
		t.Errorf("env WEBMON_SHARD=%q WEBMON_SHARDS=%q, want 1 and 3", env["WEBMON_SHARD"], env["WEBMON_SHARDS"])
	}
	if d.Labels[monitoringv1alpha1.ShardLabel] != "1" || d.Spec.Selector.MatchLabels[monitoringv1alpha1.ShardLabel] != "1" {
		t.Errorf("labels %v / selector %v lack shard 1", d.Labels, d.Spec.Selector.MatchLabels)
	}
	if len(d.OwnerReferences) != 1 || d.OwnerReferences[0].UID != owner.UID {
		t.Errorf("owner references %v, want the operator's Deployment", d.OwnerReferences)
	}
	sc := c.SecurityContext
	if pod.SecurityContext == nil || !ptr.Deref(pod.SecurityContext.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		ptr.Deref(sc.AllowPrivilegeEscalation, true) || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
		pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context is not restricted: pod %+v container %+v", pod.SecurityContext, sc)
	}

	// Unchanged inputs: planning again (a new Website wakes the planner,
	// after planDelay) writes nothing.
	before := op.deploymentUpdates.Load()
	createWebsite(t, newWebsite(ns, "wake-up"))
	eventually(t, 10*time.Second, "the new Website to be labelled", func() (bool, error) {
		return getWebsite(t, newWebsite(ns, "wake-up")).Labels[monitoringv1alpha1.ShardLabel] != "", nil
	})
	time.Sleep(2 * planDelay)
	if extra := op.deploymentUpdates.Load() - before; extra != 0 {
		t.Errorf("%d Deployment updates although their inputs did not change", extra)
	}

	// Changed inputs (an operator restarted with a new image) update them.
	op.Stop()
	op = startOperator(t, ns, ShardPolicy{Fixed: 3}, withOwner, func(s *ShardReconciler, _ *WebsiteReconciler) { s.Scheduler.Image = "webmon:v2" })
	eventually(t, 10*time.Second, "every scheduler on the new image", func() (bool, error) {
		for _, d := range schedulerDeployments(t, ns) {
			if d.Spec.Template.Spec.Containers[0].Image != "webmon:v2" {
				return false, nil
			}
		}
		return true, nil
	})
	if got := names(schedulerDeployments(t, ns)); !cmp.Equal(want, got) {
		t.Errorf("after the restart: %v, want %v (no duplicates, none lost)", got, want)
	}
	if got := op.deploymentUpdates.Load(); got != 3 {
		t.Errorf("%d Deployment updates for a new image, want 3", got)
	}
}

// TestAutomaticShardsScaleUpAndDrainOnScaleDown plans shards from load:
// growing adds Deployments; shrinking moves the Websites first, then
// deletes the Deployments left empty.
func TestAutomaticShardsScaleUpAndDrainOnScaleDown(t *testing.T) {
	ns := "autoscale"
	// Each Website is 1 URL every 5s: 0.2 checks/s; a shard takes 1 check/s.
	startOperator(t, ns, ShardPolicy{ChecksPerShard: 1, Min: 1, Max: 10})
	var sites []*monitoringv1alpha1.Website
	for i := range 15 {
		ws := newWebsite(ns, fmt.Sprintf("site-%02d", i))
		ws.Spec.Interval = metav1.Duration{Duration: 5 * time.Second}
		ws.Spec.Timeout = metav1.Duration{Duration: 2 * time.Second}
		createWebsite(t, ws)
		sites = append(sites, ws)
	}
	// 15 × 0.2 = 3 checks/s: 3 shards.
	eventually(t, 15*time.Second, "3 shards, every Website on its shard", func() (bool, error) {
		return websitesOnShards(t, sites, 3) && len(schedulerDeployments(t, ns)) == 3, nil
	})

	// Down to 5 Websites = 1 check/s: with headroom, 2 shards.
	for _, ws := range sites[5:] {
		if err := k8sClient.Delete(context.Background(), ws); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "2 shards, scheduler 2 drained and deleted", func() (bool, error) {
		return websitesOnShards(t, sites[:5], 2) &&
			cmp.Equal([]string{"webmon-scheduler-0", "webmon-scheduler-1"}, names(schedulerDeployments(t, ns))), nil
	})
	// Not before the handoffs of the Websites that moved: until then the
	// drained shard's scheduler still publishes their ticks.
	deleted := time.Now()
	for _, ws := range sites[:5] {
		if _, at, ok := getWebsite(t, ws).ShardHandoff(); ok && deleted.Before(at.Add(handoffMargin)) {
			t.Errorf("scheduler 2 gone at %s, before %s's handoff at %s", deleted.Format(time.StampMilli), ws.Name, at.Format(time.StampMilli))
		}
	}
	if got := testutil.ToFloat64(metrics.Shards); got != 2 {
		t.Errorf("webmon_controller_shards = %v, want 2", got)
	}
	for _, d := range schedulerDeployments(t, ns) {
		if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--shards=2") {
			t.Errorf("%s args %v, want --shards=2", d.Name, d.Spec.Template.Spec.Containers[0].Args)
		}
	}
	// Websites that changed shard say so in an Event, and were told when
	// their schedulers hand them over, for their new shard.
	moved := 0
	for _, ws := range sites[:5] {
		got := getWebsite(t, ws)
		handoff, announced := got.Annotations[monitoringv1alpha1.ShardHandoffAnnotation]
		event, everMoved := eventReasons(t, ws)[eventShardMoved]
		if strings.HasPrefix(event, "Normal: moved from shard 2 to shard") {
			moved++
		}
		if everMoved && !announced {
			t.Errorf("%s moved and has no handoff annotation", ws.Name)
		}
		if announced {
			to, at, _ := strings.Cut(handoff, "@")
			when, err := time.Parse(time.RFC3339Nano, at)
			if to != got.Labels[monitoringv1alpha1.ShardLabel] || err != nil || time.Since(when) > time.Minute {
				t.Errorf("%s on shard %s has the handoff %q, want its shard and a time just after its move", ws.Name, got.Labels[monitoringv1alpha1.ShardLabel], handoff)
			}
		}
	}
	if moved == 0 && websitesOnShardCount(t, sites[:5], 3, 2) > 0 {
		t.Error("no ShardMoved Event for the Websites moved off shard 2")
	}
}

// websitesOnShardCount counts the Websites that were on shard `from`
// among n shards.
func websitesOnShardCount(t testing.TB, sites []*monitoringv1alpha1.Website, n, from int32) int {
	count := 0
	for _, ws := range sites {
		if ShardFor(getWebsite(t, ws).UID, n) == from {
			count++
		}
	}
	return count
}

// websitesOnShards reports whether every Website carries the shard label
// ShardFor gives among n shards.
func websitesOnShards(t testing.TB, sites []*monitoringv1alpha1.Website, n int32) bool {
	for _, ws := range sites {
		got := getWebsite(t, ws)
		if got.Labels[monitoringv1alpha1.ShardLabel] != strconv.Itoa(int(ShardFor(got.UID, n))) {
			return false
		}
	}
	return true
}
