package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/controlplane"
	"github.com/webmon-dev/webmon/test/testbed/runner"
)

// One control plane and one runner for the package; TestStop starts a
// runner of its own for pods the shared one does not select.
var (
	cp      *controlplane.ControlPlane
	cs      kubernetes.Interface
	run     *runner.Runner
	bins    binaries
	logger  logr.Logger
	baseDir string
)

type binaries struct{ webmon, podinfo string }

const (
	mainSelector = runner.DefaultSelector + ",runner-test!=stop"
	timeout      = 40 * time.Second
	// canary is set in the test's environment: no process may see it.
	canary = "WEBMON_RUNNER_TEST_CANARY"
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) (code int) {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "runner test setup:", err)
		return 1
	}
	var err error
	if baseDir, err = os.MkdirTemp("", "webmon-runner-test-"); err != nil {
		return fail(err)
	}
	defer func() { _ = os.RemoveAll(baseDir) }()
	logger = logr.Discard()
	if testing.Verbose() {
		logger = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	}
	started := time.Now()
	if bins, err = build(baseDir); err != nil {
		return fail(err)
	}
	logger.Info("built webmon and podinfo", "took", time.Since(started).String())
	started = time.Now()
	ctx := context.Background()
	cp, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(baseDir, "cp"), LocalPods: runner.DefaultSelector})
	if err != nil {
		return fail(err)
	}
	logger.Info("control plane started", "took", time.Since(started).String())
	defer func() {
		if err := cp.Stop(); err != nil {
			code = fail(err)
		}
	}()
	if cs, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fail(err)
	}
	_ = os.Setenv(canary, "leaked")
	run, err = runner.Start(ctx, runner.Options{
		Config: cp.Config, Binary: bins.webmon, Commands: map[string]string{"podinfo": bins.podinfo},
		Dir: filepath.Join(baseDir, "runner"), Selector: mainSelector, MaxGracePeriod: 5 * time.Second,
		Log: logger.WithName("runner"),
	})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := run.Stop(); err != nil {
			code = fail(err)
		}
	}()
	return m.Run()
}

