// Package system runs webmon as a whole for the tests that need all of it
// (test/e2e, test/reliability): installed by its Helm chart on a local
// control plane, whose pods the runner runs as processes of a freshly built
// webmon binary, with the embedded Kafka broker as a process of its own,
// PostgreSQL and local websites. Nothing here is a mock.
//
// Two such systems on the machine's two shared cores would each make the
// other's timings fail: Start waits until no other test of this machine
// runs one.
package system

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
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
	"github.com/go-logr/logr"
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
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/controlplane"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
	"github.com/webmon-dev/webmon/test/testbed/runner"
)

const (
	// Namespace is where the chart is installed.
	Namespace = "webmon-system"
	// Release is the Helm release's name.
	Release = "webmon"
	// CheckerGroup is the chart's default consumer group.
	CheckerGroup = "webmon-checkers"
	// Topic is the chart's default tasks topic.
	Topic = kafka.DefaultTopic
	// partitions of the broker's topics: the demo values' count.
	partitions = 4
)

// Options configure a system.
type Options struct {
	// Name prefixes its folder and database: e2e, reliability.
	Name string
	// OwnPostgres runs a PostgreSQL server for this system alone, which
	// the test may halt (System.Postgres); otherwise the database lives on
	// the server the other tests share.
	OwnPostgres bool
}

// System is webmon and everything it runs on. Install puts webmon on.
type System struct {
	T      *testing.T
	Dir    string
	Tools  testbed.Tools
	Binary string
	CP     *controlplane.ControlPlane
	Runner *runner.Runner
	// Client and Clientset are an admin's.
	Client    client.Client
	Clientset kubernetes.Interface
	DB        *pgxpool.Pool
	// DatabaseURL is the database webmon stores results in.
	DatabaseURL string
	// Postgres is the system's own server, with Options.OwnPostgres.
	Postgres *postgres.Server
	Broker   *Broker
	Sites    *Sites
}

// Start starts everything but webmon itself. Everything stops when the
// test ends; its folder is kept if it failed.
func Start(t *testing.T, opts Options) *System {
	t.Helper()
	ctx := t.Context()
	lockMachine(t)
	s := &System{T: t}
	var err error
	if s.Dir, err = os.MkdirTemp("", "webmon-"+opts.Name+"-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s (webmon's pods in runner/logs, the servers in cp/logs, the broker in broker.log)", s.Dir)
			return
		}
		_ = os.RemoveAll(s.Dir)
	})
	if s.Tools, err = testbed.LocateTools(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Tools.Helm); err != nil {
		t.Fatalf("helm is not built at %s: run `make controlplane-tools`", s.Tools.Helm)
	}
	s.Binary = filepath.Join(s.Dir, "webmon")
	build := exec.CommandContext(ctx, "go", "build", "-o", s.Binary, "./cmd/webmon")
	build.Dir = testbed.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/webmon: %v\n%s", err, out)
	}

	s.startDatabase(opts)
	if s.Broker, err = startBroker(ctx, s.Binary, filepath.Join(s.Dir, "broker"), filepath.Join(s.Dir, "broker.log"), partitions); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Broker.Stop(); err != nil {
			t.Errorf("stopping the broker: %v", err)
		}
	})
	s.Sites = StartSites(t)

	if s.CP, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(s.Dir, "cp"), LocalPods: runner.DefaultSelector, Log: LogWriter{t}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.CP.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	s.startRunner()

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	// The admin client logs nothing the tests read; without a logger,
	// controller-runtime complains with a stack trace.
	ctrllog.SetLogger(logr.Discard())
	if s.Client, err = client.New(s.CP.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if s.Clientset, err = kubernetes.NewForConfig(s.CP.Config); err != nil {
		t.Fatal(err)
	}
	s.Must(s.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}))
	s.Must(s.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: Release + "-database"},
		StringData: map[string]string{"url": s.DatabaseURL},
	}))
	return s
}

