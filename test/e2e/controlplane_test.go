package e2e

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/controlplane"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// TestLocalControlPlane brings up the whole local control plane, checks that
// a Deployment turns into a pod Running on the fake node and that kubectl
// can install webmon's CRD, then tears it down and checks nothing is left.
func TestLocalControlPlane(t *testing.T) {
	ctx := t.Context()
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: t.TempDir(), Log: sys.LogWriter{T: t}})
	if err != nil {
		t.Fatal(err)
	}
	pids := cp.Pids()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cp.Stop()
		}
	})
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, ok := pids[name]; !ok {
			t.Fatalf("%s is not running; running: %v", name, pids)
		}
	}

	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "probe"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "example.invalid/probe:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods *corev1.PodList
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err = cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=probe"})
		if err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == controlplane.NodeName {
				running++
			}
		}
		return running == 2, nil
	})
	if err != nil {
		t.Fatalf("waiting for 2 probe pods Running on %s: %v; pods: %v", controlplane.NodeName, err, podSummary(pods))
	}

	crd := filepath.Join(testbed.RepoRoot(), "config", "crd", "bases")
	if _, err := cp.Kubectl(ctx, "apply", "--server-side", "-f", crd); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=30s", "crd/websites.monitoring.webmon.dev"); err != nil {
		t.Fatal(err)
	}
	out, err := cp.Kubectl(ctx, "get", "websites", "-A")
	if err != nil || !strings.Contains(string(out), "No resources found") {
		t.Fatalf("kubectl get websites: %v: %s", err, out)
	}
	checkKubectlUX(t, cp)

	apiURL := cp.Config.Host
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Stop", name, pid)
		}
	}
	hostPort := strings.TrimPrefix(apiURL, "https://")
	if conn, err := net.DialTimeout("tcp", hostPort, time.Second); err == nil {
		conn.Close()
		t.Errorf("something still listens on the apiserver's address %s", hostPort)
	}
}

// checkKubectlUX checks what a user sees first: the field docs in kubectl
// explain, and the columns of kubectl get.
func checkKubectlUX(t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	ctx := t.Context()
	// The apiserver publishes a new CRD's OpenAPI a few seconds after it
	// is established.
	var out []byte
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		out, err = cp.Kubectl(ctx, "explain", "websites.spec.interval")
		return err == nil, nil
	})
	if err != nil || !strings.Contains(string(out), "how often each URL is checked") {
		t.Errorf("kubectl explain websites.spec.interval: %v\n%s", err, out)
	}
	sample := filepath.Join(testbed.RepoRoot(), "config", "samples", "monitoring_v1alpha1_website_shop.yaml")
	if _, err := cp.Kubectl(ctx, "apply", "-f", sample); err != nil {
		t.Fatal(err)
	}
	for args, want := range map[string][]string{
		"get ws":               {"NAME", "STATE", "URLS", "INTERVAL", "UPTIME", "LATENCY", "LAST CHECK", "AGE", "shop", "30s"},
		"get websites -o wide": {"SHARD", "URL", "https://shop.example.com/"},
		"get webmon":           {"shop"},
	} {
		out, err := cp.Kubectl(ctx, strings.Fields(args)...)
		if err != nil {
			t.Errorf("kubectl %s: %v", args, err)
			continue
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("kubectl %s shows no %q:\n%s", args, w, out)
			}
		}
	}
}

func podSummary(pods *corev1.PodList) string {
	if pods == nil {
		return "none listed"
	}
	var b strings.Builder
	for _, p := range pods.Items {
		b.WriteString(p.Name + "=" + string(p.Status.Phase) + "@" + p.Spec.NodeName + " ")
	}
	return b.String()
}