// build builds webmon and the podinfo helper; Go's build cache makes a
// second run a link.
func build(dir string) (binaries, error) {
	b := binaries{webmon: filepath.Join(dir, "webmon"), podinfo: filepath.Join(dir, "podinfo")}
	for out, pkg := range map[string]string{b.webmon: "./cmd/webmon", b.podinfo: "./test/testbed/runner/testdata/podinfo"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = testbed.RepoRoot()
		if msg, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// TestDeployment runs a Deployment whose pod has webmon's embedded broker
// and podinfo, which reports its environment, files and identity.
func TestDeployment(t *testing.T) {
	ns := newNamespace(t, "deploy")
	createPodinfoObjects(t, ns)
	d := podinfoDeployment(ns)
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitReadyPods(t, ns, 1)[0]

	t.Run("environment, files and identity", func(t *testing.T) { checkReport(t, pod) })
	t.Run("status", func(t *testing.T) { checkRunningStatus(t, pod) })
	t.Run("ports", func(t *testing.T) { checkPorts(t, pod) })
	t.Run("SIGKILL restarts", func(t *testing.T) { checkKillRestarts(t, pod) })
	t.Run("scale 1 to 2 to 1", func(t *testing.T) { checkScale(t, ns) })
	t.Run("deleting stops", func(t *testing.T) { checkDelete(t, ns) })
}

// report is what podinfo writes (testdata/podinfo).
type report struct {
	Args        []string          `json:"args"`
	Env         map[string]string `json:"env"`
	Files       map[string]string `json:"files"`
	User        string            `json:"user"`
	ConfigMap   map[string]string `json:"configMap"`
	ListSecrets string            `json:"listSecrets"`
	Errors      []string          `json:"errors"`
}

func readReport(t *testing.T, pod types.NamespacedName, container, path string) report {
	t.Helper()
	local, ok := run.Path(pod, container, path)
	if !ok {
		t.Fatalf("runner.Path(%s, %s, %s) found no mount", pod, container, path)
	}
	var r report
	poll(t, "podinfo's report in "+local, func() (bool, error) {
		b, err := os.ReadFile(local)
		if err != nil {
			return false, nil
		}
		return true, json.Unmarshal(b, &r)
	})
	return r
}

func checkReport(t *testing.T, pod types.NamespacedName) {
	r := readReport(t, pod, "info", "/data/report.json")
	if len(r.Errors) > 0 {
		t.Errorf("podinfo reported errors: %v", r.Errors)
	}
	local := func(p string) string {
		l, ok := run.Path(pod, "info", p)
		if !ok {
			t.Fatalf("no local path for %s", p)
		}
		return l
	}
	wantEnv := map[string]string{
		"GREETING":        "hello",
		"PASSWORD":        "s3cret",
		"POD_NAME":        pod.Name,
		"POD_NAMESPACE":   pod.Namespace,
		"POD_IP":          "127.0.0.1",
		"NODE_NAME":       controlplane.NodeName,
		"SERVICE_ACCOUNT": "podinfo",
		"MEMORY_LIMIT_MI": "64",
		"CPU_REQUEST_M":   "100",
		"COMPOSED":        "hello, hello $(UNDEFINED)",
		"ESCAPED":         "$(GREETING)",
		"PASSWORD_FILE":   local("/etc/podinfo/secret/password"),
		"CM_colour":       "blue",
		"CM_greeting":     "hello",
		"CM_settings":     "interval: 30s\n",
		"S_password":      "s3cret",
		"HOSTNAME":        pod.Name,
		"HOME":            r.Env["HOME"],
		"KUBECONFIG":      r.Env["KUBECONFIG"],
		"PATH":            os.Getenv("PATH"),
	}
	if v, ok := os.LookupEnv("TMPDIR"); ok {
		wantEnv["TMPDIR"] = v
	}
	if d := cmp.Diff(wantEnv, r.Env); d != "" {
		t.Errorf("podinfo's environment (-want +got):\n%s", d)
	}
	if r.Env["KUBECONFIG"] == "" || r.Env["HOME"] == os.Getenv("HOME") {
		t.Errorf("want a KUBECONFIG and a HOME of the pod's own, got %q and %q", r.Env["KUBECONFIG"], r.Env["HOME"])
	}
	wantArgs := []string{
		"--report=" + local("/data/report.json"),
		"--file=" + local("/etc/podinfo/secret/password"),
		"--file=" + local("/etc/podinfo/config/conf/settings.yaml"),
		"--file=" + local("/etc/motd"),
		"--file=" + local("/etc/podinfo/meta/name"),
		"--file=" + local("/etc/podinfo/meta/pw"),
		"--configmap=podinfo",
		"--greeting=hello",
		"--metrics-bind-address=" + addr(t, pod, "metrics"),
	}
	if d := cmp.Diff(wantArgs, r.Args); d != "" {
		t.Errorf("podinfo's args (-want +got):\n%s", d)
	}
	wantFiles := map[string]string{
		local("/etc/podinfo/secret/password"):           "s3cret",
		local("/etc/podinfo/config/conf/settings.yaml"): "interval: 30s\n",
		local("/etc/motd"):                              "hello",
		local("/etc/podinfo/meta/name"):                 pod.Name,
		local("/etc/podinfo/meta/pw"):                   "s3cret",
	}
	if d := cmp.Diff(wantFiles, r.Files); d != "" {
		t.Errorf("podinfo's files (-want +got):\n%s", d)
	}
	if want := "system:serviceaccount:" + pod.Namespace + ":podinfo"; r.User != want {
		t.Errorf("the API server sees podinfo as %q, want %q", r.User, want)
	}
	if r.ConfigMap["greeting"] != "hello" {
		t.Errorf("podinfo read ConfigMap data %v through its Role, want greeting=hello", r.ConfigMap)
	}
	if !strings.Contains(r.ListSecrets, "forbidden") {
		t.Errorf("listing Secrets as the ServiceAccount: got %q, want forbidden", r.ListSecrets)
	}
}

func checkRunningStatus(t *testing.T, key types.NamespacedName) {
	pod, err := cs.CoreV1().Pods(key.Namespace).Get(t.Context(), key.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != "127.0.0.1" || pod.Status.StartTime == nil {
		t.Errorf("phase %s, pod IP %q, start %v; want Running on 127.0.0.1 with a start time", pod.Status.Phase, pod.Status.PodIP, pod.Status.StartTime)
	}
	for _, c := range pod.Status.ContainerStatuses {
		if !c.Ready || c.State.Running == nil || c.RestartCount != 0 {
			t.Errorf("container %s: ready %v, state %+v, restarts %d; want ready and running", c.Name, c.Ready, c.State, c.RestartCount)
		}
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if !hasCondition(pod, typ) {
			t.Errorf("pod condition %s is not True: %+v", typ, pod.Status.Conditions)
		}
	}
}

// checkPorts checks that podinfo serves on its rewritten metrics address
// and that the broker listens on its rewritten --port.
func checkPorts(t *testing.T, pod types.NamespacedName) {
	resp, err := http.Get("http://" + addr(t, pod, "metrics") + "/readyz")
	if err != nil {
		t.Fatalf("podinfo's metrics address: %v", err)
	}
	_ = resp.Body.Close()
	kafka := addr(t, pod, "kafka")
	if other, _ := run.Addr(pod, "port"); other != kafka {
		t.Errorf("Addr(kafka) = %s but Addr(port) = %s", kafka, other)
	}
	dial(t, kafka)
	broker, _ := run.Container(pod, "broker")
	poll(t, "the broker's log to name "+kafka, func() (bool, error) {
		b, _ := os.ReadFile(broker.LogFile)
		return strings.Contains(string(b), "listening on "+kafka), nil
	})
}

func checkKillRestarts(t *testing.T, key types.NamespacedName) {
	before, _ := run.Container(key, "info")
	if err := run.Kill(key, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll(t, "both containers restarted after SIGKILL", func() (bool, error) {
		pod, err := cs.CoreV1().Pods(key.Namespace).Get(t.Context(), key.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range pod.Status.ContainerStatuses {
			last := c.LastTerminationState.Terminated
			if c.RestartCount != 1 || !c.Ready || last == nil || last.ExitCode != 137 {
				return false, nil
			}
		}
		return hasCondition(pod, corev1.PodReady), nil
	})
	after, _ := run.Container(key, "info")
	if after.Pid == 0 || after.Pid == before.Pid || after.Restarts != 1 {
		t.Errorf("after SIGKILL: pid %d (was %d), restarts %d; want a new process and 1 restart", after.Pid, before.Pid, after.Restarts)
	}
	checkPorts(t, key) // same addresses after the restart
}

func checkScale(t *testing.T, ns string) {
	scale(t, ns, 2)
	pods := waitReadyPods(t, ns, 2)
	brokers := map[string]bool{}
	for _, p := range pods {
		a := addr(t, p, "kafka")
		dial(t, a)
		brokers[a] = true
	}
	if len(brokers) != 2 {
		t.Errorf("two brokers share an address: %v", brokers)
	}
	pids := map[types.NamespacedName][]int{}
	for _, p := range pods {
		pids[p] = processes(t, p)
	}

	scale(t, ns, 1)
	left := waitReadyPods(t, ns, 1)[0]
	for p, ps := range pids {
		if p == left {
			continue
		}
		waitGone(t, p, ps)
		if b, _ := os.ReadFile(run.LogFile(p, "info")); !strings.Contains(string(b), "podinfo: got SIGTERM") {
			t.Errorf("the scaled-down pod's podinfo did not log SIGTERM:\n%s", b)
		}
	}
}

func checkDelete(t *testing.T, ns string) {
	pods := podsIn(t, ns)
	pids := map[types.NamespacedName][]int{}
	for _, p := range pods {
		pids[p] = processes(t, p)
	}
	if err := cs.AppsV1().Deployments(ns).Delete(t.Context(), "podinfo", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	for p, ps := range pids {
		waitGone(t, p, ps)
	}
}

// TestJob checks that a Job pod's exit code decides its phase, and its
// Job's: a failing `webmon migrate` hook must fail.
func TestJob(t *testing.T) {
	ns := newNamespace(t, "job")
	for name, code := range map[string]int{"ok": 0, "fails": 3} {
		if _, err := cs.BatchV1().Jobs(ns).Create(t.Context(), podinfoJob(ns, name, code), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]struct {
		phase corev1.PodPhase
		code  int32
		job   batchv1.JobConditionType
	}{
		"ok":    {corev1.PodSucceeded, 0, batchv1.JobComplete},
		"fails": {corev1.PodFailed, 3, batchv1.JobFailed},
	} {
		poll(t, "job "+name+" to be "+string(want.job), func() (bool, error) {
			job, err := cs.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range job.Status.Conditions {
				if c.Type == want.job && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods of job %s: %v, %v", name, err, pods)
		}
		pod := pods.Items[0]
		got := pod.Status.ContainerStatuses[0].State.Terminated
		if pod.Status.Phase != want.phase || got == nil || got.ExitCode != want.code {
			t.Errorf("job %s: pod phase %s, container %+v; want %s with exit code %d", name, pod.Status.Phase, pod.Status.ContainerStatuses[0].State, want.phase, want.code)
		}
		if init := pod.Status.InitContainerStatuses; len(init) != 1 || init[0].State.Terminated == nil || init[0].State.Terminated.ExitCode != 0 {
			t.Errorf("job %s: init container status %+v, want terminated with 0", name, init)
		}
	}
}

// TestWaitsForSecret checks that a pod whose Secret does not exist yet
// waits, as with a kubelet, and starts once the Secret is there.
func TestWaitsForSecret(t *testing.T) {
	ns := newNamespace(t, "late")
	labels := map[string]string{"app.kubernetes.io/name": "webmon", "app": "late"}
	d := deployment(ns, "late", labels, 1, corev1.PodSpec{Containers: []corev1.Container{{
		Name: "broker", Image: "ghcr.io/webmon-dev/webmon:dev", Args: []string{"dev-broker", "--port=9092"},
		Env: []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "late"}, Key: "password"}}}},
	}}})
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pod to wait for its Secret", func() (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil || len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
			return false, err
		}
		p := pods.Items[0]
		w := p.Status.ContainerStatuses[0].State.Waiting
		return p.Status.Phase == corev1.PodPending && w != nil && w.Reason == "CreateContainerConfigError" && strings.Contains(w.Message, `secret "late" not found`), nil
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns}, StringData: map[string]string{"password": "x"}}
	if _, err := cs.CoreV1().Secrets(ns).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pod to run once its Secret exists", func() (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		return err == nil && len(pods.Items) == 1 && hasCondition(&pods.Items[0], corev1.PodReady), err
	})
}

