package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// TestSystem installs webmon with its Helm chart on the local control
// plane, its pods run as local processes by the runner, against the
// embedded Kafka broker, PostgreSQL and local websites, and drives it as an
// operator of webmon would: Websites, check-now, shard and checker scaling,
// an upgrade, uninstalling. Each step builds on the previous ones.
func TestSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole system takes minutes")
	}
	s := &system{System: sys.Start(t, sys.Options{Name: "e2e"}), deleted: map[string]bool{}}
	s.Install()
	steps := []struct {
		name string
		run  func(*system)
	}{
		{"Websites turn Up and Down", testUpAndDown},
		{"kubectl get shows the printer columns", testPrinterColumns},
		{"check-now checks at once", testCheckNow},
		{"shards 1 to 2 to 1", testShards},
		{"checkers scale out without losing a result", testCheckerScaling},
		{"deleting a Website stops its checks", testDeleteWebsite},
		{"helm upgrade rolls the checkers out", testRollout},
		{"helm uninstall leaves nothing", testUninstall},
	}
	for _, step := range steps {
		if !t.Run(step.name, func(t *testing.T) {
			started := time.Now()
			step.run(s.on(t))
			t.Logf("took %s", time.Since(started).Round(100*time.Millisecond))
		}) {
			t.Fatalf("stopping after %q failed", step.name)
		}
	}
}

// loadSites spread the checks over the partitions: a task's key is its
// Website's UID.
var loadSites = []string{"load-0", "load-1", "load-2", "load-3", "load-4", "load-5"}

// deletedSite is the load site testDeleteWebsite deletes.
const deletedSite = "load-5"

func loadPaths(name string) []string { return []string{"/" + name + "/a", "/" + name + "/b"} }

// allURLs are the URLs checked at the test's interval.
func (s *system) allURLs() []string {
	urls := []string{s.Sites.Healthy.URL + "/", s.Sites.Broken.URL + "/"}
	for _, name := range loadSites {
		if s.deleted[name] {
			continue
		}
		for _, p := range loadPaths(name) {
			urls = append(urls, s.Sites.Healthy.URL+p)
		}
	}
	return urls
}

func testUpAndDown(s *system) {
	ctx := s.T.Context()
	s.Eventually(time.Minute, "the scheduler of shard 0 to run", func(context.Context) (bool, error) {
		return len(s.Processes("webmon-scheduler-0-", "scheduler")) == 1, nil
	})
	healthy, broken := s.demoWebsite("website-healthy.yaml"), s.demoWebsite("website-broken.yaml")
	created := time.Now()
	s.Must(s.Client.Create(ctx, healthy))
	s.Must(s.Client.Create(ctx, broken))
	for _, name := range loadSites {
		s.Must(s.Client.Create(ctx, s.loadWebsite(name, loadPaths(name)...)))
	}
	// The broken site turns Down after failureThreshold (2) checks, the
	// first of which falls within the first interval.
	s.Eventually(3*interval, "demo-shop Up and demo-api Down", func(ctx context.Context) (bool, error) {
		h, err := s.website(ctx, healthy.Name)
		if err != nil {
			return false, err
		}
		b, err := s.website(ctx, broken.Name)
		if err != nil {
			return false, err
		}
		if h.Status.State == monitoringv1alpha1.WebsiteStateDown || b.Status.State == monitoringv1alpha1.WebsiteStateUp {
			return false, fmt.Errorf("demo-shop %s, demo-api %s: the wrong way round", h.Status.State, b.Status.State)
		}
		return h.Status.State == monitoringv1alpha1.WebsiteStateUp && b.Status.State == monitoringv1alpha1.WebsiteStateDown, nil
	})
	s.T.Logf("Up and Down %s after creating them", time.Since(created).Round(100*time.Millisecond))
	b, _ := s.website(ctx, broken.Name)
	if len(b.Status.URLs) != 1 || b.Status.URLs[0].StatusCode != 503 {
		s.T.Errorf("demo-api's URL status %+v, want status code 503", b.Status.URLs)
	}
}

