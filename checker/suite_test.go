package checker

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

// The checker's tests run against a real kube-apiserver (envtest), the
// embedded Kafka broker (sarama over the Kafka protocol) and a real
// PostgreSQL, shared by the package; each test has its own topic,
// consumer group and namespace.
var (
	restConfig *rest.Config
	k8s        client.WithWatch
	scheme     = runtime.NewScheme()
	brokers    []string
	dbURL      string
	db         *pgxpool.Pool
	st         *store.Store
)

func TestMain(m *testing.M) {
	if os.Getenv(benchPeerEnv) != "" {
		os.Exit(runBenchPeer())
	}
	flag.Parse()
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	_, cfg, stopEnv, err := testbed.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	restConfig = cfg
	if k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{Partitions: 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer broker.Close()
	brokers = broker.Addrs()

	ctx := context.Background()
	database, err := postgres.NewDatabase(ctx, "checker")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := database.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	dbURL = database.URL
	// Migrate first: the writers' connections set up a staging table
	// like check_results.
	if err := migrate(ctx, dbURL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfgPool, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	store.Configure(cfgPool)
	if db, err = pgxpool.NewWithConfig(ctx, cfgPool); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	st = store.New(db)
	if err := st.EnsurePartitions(ctx, time.Now().AddDate(0, 0, -1), 3); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// zapLevel logs everything with -v, errors only without.
func migrate(ctx context.Context, url string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = store.Migrate(ctx, pool)
	return err
}

func zapLevel() int8 {
	if testing.Verbose() {
		return -1
	}
	return 2
}

// bed is one test's corner of the suite: a namespace, a topic and a group.
type bed struct {
	t         *testing.T
	namespace string
	topic     string
	group     string
	producer  sarama.SyncProducer
}

var beds atomic.Int32

func newBed(t *testing.T) *bed {
	t.Helper()
	n := beds.Add(1)
	b := &bed{t: t, namespace: fmt.Sprintf("checks-%d", n), topic: fmt.Sprintf("tasks-%d", n), group: fmt.Sprintf("checkers-%d", n)}
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: b.namespace}}); err != nil {
		t.Fatal(err)
	}
	kc := kafka.Config{Brokers: brokers}
	pc, err := kc.Producer()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sarama.NewClusterAdmin(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	if err := kafka.EnsureTopic(admin, kafka.TopicSpec{Name: b.topic, Partitions: 4, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	if b.producer, err = sarama.NewSyncProducer(brokers, pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.producer.Close() })
	return b
}

// options are a checker's settings for tests: small batches, short
// intervals, a fast rebalance.
func (b *bed) options() Options {
	kc := kafka.Config{Brokers: brokers, ClientID: "checker-test"}
	cc, err := kc.Consumer()
	if err != nil {
		b.t.Fatal(err)
	}
	cc.Consumer.Group.Session.Timeout = 2 * time.Second
	cc.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cc.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	return Options{
		Kafka: cc, Brokers: brokers, Topic: b.topic, Group: b.group,
		Concurrency: 16, MaxPending: 64, BatchSize: 50, BatchInterval: 50 * time.Millisecond, Writers: 2,
		StatusInterval: time.Second, StatusWorkers: 2, DrainTimeout: 5 * time.Second,
		RollupInterval: 200 * time.Millisecond, MaintenanceInterval: time.Hour, Retention: store.DefaultRetention,
		Probe: probe.Options{BodyLimit: 1 << 20, UserAgent: "webmon/test"},
		Store: st,
	}
}

// runningChecker is a checker in a manager of its own, as `webmon checker`
// runs it.
type runningChecker struct {
	*Checker
	metrics *metrics.Checker
	stop    func()
}

// start runs a checker until the test ends or stop is called.
func (b *bed) start(mutate ...func(*Options)) *runningChecker {
	b.t.Helper()
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	if err != nil {
		b.t.Fatal(err)
	}
	opts := b.options()
	opts.Client, opts.Reader = mgr.GetClient(), mgr.GetAPIReader()
	opts.Recorder = mgr.GetEventRecorder("webmon-checker")
	opts.Metrics = metrics.NewChecker(prometheus.NewRegistry())
	opts.Log = ctrl.Log.WithName("checker").WithValues("test", b.t.Name())
	for _, m := range mutate {
		m(&opts)
	}
	c := New(opts)
	if err := mgr.Add(c); err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.t.Errorf("checker stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			b.t.Error("checker did not stop within 30s")
		}
	}
	b.t.Cleanup(stop)
	return &runningChecker{Checker: c, metrics: opts.Metrics, stop: stop}
}

// website creates a Website in the bed's namespace.
func (b *bed) website(name string, urls []string, mutate ...func(*monitoringv1alpha1.WebsiteSpec)) *monitoringv1alpha1.Website {
	b.t.Helper()
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: b.namespace, Name: name}}
	ws.Spec.Interval = metav1.Duration{Duration: 30 * time.Second}
	ws.Spec.Timeout = metav1.Duration{Duration: 2 * time.Second}
	ws.Spec.FailureThreshold, ws.Spec.SuccessThreshold = 2, 1
	for _, u := range urls {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(u))
	}
	for _, m := range mutate {
		m(&ws.Spec)
	}
	if err := k8s.Create(b.t.Context(), ws); err != nil {
		b.t.Fatal(err)
	}
	return ws
}