// TestStop checks that stopping a runner stops every process it started.
func TestStop(t *testing.T) {
	ns := newNamespace(t, "stop")
	r, err := runner.Start(t.Context(), runner.Options{
		Config: cp.Config, Binary: bins.webmon, Dir: t.TempDir(),
		Selector: runner.DefaultSelector + ",runner-test=stop", Log: logger.WithName("stop-runner"),
	})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app.kubernetes.io/name": "webmon", "runner-test": "stop"}
	d := deployment(ns, "brokers", labels, 2, corev1.PodSpec{Containers: []corev1.Container{{
		Name: "broker", Image: "ghcr.io/webmon-dev/webmon:dev", Args: []string{"dev-broker", "--port=9092"},
		Ports: []corev1.ContainerPort{{Name: "kafka", ContainerPort: 9092}},
	}}})
	if _, err := cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pids []int
	poll(t, "2 brokers running", func() (bool, error) {
		pids = nil
		for _, p := range r.Pods() {
			if c, ok := r.Container(p, "broker"); ok && c.Pid != 0 {
				pids = append(pids, c.Pid)
			}
		}
		return len(pids) == 2, nil
	})
	if err := r.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Stop", pid)
		}
	}
}

// newNamespace creates a namespace and waits for what pods need in it:
// the default ServiceAccount and the kube-root-ca.crt ConfigMap.
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "namespace "+name+" to be ready for pods", func() (bool, error) {
		_, err1 := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		_, err2 := cs.CoreV1().ConfigMaps(name).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err1 == nil && err2 == nil, nil
	})
	return name
}