func testPrinterColumns(s *system) {
	var rows map[string]map[string]string
	s.Eventually(30*time.Second, "State, Uptime, Latency and Last Check of every Website", func(ctx context.Context) (bool, error) {
		var err error
		if rows, err = s.websiteTable(ctx); err != nil {
			return false, err
		}
		for _, name := range append([]string{"demo-shop", "demo-api"}, loadSites...) {
			for _, col := range []string{"State", "Uptime", "Latency", "Last Check"} {
				if rows[name][col] == "" {
					return false, fmt.Errorf("%s has no %s yet: %v", name, col, rows[name])
				}
			}
		}
		return true, nil
	})
	want := map[string]map[string]string{
		"demo-shop": {"State": "Up", "Uptime": "100.00%", "URLs": "1", "Interval": "5s"},
		"demo-api":  {"State": "Down", "Uptime": "0.00%", "URLs": "1", "Interval": "5s"},
		"load-0":    {"State": "Up", "URLs": "2"},
	}
	for name, cols := range want {
		for col, v := range cols {
			if rows[name][col] != v {
				s.T.Errorf("kubectl get websites: %s shows %s %q, want %q", name, col, rows[name][col], v)
			}
		}
	}
	if lat, err := time.ParseDuration(rows["demo-shop"]["Latency"]); err != nil || lat <= 0 || lat > time.Second {
		s.T.Errorf("demo-shop shows latency %q, want a duration under 1s", rows["demo-shop"]["Latency"])
	}
	out, err := s.CP.Kubectl(s.T.Context(), "get", "websites")
	s.Must(err)
	s.T.Logf("kubectl get websites:\n%s", out)
}

func testCheckNow(s *system) {
	ctx := s.T.Context()
	url := s.Sites.Healthy.URL + "/"
	const q = `SELECT count(*) FROM check_results WHERE url = $1 AND trigger = 1`
	before := s.Count(ctx, q, url)
	ws, err := s.website(ctx, "demo-shop")
	s.Must(err)
	patch := client.MergeFrom(ws.DeepCopy())
	metav1.SetMetaDataAnnotation(&ws.ObjectMeta, monitoringv1alpha1.CheckNowAnnotation, time.Now().Format(time.RFC3339Nano))
	asked := time.Now()
	s.Must(s.Client.Patch(ctx, ws, patch))
	// Sooner than the next regular check could be stored: a check-now is
	// published at once, and stored within a batch interval.
	s.Eventually(4*time.Second, "a check-now result in PostgreSQL", func(ctx context.Context) (bool, error) {
		return s.Count(ctx, q, url) > before, nil
	})
	s.T.Logf("check-now stored %s after the annotation", time.Since(asked).Round(10*time.Millisecond))
}