func (s *System) startDatabase(opts Options) {
	t, ctx := s.T, s.T.Context()
	var db *postgres.Database
	var err error
	if opts.OwnPostgres {
		if s.Postgres, err = postgres.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Postgres.Close(); err != nil {
				t.Errorf("stopping PostgreSQL: %v", err)
			}
		})
		db, err = s.Postgres.NewDatabase(ctx, opts.Name)
	} else {
		db, err = postgres.NewDatabase(ctx, opts.Name)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(context.Background()); err != nil {
			t.Errorf("dropping the database: %v", err)
		}
	})
	s.DatabaseURL = db.URL
	if s.DB, err = pgxpool.New(ctx, db.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.DB.Close)
}

func (s *System) startRunner() {
	t := s.T
	runnerLog, err := os.Create(filepath.Join(s.Dir, "runner.log"))
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		_, _ = fmt.Fprintln(runnerLog, time.Now().Format(time.StampMilli), prefix, args)
	}, funcr.Options{Verbosity: 1})
	if s.Runner, err = runner.Start(t.Context(), runner.Options{Config: s.CP.Config, Binary: s.Binary, Dir: filepath.Join(s.Dir, "runner"), MaxGracePeriod: 15 * time.Second, Log: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Runner.Stop(); err != nil {
			t.Errorf("stopping the runner: %v", err)
		}
		_ = runnerLog.Close()
	})
}