// createPodinfoObjects creates podinfo's ServiceAccount, a Role that lets
// it read one ConfigMap, and its Secret and ConfigMap.
func createPodinfoObjects(t *testing.T, ns string) {
	t.Helper()
	ctx := t.Context()
	meta := metav1.ObjectMeta{Name: "podinfo", Namespace: ns}
	for _, create := range []func() error{
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"podinfo"}, Verbs: []string{"get"},
			}}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "podinfo"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "podinfo", Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"password": "s3cret"}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{
				"greeting": "hello", "colour": "blue", "settings": "interval: 30s\n",
			}}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
}

func podinfoDeployment(ns string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": "webmon", "app": "podinfo"}
	return deployment(ns, "podinfo", labels, 1, corev1.PodSpec{
		ServiceAccountName:            "podinfo",
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		Volumes: []corev1.Volume{
			{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "podinfo", DefaultMode: ptr.To[int32](0o440)}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"},
				Items:                []corev1.KeyToPath{{Key: "settings", Path: "conf/settings.yaml"}},
			}}},
			{Name: "motd", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"}}}},
			{Name: "meta", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"}, Items: []corev1.KeyToPath{{Key: "password", Path: "pw"}}}},
			}}}},
			{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		Containers: []corev1.Container{podinfoContainer(), {
			Name: "broker", Image: "ghcr.io/webmon-dev/webmon:dev", Command: []string{"/webmon"}, Args: []string{"dev-broker", "--port=9092"},
			Ports: []corev1.ContainerPort{{Name: "kafka", ContainerPort: 9092}},
		}},
	})
}

