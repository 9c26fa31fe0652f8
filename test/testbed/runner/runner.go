// Package runner is a stand-in for the kubelet of the test bed's fake node:
// it runs the pods of webmon's own Deployments and Jobs as local processes,
// so that the operator, the scheduler Deployments it makes and the checkers
// their HPA scales run for real, the container runtime aside.
//
// It watches the pods bound to one node that match a label selector. For
// each container it starts the local webmon binary (images are ignored)
// with the container's args and an environment built as the kubelet builds
// it: values, Secret and ConfigMap references, the downward API, $(VAR)
// expansion, and nothing of the runner's own environment but PATH and
// TMPDIR. The pod's volumes are written into a folder of its own, and a
// kubeconfig with a token of the pod's ServiceAccount makes the process act
// as that account. The runner writes the pods' status (phase, readiness
// from their readiness probes, container states, restart counts), restarts
// containers as their restartPolicy says, stops them with SIGTERM and then
// SIGKILL when their pod is deleted, and then deletes the pod as a kubelet
// does.
//
// Because the processes share one filesystem and one network, it differs
// from a kubelet in two deliberate ways:
//   - an arg or env value that is a path under one of the container's
//     mountPaths (or a --flag= whose value is) is rewritten to where that
//     volume was written on this machine; see Path;
//   - listen addresses, --*-bind-address=[HOST]:PORT and --port=N (and their
//     WEBMON_* variables), are rewritten to free loopback ports; see Addr.
//
// What it does not do: liveness, startup and exec probes; security
// contexts and resource limits (processes run as the runner's user);
// Service environment variables and cluster DNS; starting sidecars before
// later init containers (they start with the containers); refreshing
// Secret volumes and tokens.
//
// kwok must leave these pods alone: start the control plane with
// controlplane.Options.LocalPods set to the runner's selector.
package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/webmon-dev/webmon/test/testbed/controlplane"
)

// DefaultSelector selects webmon's pods: the chart's, and the scheduler
// pods the operator makes, which carry no app.kubernetes.io/part-of.
const DefaultSelector = "app.kubernetes.io/name=webmon"

const (
	defaultMaxGrace = 30 * time.Second
	syncTimeout     = 30 * time.Second
)

// Options configure a Runner.
type Options struct {
	// Config is the runner's own access to the API server, an admin's: it
	// watches pods, reads their Secrets and ConfigMaps, requests their
	// tokens and writes their status.
	Config *rest.Config
	// Binary is the local webmon binary, run for every container whose
	// command is empty or names webmon.
	Binary string
	// Commands are other local programs, by the base name of a container's
	// command[0] (a test's helper, say). Containers whose command is neither
	// webmon nor one of these wait with CreateContainerError.
	Commands map[string]string
	// Dir holds logs/ (a log per pod and container) and pods/ (each running
	// pod's volumes and kubeconfig).
	Dir string
	// Selector is the label selector of the pods to run; DefaultSelector if
	// empty.
	Selector string
	// Node is the node whose pods run here; controlplane.NodeName if empty.
	Node string
	// MaxGracePeriod caps a pod's termination grace period; 30 s if zero.
	MaxGracePeriod time.Duration
	// Log receives what the runner does; discarded if zero.
	Log logr.Logger
}

// Runner runs the pods of one node as local processes.
type Runner struct {
	opts     Options
	cs       kubernetes.Interface
	caData   []byte
	lister   corelisters.PodLister
	queue    workqueue.TypedRateLimitingInterface[types.NamespacedName]
	log      logr.Logger
	ctx      context.Context // ends with Stop
	cancel   context.CancelFunc
	loopDone chan struct{}

	portsMu sync.Mutex
	ports   map[int]bool // handed out

	mu       sync.Mutex // before any pod worker's
	pods     map[types.NamespacedName]*podWorker
	stopping bool
	workers  sync.WaitGroup
}

// Start watches the node's pods and returns once it has seen those that
// exist; ctx bounds only the start. The runner runs until Stop.
func Start(ctx context.Context, opts Options) (*Runner, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	selector, err := labels.Parse(opts.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", opts.Selector, err)
	}
	caData, err := readCA(opts.Config)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "pods"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cs, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, err
	}
	r := &Runner{
		opts: opts, cs: cs, caData: caData, log: opts.Log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](200*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "runner"}),
		pods:     map[types.NamespacedName]*podWorker{},
		loopDone: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.watch(ctx, selector); err != nil {
		r.cancel()
		r.queue.ShutDown()
		return nil, err
	}
	go r.loop()
	r.log.Info("running pods", "node", opts.Node, "selector", opts.Selector, "dir", opts.Dir)
	return r, nil
}

func (o *Options) complete() error {
	if o.Config == nil || o.Binary == "" || o.Dir == "" {
		return errors.New("runner: Config, Binary and Dir are required")
	}
	if o.Selector == "" {
		o.Selector = DefaultSelector
	}
	if o.Node == "" {
		o.Node = controlplane.NodeName
	}
	if o.MaxGracePeriod == 0 {
		o.MaxGracePeriod = defaultMaxGrace
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	var err error
	o.Dir, err = filepath.Abs(o.Dir)
	return err
}

// watch starts an informer on the node's selected pods and waits for it to
// list them.
func (r *Runner) watch(ctx context.Context, selector labels.Selector) error {
	factory := informers.NewSharedInformerFactoryWithOptions(r.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", r.opts.Node).String()
		o.LabelSelector = selector.String()
	}))
	pods := factory.Core().V1().Pods()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			ns, name, _ := cache.SplitMetaNamespaceKey(key)
			r.queue.Add(types.NamespacedName{Namespace: ns, Name: name})
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	r.lister = pods.Lister()
	factory.Start(r.ctx.Done())
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
		return fmt.Errorf("runner: listing the pods of node %s: %w", r.opts.Node, context.Cause(ctx))
	}
	return nil
}