// lockMachine waits until no other test of this machine runs a system,
// and holds the lock until the test ends.
func lockMachine(t *testing.T) {
	path := filepath.Join(os.TempDir(), "webmon-system.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		started := time.Now()
		t.Logf("waiting for another test's whole system to stop (%s)", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		t.Logf("waited %s for the machine", time.Since(started).Round(time.Second))
	}
	t.Cleanup(func() { _ = f.Close() }) // closing releases the lock
}

// On is the system as seen by a subtest.
func (s *System) On(t *testing.T) *System {
	c := *s
	c.T = t
	return &c
}

// Must fails the test on an error.
func (s *System) Must(err error) {
	s.T.Helper()
	if err != nil {
		s.T.Fatal(err)
	}
}

// Helm runs the test bed's helm on the control plane, with a home of its own.
func (s *System) Helm(args ...string) {
	s.T.Helper()
	if err := s.helm(args...); err != nil {
		s.T.Fatalf("%v\npods:\n%s", err, s.PodSummary())
	}
}

func (s *System) helm(args ...string) error {
	ctx, cancel := context.WithTimeout(s.T.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Tools.Helm, append(args, "--namespace", Namespace, "--kubeconfig", s.CP.Kubeconfig)...)
	home := filepath.Join(s.Dir, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	started := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	s.T.Logf("helm %s: %s", strings.Join(args, " "), time.Since(started).Round(100*time.Millisecond))
	return nil
}

// Install installs the chart with the demo's values, then the tests': the
// system's broker, short status and rollup intervals, a quick drain; then
// values, YAML documents, each overriding the ones before.
func (s *System) Install(values ...string) {
	s.T.Helper()
	args := make([]string, 0, 10+2*len(values))
	args = append(args, "install", Release, filepath.Join(testbed.RepoRoot(), "charts", "webmon"), "--wait", "--timeout", "2m",
		"--values", filepath.Join(testbed.RepoRoot(), "config", "samples", "demo", "values.yaml"))
	base := `kafka:
  brokers: [` + s.Broker.Addr + `]
checker:
  terminationGracePeriodSeconds: 10
  env:
  - {name: WEBMON_STATUS_INTERVAL, value: 2s}
  - {name: WEBMON_DRAIN_TIMEOUT, value: 5s}
  - {name: WEBMON_ROLLUP_INTERVAL, value: 2s}
`
	for i, v := range append([]string{base}, values...) {
		file := filepath.Join(s.Dir, "values-"+strconv.Itoa(i)+".yaml")
		s.Must(os.WriteFile(file, []byte(v), 0o600))
		args = append(args, "--values", file)
	}
	s.Helm(args...)
}

// Upgrade changes the release's values and waits for its Deployments.
func (s *System) Upgrade(set ...string) {
	s.T.Helper()
	s.Helm(upgradeArgs(set)...)
}

// StartUpgrade runs Upgrade in the background, for a test that acts while
// it goes on; the channel reports its end.
func (s *System) StartUpgrade(set ...string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.helm(upgradeArgs(set)...) }()
	return done
}

func upgradeArgs(set []string) []string {
	args := make([]string, 0, 7+2*len(set))
	args = append(args, "upgrade", Release, filepath.Join(testbed.RepoRoot(), "charts", "webmon"), "--reuse-values", "--wait", "--timeout", "3m")
	for _, kv := range set {
		args = append(args, "--set", kv)
	}
	return args
}

// Eventually polls cond every 250 ms until it holds, failing the test
// after timeout with cond's last error.
func (s *System) Eventually(timeout time.Duration, what string, cond func(context.Context) (bool, error)) {
	s.T.Helper()
	var last error
	err := wait.PollUntilContextTimeout(s.T.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		s.T.Fatalf("waiting %s for %s: %v (last: %v)\npods:\n%s", timeout, what, err, last, s.PodSummary())
	}
}

// Processes are the runner's live processes of a container, by pod, for
// the pods whose name starts with prefix.
func (s *System) Processes(prefix, container string) map[string]int {
	procs := map[string]int{}
	for _, p := range s.Runner.Pods() {
		if !strings.HasPrefix(p.Name, prefix) {
			continue
		}
		if c, ok := s.Runner.Container(p, container); ok && c.Pid > 0 && syscall.Kill(c.Pid, 0) == nil {
			procs[p.Name] = c.Pid
		}
	}
	return procs
}

// AnyProcess reports any live process of any pod the runner knows.
func (s *System) AnyProcess() []string {
	var live []string
	for _, p := range s.Runner.Pods() {
		pod, err := s.Clientset.CoreV1().Pods(p.Namespace).Get(s.T.Context(), p.Name, metav1.GetOptions{})
		var containers []string
		if err == nil {
			for _, c := range pod.Spec.Containers {
				containers = append(containers, c.Name)
			}
		} else {
			containers = []string{"operator", "scheduler", "checker", "migrate"}
		}
		for _, name := range containers {
			if c, ok := s.Runner.Container(p, name); ok && c.Pid > 0 && syscall.Kill(c.Pid, 0) == nil {
				live = append(live, fmt.Sprintf("%s/%s pid %d", p, name, c.Pid))
			}
		}
	}
	return live
}

// Cmdline is a process's command line, space-separated.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}

// Metric reads one sample of a pod's metrics endpoint, 0 if absent.
func (s *System) Metric(pod types.NamespacedName, sample string) (float64, error) {
	addr, ok := s.Runner.Addr(pod, "metrics")
	if !ok {
		return 0, fmt.Errorf("no metrics address for %s", pod)
	}
	ctx, cancel := context.WithTimeout(s.T.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// Count runs a query that returns one number.
func (s *System) Count(ctx context.Context, query string, args ...any) int {
	s.T.Helper()
	var n int
	s.Must(s.DB.QueryRow(ctx, query, args...).Scan(&n))
	return n
}

// GroupMembers are the members of the checkers' consumer group that hold
// partitions, with how many each holds.
func (s *System) GroupMembers() (map[string]int, error) {
	cfg := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(kafka.DefaultVersion)
	if err != nil {
		return nil, err
	}
	cfg.Version = v
	admin, err := sarama.NewClusterAdmin([]string{s.Broker.Addr}, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { _ = admin.Close() }()
	groups, err := admin.DescribeConsumerGroups([]string{CheckerGroup})
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", CheckerGroup, err)
	}
	if len(groups) != 1 {
		return nil, fmt.Errorf("describing group %s: %d groups", CheckerGroup, len(groups))
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

// LogLines are the lines of a container's log (across its restarts) that
// keep accepts, the last n of them, each cut to 400 bytes: for failure
// messages that must say what a process did.
func (s *System) LogLines(pod types.NamespacedName, container string, n int, keep func(string) bool) []string {
	log, err := os.ReadFile(s.Runner.LogFile(pod, container))
	if err != nil {
		return []string{err.Error()}
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(log)), "\n") {
		if keep(l) {
			lines = append(lines, l[:min(len(l), 400)])
		}
	}
	return lines[max(0, len(lines)-n):]
}

// PodSummary lists webmon's pods and the end of each container's log,
// for failure messages.
func (s *System) PodSummary() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := s.Clientset.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "  %s %s\n", p.Name, p.Status.Phase)
		for _, c := range p.Spec.Containers {
			log, _ := os.ReadFile(s.Runner.LogFile(types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, c.Name))
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