func testShards(s *system) {
	s.Upgrade("scheduler.shards=2")
	var d1 appsv1.Deployment
	s.Eventually(time.Minute, "shard 1's scheduler running, holding its Lease, owned by its Deployment", func(ctx context.Context) (bool, error) {
		if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "webmon-scheduler-1"}, &d1); err != nil {
			return false, err
		}
		procs := s.Processes("webmon-scheduler-1-", "scheduler")
		if len(procs) != 1 {
			return false, fmt.Errorf("shard 1 processes: %v", procs)
		}
		for _, pid := range procs {
			if !strings.Contains(sys.Cmdline(pid), "--shard=1") {
				return false, fmt.Errorf("shard 1's process runs %q", sys.Cmdline(pid))
			}
		}
		var lease coordinationv1.Lease
		if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "webmon-scheduler-1"}, &lease); err != nil {
			return false, err
		}
		owner := metav1.GetControllerOf(&lease)
		if owner == nil || owner.UID != d1.UID {
			return false, fmt.Errorf("Lease webmon-scheduler-1 is controlled by %v, want Deployment %s", owner, d1.UID)
		}
		return ptr.Deref(lease.Spec.HolderIdentity, "") != "", nil
	})
	// Jump hashing moves about half the Websites; with 8, none moves once
	// in 256 runs, so the spread is shown rather than required.
	var shards map[int32]int
	s.Eventually(time.Minute, "every Website assigned to one of 2 shards", func(ctx context.Context) (bool, error) {
		var err error
		shards, err = s.websiteShards(ctx)
		return err == nil && shards[0]+shards[1] == len(loadSites)+2, err
	})
	s.T.Logf("Websites by shard: %v", shards)

	s.Upgrade("scheduler.shards=1")
	s.Eventually(90*time.Second, "shard 1's Deployment, process and Lease gone, one process of shard 0, every Website on it", func(ctx context.Context) (bool, error) {
		err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "webmon-scheduler-1"}, &appsv1.Deployment{})
		if !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("Deployment webmon-scheduler-1: %w", err)
		}
		if procs := s.Processes("webmon-scheduler-1-", "scheduler"); len(procs) > 0 {
			return false, fmt.Errorf("shard 1 processes: %v", procs)
		}
		if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "webmon-scheduler-1"}, &coordinationv1.Lease{}); !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("Lease webmon-scheduler-1: %w", err)
		}
		// Shard 0's Deployment rolls out for the new count.
		if procs := s.Processes("webmon-scheduler-0-", "scheduler"); len(procs) != 1 {
			return false, fmt.Errorf("shard 0 processes: %v", procs)
		}
		shards, err := s.websiteShards(ctx)
		return err == nil && len(shards) == 1 && shards[0] > 0, err
	})
}

// websiteShards counts the Websites by the shard in their status.
func (s *system) websiteShards(ctx context.Context) (map[int32]int, error) {
	var list monitoringv1alpha1.WebsiteList
	if err := s.Client.List(ctx, &list, client.InNamespace("default")); err != nil {
		return nil, err
	}
	shards := map[int32]int{}
	for _, ws := range list.Items {
		if ws.Status.Shard == nil || ws.Labels[monitoringv1alpha1.ShardLabel] != strconv.Itoa(int(*ws.Status.Shard)) {
			return nil, fmt.Errorf("%s: label %q, status shard %v", ws.Name, ws.Labels[monitoringv1alpha1.ShardLabel], ws.Status.Shard)
		}
		shards[*ws.Status.Shard]++
	}
	return shards, nil
}

// lossWindow counts every regular check of the test's URLs scheduled from
// now until change has happened and settled: each URL is due once per
// interval, so each must have exactly as many results as the window has
// intervals, none lost, none doubled; and the schedulers' published count
// must match.
func (s *system) lossWindow(what string, change func()) {
	s.T.Helper()
	ctx := s.T.Context()
	schedulers := s.Processes("webmon-scheduler-0-", "scheduler")
	if len(schedulers) != 1 {
		s.T.Fatalf("scheduler processes %v, want 1", schedulers)
	}
	scheduler := types.NamespacedName{Namespace: namespace, Name: slices.Collect(maps.Keys(schedulers))[0]}
	const published = `webmon_scheduler_tasks_published_total{trigger="schedule"}`
	// Whole intervals, from the scheduler's first count: it publishes each
	// tick at its due time.
	from := time.Now().Truncate(time.Second)
	p0, err := s.Metric(scheduler, published)
	s.Must(err)
	change()
	intervals := int(time.Since(from)/interval) + 3 // a few intervals of the settled state
	to := from.Add(time.Duration(intervals) * interval)
	time.Sleep(time.Until(to))
	p1, err := s.Metric(scheduler, published)
	s.Must(err)
	urls := s.allURLs()
	var counts map[string]int
	s.Eventually(30*time.Second, "the window's results stored", func(ctx context.Context) (bool, error) {
		var err error
		counts, err = s.stored(ctx, urls, from, to)
		for _, u := range urls {
			if counts[u] < intervals {
				return false, err
			}
		}
		return true, err
	})
	total := 0
	for _, u := range urls {
		total += counts[u]
		if counts[u] != intervals {
			s.T.Errorf("%s: %d results scheduled in the %d intervals of %s, want %d", u, counts[u], intervals, what, intervals)
		}
	}
	// Ticks due while the metric was read fall either side: a URL apiece.
	if diff := int(p1-p0) - total; diff < -len(urls) || diff > len(urls) {
		s.T.Errorf("%s: the scheduler published %d tasks and %d results were stored", what, int(p1-p0), total)
	}
	missed := s.Count(ctx, `SELECT count(*) FROM check_results WHERE outcome = 'missed' AND scheduled_at >= $1 AND scheduled_at < $2`, from, to)
	s.T.Logf("%s: %d URLs x %d intervals, %d results (%d missed their deadline), %d published", what, len(urls), intervals, total, missed, int(p1-p0))
}

