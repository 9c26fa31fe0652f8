package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
)

// TestOperatorCommand runs `webmon operator` as a pod would (flags from the
// environment, a kubeconfig) against a real kube-apiserver.
func TestOperatorCommand(t *testing.T) {
	// The operator runs as a user holding only the roles generated from
	// its RBAC markers: if they lack a permission, this test fails.
	c, kubeconfigFile := startEnvtestAs(t, "webmon-operator", filepath.Join("config", "rbac", "role.yaml"))
	ctx := t.Context()

	// The operator's own Deployment, which owns what it creates.
	owner := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "webmon-system", Name: "webmon-operator"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "op"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "op"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "op", Image: "webmon:e2e"}}}},
		},
	}
	mustCreate(t, c, owner)

	t.Setenv("KUBECONFIG", kubeconfigFile)
	t.Setenv("POD_NAMESPACE", "webmon-system")
	t.Setenv("WEBMON_SHARDS", "2")
	t.Setenv("WEBMON_SCHEDULER_IMAGE", "webmon:e2e")
	t.Setenv("WEBMON_KAFKA_BROKERS", "kafka-0:9092,kafka-1:9092")
	pprofAddr := freeAddr(t)
	opCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := run(opCtx, "operator", "--leader-elect=true", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--pprof-bind-address="+pprofAddr,
			"--owner-deployment=webmon-operator", "--scheduler-env=WEBMON_KAFKA_TOPIC_PARTITIONS=64")
		done <- err
	}()

	ws := &monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shop"},
		Spec:       monitoringv1alpha1.WebsiteSpec{URLs: []monitoringv1alpha1.WebsiteURL{"https://shop.example.com/"}},
	}
	if err := c.Create(ctx, ws); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var deps appsv1.DeploymentList
		if err := c.List(ctx, &deps, client.InNamespace("webmon-system"), client.MatchingLabels{"app.kubernetes.io/component": "scheduler"}); err != nil || len(deps.Items) != 2 {
			return false, nil
		}
		for _, d := range deps.Items {
			if d.Spec.Template.Spec.Containers[0].Image != "webmon:e2e" {
				return false, fmt.Errorf("%s runs %s, want webmon:e2e from $WEBMON_SCHEDULER_IMAGE", d.Name, d.Spec.Template.Spec.Containers[0].Image)
			}
			if env := d.Spec.Template.Spec.Containers[0].Env; !slices.Contains(env, corev1.EnvVar{Name: "WEBMON_KAFKA_TOPIC_PARTITIONS", Value: "64"}) {
				return false, fmt.Errorf("%s has env %v, want WEBMON_KAFKA_TOPIC_PARTITIONS=64 from --scheduler-env", d.Name, env)
			}
			// Each shard's Lease belongs to its Deployment.
			if l := getLease(ctx, t, c, d.Name); l == nil || !controlledBy(l, &d) {
				return false, nil
			}
		}
		// The operator's Lease, held, belongs to the operator's Deployment.
		if l := getLease(ctx, t, c, operatorLeaseName); l == nil || !controlledBy(l, owner) || ptr.Deref(l.Spec.HolderIdentity, "") == "" {
			return false, nil
		}
		got := &monitoringv1alpha1.Website{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(ws), got); err != nil {
			return false, nil
		}
		return got.Labels[monitoringv1alpha1.ShardLabel] != "" && got.Status.Shard != nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for 2 scheduler Deployments with their Leases, the operator's Lease, and a labelled Website: %v", err)
	}
	// Profiles are served where --pprof-bind-address says.
	if resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /debug/pprof/cmdline on --pprof-bind-address: %v, %v; want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("operator returned %v after cancellation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("operator did not stop within 30s")
	}
	if l := getLease(ctx, t, c, operatorLeaseName); l == nil || ptr.Deref(l.Spec.HolderIdentity, "") != "" {
		t.Errorf("after the operator stopped, its Lease is %+v; want it released", l)
	}

	// A Lease left by an operator that did not own it is adopted as is.
	leftover := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "webmon-system", Name: "leftover"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("old-operator")}}
	mustCreate(t, c, leftover)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	ref := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}
	lock, err := newOwnedLeaseLock(cfg, "webmon-system", leftover.Name, ref)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _, err := lock.Get(ctx); err != nil || rec.HolderIdentity != "old-operator" {
		t.Fatalf("Get: %+v, %v; want the leftover's record", rec, err)
	}
	if l := getLease(ctx, t, c, leftover.Name); l == nil || !controlledBy(l, owner) {
		t.Errorf("the leftover Lease is %+v; want it owned by the operator's Deployment", l)
	}
}

func getLease(ctx context.Context, t *testing.T, c client.Client, name string) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "webmon-system", Name: name}, l); err != nil {
		return nil
	}
	return l
}

func controlledBy(obj metav1.Object, d *appsv1.Deployment) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.Kind == "Deployment" && ref.Name == d.Name && ref.UID == d.UID
}

func TestOperatorSchedulerEnvErrors(t *testing.T) {
	ok := []string{"operator", "--namespace=w", "--kafka-brokers=kafka:9092"}
	checkConfigErrors(t, map[string]configErrorCase{
		"no value":        {args: append(ok, "--scheduler-env=WEBMON_MAX_LATENESS"), want: `--scheduler-env "WEBMON_MAX_LATENESS": want NAME=VALUE`},
		"bad name":        {args: append(ok, "--scheduler-env=MAX LATENESS=1s"), want: `"MAX LATENESS": not a valid name`},
		"shard":           {args: append(ok, "--scheduler-env=WEBMON_SHARD=3"), want: "WEBMON_SHARD: set by the operator itself"},
		"inline password": {args: append(ok, "--scheduler-env=WEBMON_KAFKA_SASL_PASSWORD=hunter2"), want: "WEBMON_KAFKA_SASL_PASSWORD: set by the operator itself"},
	})
}

// startEnvtestAs starts a kube-apiserver with the webmon-system namespace,
// and a user holding only the roles of a generated role.yaml (a path from
// the repository's root). It returns an admin client and the user's
// kubeconfig file.
func startEnvtestAs(t *testing.T, user, roleFile string) (client.Client, string) {
	t.Helper()
	env, cfg, stop, err := testbed.StartEnvtest()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	u, err := env.AddUser(envtest.User{Name: user}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = monitoringv1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "webmon-system"}})
	grantGeneratedRoles(t, c, user, roleFile)
	return c, kubeconfigFile
}

// grantGeneratedRoles creates the roles in a generated role.yaml (a path
// from the repository's root) and binds them to user.
func grantGeneratedRoles(t *testing.T, c client.Client, user, roleFile string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testbed.RepoRoot(), roleFile))
	if err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.TrimSpace(strings.Trim(doc, "-")) == "" {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ClusterRole":
			role := &rbacv1.ClusterRole{}
			mustDecode(t, doc, role)
			mustCreate(t, c, role)
			mustCreate(t, c, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}})
		case "Role":
			role := &rbacv1.Role{}
			mustDecode(t, doc, role)
			mustCreate(t, c, role)
			mustCreate(t, c, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: role.Namespace}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}})
		default:
			t.Fatalf("unexpected %s in role.yaml", meta.Kind)
		}
	}
}

func mustDecode(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
}

// freeAddr is a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
