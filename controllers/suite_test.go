package controllers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
)

// One real kube-apiserver for the package; each test runs its own operator
// on a namespace of its own and reads back with a direct, uncached client.
var (
	testConfig *rest.Config
	k8sClient  client.Client
	testScheme = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	os.Exit(runWithEnvtest(m))
}

func runWithEnvtest(m *testing.M) int {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(testScheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevelFromEnv())))
	_, cfg, stop, err := testbed.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	testConfig = cfg
	// The operator's writes are what is measured, not client-side throttling.
	testConfig.QPS, testConfig.Burst = 1000, 2000
	if k8sClient, err = client.New(testConfig, client.Options{Scheme: testScheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// operatorUnderTest is the operator's two reconcilers in a manager of their own.
type operatorUnderTest struct {
	namespace string
	plan      *ShardPlan
	stop      func()
	// Writes the apiserver accepted: Website status updates and Deployment
	// updates. It does not bump resourceVersion on a write that changes
	// nothing, so only counting the calls shows needless writes.
	statusUpdates, deploymentUpdates atomic.Int64
}

type operatorOption func(*ShardReconciler, *WebsiteReconciler)

// startOperator runs the operator in namespace ns (made if missing): its
// cache sees only that namespace, so tests cannot disturb each other.
func startOperator(t testing.TB, ns string, policy ShardPolicy, opts ...operatorOption) *operatorUnderTest {
	t.Helper()
	return startOperatorWithConfig(t, testConfig, ns, policy, opts...)
}

// startOperatorWithConfig runs the operator with its own client settings.
func startOperatorWithConfig(t testing.TB, cfg *rest.Config, ns string, policy ShardPolicy, opts ...operatorOption) *operatorUnderTest {
	t.Helper()
	ensureNamespace(t, ns)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller:             ctrlConfigForTests(),
	})
	if err != nil {
		t.Fatal(err)
	}
	plan := NewShardPlan()
	op := &operatorUnderTest{namespace: ns, plan: plan}
	counting := interceptor.NewClient(withoutWatch{mgr.GetClient()}, interceptor.Funcs{
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			err := c.SubResource(sub).Update(ctx, obj, opts...)
			if _, ok := obj.(*monitoringv1alpha1.Website); ok && sub == "status" && err == nil {
				op.statusUpdates.Add(1)
			}
			return err
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			err := c.Update(ctx, obj, opts...)
			if _, ok := obj.(*appsv1.Deployment); ok && err == nil {
				op.deploymentUpdates.Add(1)
			}
			return err
		},
	})
	shards := &ShardReconciler{
		Client: counting, Policy: policy, Plan: plan,
		Scheduler: SchedulerOptions{Namespace: ns, Image: "webmon:test", Replicas: 1, ServiceAccountName: "webmon-scheduler",
			Kafka: KafkaSettings{Brokers: []string{"kafka:9092"}, Topic: "webmon-tasks"}},
	}
	websites := &WebsiteReconciler{
		Client: counting, Plan: plan, SchedulerNamespace: ns,
		Recorder: mgr.GetEventRecorder("webmon-operator"), MaxConcurrentReconciles: 4,
	}
	for _, o := range opts {
		o(shards, websites)
	}
	if err := shards.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := websites.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	op.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	}
	t.Cleanup(func() {
		if op.stop != nil {
			op.stop()
		}
	})
	return op
}

// Stop stops the operator now, as a restart or crash would.
func (op *operatorUnderTest) Stop() {
	op.stop()
	op.stop = nil
}

func ensureNamespace(t testing.TB, ns string) {
	t.Helper()
	err := k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	eventuallyEvery(t, 50*time.Millisecond, timeout, what, cond)
}

// eventuallyEvery polls cond every interval until it holds or timeout passes.
func eventuallyEvery(t testing.TB, interval, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	var lastErr error
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		lastErr = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %v (last error: %v)", timeout, what, err, lastErr)
	}
}

// markAvailable plays the Deployment controller, which envtest does not run.
func markAvailable(t testing.TB, ns, name string) {
	t.Helper()
	eventually(t, 10*time.Second, "Deployment "+name+" to exist", func() (bool, error) {
		d := &appsv1.Deployment{}
		if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return false, err
		}
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		return true, k8sClient.Status().Update(context.Background(), d)
	})
}

// withoutWatch lets the interceptor wrap the manager's cached client, which
// the reconcilers never use to watch.
type withoutWatch struct{ client.Client }

func (withoutWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("the operator's client does not watch")
}
