package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr/funcr"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/controlplane"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
	"github.com/webmon-dev/webmon/test/testbed/runner"
)

const (
	namespace = "webmon-system"
	release   = "webmon"
	// interval of the test's Websites: the shortest the API takes.
	interval = 5 * time.Second
	// checkerGroup is the chart's default consumer group.
	checkerGroup = "webmon-checkers"
)

// system is webmon installed by its chart on a local control plane, whose
// pods the runner runs as processes of a freshly built webmon binary, with
// the embedded Kafka broker, a PostgreSQL database and two local websites.
type system struct {
	t      *testing.T
	dir    string
	tools  testbed.Tools
	cp     *controlplane.ControlPlane
	run    *runner.Runner
	c      client.Client
	cs     kubernetes.Interface
	db     *pgxpool.Pool
	broker string
	sites  *sites
	// deleted are the Websites the test deleted.
	deleted map[string]bool
}

// startSystem starts everything but webmon itself; install puts it on.
// Everything stops when the test ends; its folder is kept if it failed.
func startSystem(t *testing.T) *system {
	t.Helper()
	ctx := t.Context()
	s := &system{t: t, deleted: map[string]bool{}}
	var err error
	if s.dir, err = os.MkdirTemp("", "webmon-e2e-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s (webmon's pods in runner/logs, the servers in cp/logs)", s.dir)
			return
		}
		_ = os.RemoveAll(s.dir)
	})
	if s.tools, err = testbed.LocateTools(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.tools.Helm); err != nil {
		t.Fatalf("helm is not built at %s: run `make controlplane-tools`", s.tools.Helm)
	}
	binary := filepath.Join(s.dir, "webmon")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/webmon")
	build.Dir = testbed.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/webmon: %v\n%s", err, out)
	}

	db, err := postgres.NewDatabase(ctx, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(context.Background()); err != nil {
			t.Errorf("dropping the database: %v", err)
		}
	})
	if s.db, err = pgxpool.New(ctx, db.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.db.Close)

	brokerLog, err := os.Create(filepath.Join(s.dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{Partitions: 4, Log: brokerLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close(); _ = brokerLog.Close() })
	s.broker = broker.Addrs()[0]
	s.sites = startSites(t)

	if s.cp, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(s.dir, "cp"), LocalPods: runner.DefaultSelector, Log: testWriter{t}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	runnerLog, err := os.Create(filepath.Join(s.dir, "runner.log"))
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		_, _ = fmt.Fprintln(runnerLog, time.Now().Format(time.StampMilli), prefix, args)
	}, funcr.Options{Verbosity: 1})
	if s.run, err = runner.Start(ctx, runner.Options{Config: s.cp.Config, Binary: binary, Dir: filepath.Join(s.dir, "runner"), MaxGracePeriod: 15 * time.Second, Log: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.run.Stop(); err != nil {
			t.Errorf("stopping the runner: %v", err)
		}
		_ = runnerLog.Close()
	})

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	if s.c, err = client.New(s.cp.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if s.cs, err = kubernetes.NewForConfig(s.cp.Config); err != nil {
		t.Fatal(err)
	}
	s.must(s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}))
	s.must(s.c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release + "-database"},
		StringData: map[string]string{"url": db.URL},
	}))
	return s
}

func (s *system) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// helm runs the test bed's helm on the control plane, with a home of its own.
func (s *system) helm(args ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.tools.Helm, append(args, "--namespace", namespace, "--kubeconfig", s.cp.Kubeconfig)...)
	home := filepath.Join(s.dir, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	started := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("helm %s: %v\n%s\npods:\n%s", strings.Join(args, " "), err, out, s.podSummary())
	}
	s.t.Logf("helm %s: %s", strings.Join(args, " "), time.Since(started).Round(100*time.Millisecond))
}