func testCheckerScaling(s *system) {
	ctx := s.T.Context()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	s.Must(s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release + "-checker"}, hpa))
	if ptr.Deref(hpa.Spec.MinReplicas, 0) != 1 || hpa.Spec.ScaleTargetRef.Name != release+"-checker" {
		s.T.Fatalf("HPA %s: minReplicas %v, target %s; want 1 and the checker Deployment", hpa.Name, hpa.Spec.MinReplicas, hpa.Spec.ScaleTargetRef.Name)
	}
	before := s.Processes(release+"-checker-", "checker")
	if len(before) != 1 {
		s.T.Fatalf("checker processes %v, want 1", before)
	}
	s.lossWindow("scaling the checkers from 1 to 2", func() {
		// As the HPA does under load: here its floor rises, and
		// kube-controller-manager's HPA controller scales the Deployment.
		s.Upgrade("checker.autoscaling.minReplicas=2")
		s.Eventually(time.Minute, "2 checker processes, each holding partitions", func(ctx context.Context) (bool, error) {
			var d appsv1.Deployment
			if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release + "-checker"}, &d); err != nil {
				return false, err
			}
			if ptr.Deref(d.Spec.Replicas, 0) != 2 {
				return false, fmt.Errorf("the checker Deployment has %d replicas", ptr.Deref(d.Spec.Replicas, 0))
			}
			if procs := s.Processes(release+"-checker-", "checker"); len(procs) != 2 {
				return false, fmt.Errorf("checker processes: %v", procs)
			}
			members, err := s.GroupMembers()
			if err != nil {
				return false, err
			}
			if len(members) != 2 {
				return false, fmt.Errorf("group %s members with partitions: %v", checkerGroup, members)
			}
			return true, nil
		})
	})
	for pod, pid := range before {
		if s.Processes(pod, "checker")[pod] != pid {
			s.T.Errorf("the first checker %s (pid %d) did not keep running", pod, pid)
		}
	}
}

func testDeleteWebsite(s *system) {
	ctx := s.T.Context()
	name := deletedSite
	paths := loadPaths(name)
	urls := []string{s.Sites.Healthy.URL + paths[0], s.Sites.Healthy.URL + paths[1]}
	ws, err := s.website(ctx, name)
	s.Must(err)
	s.Must(s.Client.Delete(ctx, ws))
	deleted := time.Now()
	// A check already handed to a checker may still land.
	time.Sleep(interval + time.Second)
	hits := s.Sites.HitsOf(paths...)
	rows := s.Count(ctx, `SELECT count(*) FROM check_results WHERE url = ANY($1)`, urls)
	time.Sleep(3 * interval)
	if got := s.Sites.HitsOf(paths...); got != hits {
		s.T.Errorf("%s's site had %d requests in the 3 intervals from %s after its deletion, want none", name, got-hits, time.Since(deleted).Round(time.Second)-3*interval)
	}
	if got := s.Count(ctx, `SELECT count(*) FROM check_results WHERE url = ANY($1)`, urls); got != rows {
		s.T.Errorf("%d results of %s stored more than an interval after its deletion, want none", got-rows, name)
	}
	s.deleted[name] = true
}