func podinfoContainer() corev1.Container {
	fromSecret := func(name, key string, optional bool) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
	}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	return corev1.Container{
		Name: "info", Image: "example.invalid/podinfo:1", Command: []string{"podinfo"},
		Args: []string{
			"--report=/data/report.json",
			"--file=/etc/podinfo/secret/password", "--file=/etc/podinfo/config/conf/settings.yaml", "--file=/etc/motd",
			"--file=/etc/podinfo/meta/name", "--file=/etc/podinfo/meta/pw",
			"--configmap=podinfo", "--greeting=$(GREETING)", "--metrics-bind-address=:8080",
		},
		EnvFrom: []corev1.EnvFromSource{
			{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"}}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"}}},
			{Prefix: "NONE_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}},
		},
		Env: []corev1.EnvVar{
			{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "podinfo"}, Key: "greeting"}}},
			{Name: "PASSWORD", ValueFrom: fromSecret("podinfo", "password", false)},
			{Name: "MISSING", ValueFrom: fromSecret("podinfo", "absent-key", true)},
			{Name: "MISSING_SECRET", ValueFrom: fromSecret("absent", "password", true)},
			{Name: "POD_NAME", ValueFrom: field("metadata.name")},
			{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
			{Name: "POD_IP", ValueFrom: field("status.podIP")},
			{Name: "NODE_NAME", ValueFrom: field("spec.nodeName")},
			{Name: "SERVICE_ACCOUNT", ValueFrom: field("spec.serviceAccountName")},
			{Name: "MEMORY_LIMIT_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU_REQUEST_M", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
			{Name: "COMPOSED", Value: "$(GREETING), $(GREETING) $(UNDEFINED)"},
			{Name: "ESCAPED", Value: "$$(GREETING)"},
			{Name: "PASSWORD_FILE", Value: "/etc/podinfo/secret/password"},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "secret", MountPath: "/etc/podinfo/secret", ReadOnly: true},
			{Name: "config", MountPath: "/etc/podinfo/config"},
			{Name: "motd", MountPath: "/etc/motd", SubPath: "greeting"},
			{Name: "meta", MountPath: "/etc/podinfo/meta"},
			{Name: "data", MountPath: "/data"},
		},
		Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("metrics")}},
			PeriodSeconds: 2,
		},
	}
}