// install installs the chart with the demo's values and the test's:
// short intervals, a quick drain, the test's broker.
func (s *system) install() {
	s.t.Helper()
	values := filepath.Join(s.dir, "values.yaml")
	s.must(os.WriteFile(values, []byte(`kafka:
  brokers: [`+s.broker+`]
checker:
  terminationGracePeriodSeconds: 10
  env:
  - {name: WEBMON_STATUS_INTERVAL, value: 2s}
  - {name: WEBMON_DRAIN_TIMEOUT, value: 5s}
  - {name: WEBMON_ROLLUP_INTERVAL, value: 2s}
`), 0o600))
	s.helm("install", release, filepath.Join(testbed.RepoRoot(), "charts", "webmon"), "--wait", "--timeout", "2m",
		"--values", filepath.Join(testbed.RepoRoot(), "config", "samples", "demo", "values.yaml"), "--values", values)
}

// upgrade changes the release's values and waits for its Deployments.
func (s *system) upgrade(set ...string) {
	s.t.Helper()
	args := []string{"upgrade", release, filepath.Join(testbed.RepoRoot(), "charts", "webmon"), "--reuse-values", "--wait", "--timeout", "3m"}
	for _, kv := range set {
		args = append(args, "--set", kv)
	}
	s.helm(args...)
}

// eventually polls cond every 250 ms until it holds, failing the test
// after timeout with cond's last error.
func (s *system) eventually(timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	s.t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(s.t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		s.t.Fatalf("waiting %s for %s: %v (last: %v)\npods:\n%s", timeout, what, err, last, s.podSummary())
	}
}

// demoWebsite is a Website of config/samples/demo with its URL placeholders
// pointing at the test's sites and the test's interval.
func (s *system) demoWebsite(file string) *monitoringv1alpha1.Website {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(testbed.RepoRoot(), "config", "samples", "demo", file))
	s.must(err)
	text := strings.NewReplacer("${DEMO_HEALTHY_URL}", s.sites.healthy.URL+"/", "${DEMO_BROKEN_URL}", s.sites.broken.URL+"/").Replace(string(b))
	ws := &monitoringv1alpha1.Website{}
	s.must(yaml.UnmarshalStrict([]byte(text), ws))
	ws.Spec.Interval = metav1.Duration{Duration: interval}
	return ws
}

// loadWebsite checks paths of the healthy site at the test's interval.
func (s *system) loadWebsite(name string, paths ...string) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, p := range paths {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(s.sites.healthy.URL+p))
	}
	ws.Spec.Interval = metav1.Duration{Duration: interval}
	ws.Spec.Timeout = metav1.Duration{Duration: 2 * time.Second}
	return ws
}

func (s *system) website(ctx context.Context, name string) (*monitoringv1alpha1.Website, error) {
	ws := &monitoringv1alpha1.Website{}
	return ws, s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, ws)
}

// processes are the runner's live processes of a container, by pod, for
// the pods whose name starts with prefix.
func (s *system) processes(prefix, container string) map[string]int {
	procs := map[string]int{}
	for _, p := range s.run.Pods() {
		if !strings.HasPrefix(p.Name, prefix) {
			continue
		}
		if c, ok := s.run.Container(p, container); ok && c.Pid > 0 && syscall.Kill(c.Pid, 0) == nil {
			procs[p.Name] = c.Pid
		}
	}
	return procs
}

// anyProcess reports any live process of any pod the runner knows.
func (s *system) anyProcess() []string {
	var live []string
	for _, p := range s.run.Pods() {
		pod, err := s.cs.CoreV1().Pods(p.Namespace).Get(s.t.Context(), p.Name, metav1.GetOptions{})
		var containers []string
		if err == nil {
			for _, c := range pod.Spec.Containers {
				containers = append(containers, c.Name)
			}
		} else {
			containers = []string{"operator", "scheduler", "checker", "migrate"}
		}
		for _, name := range containers {
			if c, ok := s.run.Container(p, name); ok && c.Pid > 0 && syscall.Kill(c.Pid, 0) == nil {
				live = append(live, fmt.Sprintf("%s/%s pid %d", p, name, c.Pid))
			}
		}
	}
	return live
}

// cmdline is a process's command line, space-separated.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}