// Stop stops every process, SIGTERM then SIGKILL after the pod's grace
// period, and the watch. Pods keep their last status, as with a kubelet
// that stops. It reports processes that had to be killed.
func (r *Runner) Stop() error {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		return nil
	}
	r.stopping = true
	r.mu.Unlock()
	r.cancel()
	r.queue.ShutDown()
	<-r.loopDone

	r.mu.Lock()
	workers := make([]*podWorker, 0, len(r.pods))
	for _, w := range r.pods {
		workers = append(workers, w)
	}
	r.mu.Unlock()
	for _, w := range workers {
		w.terminate(w.gracePeriod(nil), true)
	}
	r.workers.Wait()
	var errs []error
	for _, w := range workers {
		errs = append(errs, w.killed()...)
	}
	r.log.Info("stopped")
	return errors.Join(errs...)
}

func (r *Runner) loop() {
	defer close(r.loopDone)
	for r.next() {
	}
}

func (r *Runner) next() bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	if err := r.sync(key); err != nil {
		if r.ctx.Err() == nil {
			r.log.Error(err, "syncing pod", "pod", key)
		}
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

// sync brings the pod's processes in line with the pod.
func (r *Runner) sync(key types.NamespacedName) error {
	pod, err := r.lister.Pods(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		pod, err = nil, nil
	}
	if err != nil {
		return err
	}
	if r.decide(key, pod) {
		return r.finishDeletion(pod)
	}
	return nil
}

// decide is the only place that starts, terminates and forgets pod
// workers. It reports whether the pod is deleted and nothing of it runs.
func (r *Runner) decide(key types.NamespacedName, pod *corev1.Pod) (finishDeletion bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return false
	}
	w := r.pods[key]
	switch {
	case w != nil && (pod == nil || pod.UID != w.uid):
		// Gone, or replaced by a pod of the same name: the old one's
		// processes stop first; the end of its worker requeues the key.
		w.terminate(w.gracePeriod(nil), false)
		if w.finished() {
			delete(r.pods, key)
			if pod != nil {
				r.queue.Add(key)
			}
		}
		return false
	case pod == nil:
		return false
	case pod.DeletionTimestamp != nil:
		if w != nil && !w.finished() {
			w.terminate(w.gracePeriod(pod), false)
			return false
		}
		delete(r.pods, key)
		return true
	case w != nil, pod.Status.Phase == corev1.PodSucceeded, pod.Status.Phase == corev1.PodFailed:
		return false
	}
	w = newPodWorker(r, pod)
	r.pods[key] = w
	r.workers.Add(1)
	go func() {
		defer r.workers.Done()
		w.run()
	}()
	return false
}

// finishDeletion removes a deleted pod whose processes have stopped, as
// the kubelet does, so that it does not stay Terminating.
func (r *Runner) finishDeletion(pod *corev1.Pod) error {
	err := r.cs.CoreV1().Pods(pod.Namespace).Delete(r.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.log.V(1).Info("pod deleted", "pod", klog.KObj(pod))
	return nil
}

// Container is a snapshot of one container's process.
type Container struct {
	// Name is the container's.
	Name string
	// Pid is its process id; 0 when it is not running.
	Pid int
	// Restarts counts its restarts.
	Restarts int32
	// LogFile holds its stdout and stderr, across restarts.
	LogFile string
	// Addrs are its rewritten listen addresses (127.0.0.1:port), by the
	// name and the number of the containerPort they stand for and by the
	// flag they were given with (metrics-bind-address, port).
	Addrs map[string]string
}

// Pods are the pods the runner has processes or a record of, sorted.
func (r *Runner) Pods() []types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]types.NamespacedName, 0, len(r.pods))
	for k := range r.pods {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

// Container describes a container of a pod the runner runs.
func (r *Runner) Container(pod types.NamespacedName, container string) (Container, bool) {
	w := r.worker(pod)
	if w == nil {
		return Container{}, false
	}
	return w.snapshot(container)
}

// Addr is the local address of a pod's port, by containerPort name or
// number or by flag (see Container.Addrs), searching its containers in
// order.
func (r *Runner) Addr(pod types.NamespacedName, port string) (string, bool) {
	w := r.worker(pod)
	if w == nil {
		return "", false
	}
	return w.addr(port)
}

// Path is where a path inside a container of the pod is on this machine,
// if it is under one of the container's volume mounts.
func (r *Runner) Path(pod types.NamespacedName, container, path string) (string, bool) {
	w := r.worker(pod)
	if w == nil {
		return "", false
	}
	return w.localPath(container, path)
}

// LogFile is the log of a pod's container, kept after the pod is gone.
func (r *Runner) LogFile(pod types.NamespacedName, container string) string {
	return filepath.Join(r.opts.Dir, "logs", pod.Namespace+"_"+pod.Name+"_"+container+".log")
}

// Kill sends sig to the processes of every running container of the pod,
// for fault injection: what follows is what the pod's restartPolicy says.
func (r *Runner) Kill(pod types.NamespacedName, sig syscall.Signal) error {
	w := r.worker(pod)
	if w == nil {
		return fmt.Errorf("runner: no pod %s", pod)
	}
	return w.signal(sig)
}

func (r *Runner) worker(pod types.NamespacedName) *podWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[pod]
}

// workerDone is called by a worker whose processes have all ended.
func (r *Runner) workerDone(key types.NamespacedName) {
	r.queue.Add(key)
}

func readCA(cfg *rest.Config) ([]byte, error) {
	if len(cfg.CAData) > 0 || cfg.CAFile == "" {
		return cfg.CAData, nil
	}
	b, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's CA: %w", err)
	}
	return b, nil
}