func podinfoJob(ns, name string, exit int) *batchv1.Job {
	podinfo := func(name, report string, exit int) corev1.Container {
		return corev1.Container{
			Name: name, Image: "example.invalid/podinfo:1", Command: []string{"podinfo"},
			Args:         []string{"--report=" + report, fmt.Sprintf("--exit=%d", exit)},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
		}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "webmon"}},
				Spec: corev1.PodSpec{
					RestartPolicy:  corev1.RestartPolicyNever,
					Volumes:        []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					InitContainers: []corev1.Container{podinfo("init", "/data/init.json", 0)},
					Containers:     []corev1.Container{podinfo("main", "/data/main.json", exit)},
				},
			},
		},
	}
}

func deployment(ns, name string, labels map[string]string, replicas int32, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

func scale(t *testing.T, ns string, replicas int32) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := cs.AppsV1().Deployments(ns).Patch(t.Context(), "podinfo", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitReadyPods waits until the namespace has exactly n pods, all Ready
// and all running in the runner.
func waitReadyPods(t *testing.T, ns string, n int) []types.NamespacedName {
	t.Helper()
	var keys []types.NamespacedName
	poll(t, fmt.Sprintf("%d ready pods in %s", n, ns), func() (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		keys = nil
		for i := range pods.Items {
			p := &pods.Items[i]
			key := types.NamespacedName{Namespace: ns, Name: p.Name}
			if !hasCondition(p, corev1.PodReady) || p.DeletionTimestamp != nil || len(processes(t, key)) != len(p.Spec.Containers) {
				return false, nil
			}
			keys = append(keys, key)
		}
		return len(keys) == n, nil
	})
	return keys
}

func podsIn(t *testing.T, ns string) []types.NamespacedName {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []types.NamespacedName
	for _, p := range pods.Items {
		keys = append(keys, types.NamespacedName{Namespace: ns, Name: p.Name})
	}
	return keys
}

// processes are the pids of the pod's running containers.
func processes(t *testing.T, pod types.NamespacedName) []int {
	t.Helper()
	var pids []int
	for _, name := range []string{"info", "broker"} {
		if c, ok := run.Container(pod, name); ok && c.Pid != 0 {
			pids = append(pids, c.Pid)
		}
	}
	return pids
}

// waitGone waits until the pod is gone from the API server (the runner
// deletes it once its processes stop) and its processes are gone.
func waitGone(t *testing.T, pod types.NamespacedName, pids []int) {
	t.Helper()
	poll(t, "pod "+pod.String()+" and its processes to be gone", func() (bool, error) {
		_, err := cs.CoreV1().Pods(pod.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, nil
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				return false, nil
			}
		}
		return true, nil
	})
}

func addr(t *testing.T, pod types.NamespacedName, port string) string {
	t.Helper()
	a, ok := run.Addr(pod, port)
	if !ok {
		t.Fatalf("runner.Addr(%s, %s): none", pod, port)
	}
	return a
}

func dial(t *testing.T, a string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a, 2*time.Second)
	if err != nil {
		t.Errorf("nothing listens on %s: %v", a, err)
		return
	}
	_ = conn.Close()
}

func hasCondition(pod *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == typ {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