// tasks are one round of checks of every URL of ws, scheduled at `at`.
func tasks(ws *monitoringv1alpha1.Website, at time.Time) []*task.Task {
	var out []*task.Task
	for i, u := range ws.Spec.URLs {
		t := task.ForWebsite(ws)
		t.URL, t.URLIndex = string(u), i
		t.ScheduledAt, t.Deadline = at, at.Add(ws.Spec.Interval.Duration)
		out = append(out, t)
	}
	return out
}

// publish sends tasks as the scheduler does: keyed by Website UID.
func (b *bed) publish(ts ...*task.Task) {
	b.t.Helper()
	for _, t := range ts {
		b.publishRaw(t.UID, t.Marshal())
	}
}

func (b *bed) publishRaw(key string, value []byte) {
	b.t.Helper()
	if _, _, err := b.producer.SendMessage(&sarama.ProducerMessage{Topic: b.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}); err != nil {
		b.t.Fatal(err)
	}
}

// eventually retries check until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stored counts the results of a Website in PostgreSQL, by outcome and
// class.
func stored(t *testing.T, uid string) map[string]int {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT outcome || coalesce('/' || error_class, ''), count(*) FROM check_results
		WHERE website_uid = $1 GROUP BY 1`, uid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

func (b *bed) get(name string) *monitoringv1alpha1.Website {
	b.t.Helper()
	ws := &monitoringv1alpha1.Website{}
	if err := k8s.Get(b.t.Context(), client.ObjectKey{Namespace: b.namespace, Name: name}, ws); err != nil {
		b.t.Fatal(err)
	}
	return ws
}

// target is a local site answering with h, counting its hits.
type target struct {
	URL  string
	hits atomic.Int32
}

func serve(t *testing.T, h http.HandlerFunc) *target {
	t.Helper()
	s := &target{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.hits.Add(1); h(w, r) }))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// serveFlaky is a local site that answers body, or fails with status
// while failing is set.
func serveFlaky(t *testing.T, status int, body string) (site *target, failing *atomic.Bool) {
	t.Helper()
	failing = &atomic.Bool{}
	site = serve(t, func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, http.StatusText(status), status)
			return
		}
		_, _ = fmt.Fprint(w, body)
	})
	return site, failing
}

func page(words int) string {
	return "<html><body><p>" + strings.Repeat("word ", words) + "</p><a href=\"/x\">x</a></body></html>"
}