// metric reads one sample of a pod's metrics endpoint, 0 if absent.
func (s *system) metric(pod types.NamespacedName, sample string) (float64, error) {
	addr, ok := s.run.Addr(pod, "metrics")
	if !ok {
		return 0, fmt.Errorf("no metrics address for %s", pod)
	}
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// stored counts the results of regular (trigger 0) checks per URL scheduled
// in [from, to).
func (s *system) stored(ctx context.Context, urls []string, from, to time.Time) (map[string]int, error) {
	rows, err := s.db.Query(ctx, `SELECT url, count(*) FROM check_results
		WHERE trigger = 0 AND url = ANY($1) AND scheduled_at >= $2 AND scheduled_at < $3 GROUP BY url`, urls, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var url string
		var n int
		if err := rows.Scan(&url, &n); err != nil {
			return nil, err
		}
		counts[url] = n
	}
	return counts, rows.Err()
}

// count runs a query that returns one number.
func (s *system) count(ctx context.Context, query string, args ...any) int {
	s.t.Helper()
	var n int
	s.must(s.db.QueryRow(ctx, query, args...).Scan(&n))
	return n
}

// groupMembers are the members of the checkers' consumer group that hold
// partitions, with how many each holds.
func (s *system) groupMembers() (map[string]int, error) {
	cfg := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(kafka.DefaultVersion)
	if err != nil {
		return nil, err
	}
	cfg.Version = v
	admin, err := sarama.NewClusterAdmin([]string{s.broker}, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = admin.Close() }()
	groups, err := admin.DescribeConsumerGroups([]string{checkerGroup})
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", checkerGroup, err)
	}
	if len(groups) != 1 {
		return nil, fmt.Errorf("describing group %s: %d groups", checkerGroup, len(groups))
	}
	members := map[string]int{}
	for id, m := range groups[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil || a == nil {
			continue
		}
		for _, parts := range a.Topics {
			members[m.ClientHost+" "+id] += len(parts)
		}
	}
	return members, nil
}

// websiteTable is what `kubectl get websites` shows: the API server's
// table of the CRD's printer columns, by Website name and column name.
func (s *system) websiteTable(ctx context.Context) (map[string]map[string]string, error) {
	raw, err := s.cs.Discovery().RESTClient().Get().
		AbsPath("/apis/monitoring.webmon.dev/v1alpha1/namespaces/default/websites").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		return nil, err
	}
	rows := map[string]map[string]string{}
	for _, r := range table.Rows {
		row := map[string]string{}
		for i, col := range table.ColumnDefinitions {
			if i < len(r.Cells) && r.Cells[i] != nil {
				row[col.Name] = fmt.Sprint(r.Cells[i])
			}
		}
		rows[row["Name"]] = row
	}
	return rows, nil
}

// podSummary lists webmon's pods and the end of each container's log,
// for failure messages.
func (s *system) podSummary() string {
	pods, err := s.cs.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "  %s %s\n", p.Name, p.Status.Phase)
		for _, c := range p.Spec.Containers {
			log, _ := os.ReadFile(s.run.LogFile(types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, c.Name))
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			if len(lines) > 5 {
				lines = lines[len(lines)-5:]
			}
			for _, l := range lines {
				if len(l) > 300 {
					l = l[:300] + "..."
				}
				fmt.Fprintf(&b, "    %s| %s\n", c.Name, l)
			}
		}
	}
	return b.String()
}

// sites are the websites webmon checks: a healthy one that counts its
// requests by path, and a broken one.
type sites struct {
	healthy, broken *httptest.Server
	mu              sync.Mutex
	hits            map[string]int
}

func startSites(t *testing.T) *sites {
	s := &sites{hits: map[string]int{}}
	s.healthy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		_, _ = fmt.Fprintln(w, "<!doctype html><title>test shop</title><p>All systems go.</p>")
	}))
	s.broken = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.healthy.Close)
	t.Cleanup(s.broken.Close)
	return s
}

// hitsOf counts the requests the healthy site had for the paths.
func (s *sites) hitsOf(paths ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range paths {
		n += s.hits[p]
	}
	return n
}