func testRollout(s *system) {
	before := s.Processes(release+"-checker-", "checker")
	if len(before) != 2 {
		s.T.Fatalf("checker processes %v, want 2", before)
	}
	s.lossWindow("rolling the checkers out", func() {
		s.Upgrade("checker.concurrency=64")
		s.Eventually(2*time.Minute, "2 new checker processes with --concurrency=64, the old ones gone", func(context.Context) (bool, error) {
			procs := s.Processes(release+"-checker-", "checker")
			if len(procs) != 2 {
				return false, fmt.Errorf("checker processes: %v", procs)
			}
			for pod, pid := range procs {
				if _, old := before[pod]; old || !strings.Contains(sys.Cmdline(pid), "--concurrency=64") {
					return false, fmt.Errorf("%s (pid %d) runs %q", pod, pid, sys.Cmdline(pid))
				}
			}
			members, err := s.GroupMembers()
			return err == nil && len(members) == 2, err
		})
	})
}

func testUninstall(s *system) {
	s.Helm("uninstall", release, "--wait", "--timeout", "2m")
	s.Eventually(90*time.Second, "no webmon process and no webmon object", func(ctx context.Context) (bool, error) {
		if live := s.AnyProcess(); len(live) > 0 {
			return false, fmt.Errorf("processes still running: %v", live)
		}
		if pods := s.Runner.Pods(); len(pods) > 0 {
			return false, fmt.Errorf("the runner still has pods %v", pods)
		}
		left, err := s.leftovers(ctx)
		if err != nil {
			return false, err
		}
		if len(left) > 0 {
			return false, fmt.Errorf("objects left: %v", left)
		}
		return true, nil
	})
}

// leftovers are webmon's objects: anything but the namespace's defaults
// and the test's database Secret in its namespace, and its cluster roles.
func (s *system) leftovers(ctx context.Context) ([]string, error) {
	var left []string
	lists := map[string]client.ObjectList{
		"Deployment": &appsv1.DeploymentList{}, "ReplicaSet": &appsv1.ReplicaSetList{}, "Pod": &corev1.PodList{},
		"Service": &corev1.ServiceList{}, "ServiceAccount": &corev1.ServiceAccountList{}, "Role": &rbacv1.RoleList{},
		"RoleBinding": &rbacv1.RoleBindingList{}, "Lease": &coordinationv1.LeaseList{},
		"HorizontalPodAutoscaler": &autoscalingv2.HorizontalPodAutoscalerList{}, "Job": &batchv1.JobList{},
		"PodDisruptionBudget": &policyv1.PodDisruptionBudgetList{},
	}
	for kind, list := range lists {
		if err := s.Client.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		for _, name := range objectNames(list) {
			if kind == "ServiceAccount" && name == "default" {
				continue
			}
			left = append(left, kind+" "+namespace+"/"+name)
		}
	}
	for kind, list := range map[string]client.ObjectList{"ClusterRole": &rbacv1.ClusterRoleList{}, "ClusterRoleBinding": &rbacv1.ClusterRoleBindingList{}} {
		if err := s.Client.List(ctx, list, client.MatchingLabels{"app.kubernetes.io/part-of": "webmon"}); err != nil {
			return nil, err
		}
		for _, name := range objectNames(list) {
			left = append(left, kind+" "+name)
		}
	}
	slices.Sort(left)
	return left, nil
}

func objectNames(list client.ObjectList) []string {
	items, _ := meta.ExtractList(list)
	names := make([]string, 0, len(items))
	for _, item := range items {
		if o, ok := item.(client.Object); ok {
			names = append(names, o.GetName())
		}
	}
	return names
}
