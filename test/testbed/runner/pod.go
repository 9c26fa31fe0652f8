package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Container restarts back off exponentially, as the kubelet's do, but
// capped low: a test bed should recover in seconds.
const (
	initialBackoff = time.Second
	maxBackoff     = 10 * time.Second
	// A container that ran this long starts its next backoff afresh.
	backoffReset = time.Minute
)

// podWorker runs one pod: prepares its volumes and credentials, runs its
// init containers in turn and then its containers, and reports its status.
type podWorker struct {
	r   *Runner
	key types.NamespacedName
	uid types.UID
	dir string // pods/<ns>_<name>_<uid>
	log logr.Logger

	pod        *corev1.Pod // as first seen; a pod's spec does not change
	inits      []*container
	containers []*container // sidecars (restartable init containers) first

	stop     chan struct{} // closed by terminate
	stopOnce sync.Once
	dirty    chan struct{} // a status change to write
	done     chan struct{} // closed when every process has ended

	mu          sync.Mutex
	started     metav1.Time
	volumes     map[string]string // volume name -> local folder
	kubeconfig  string
	prepareErr  string
	initialized bool
	initFailed  bool
	deadline    time.Time // when terminating: SIGKILL after
	shutdown    bool      // the runner stops: leave the pod as it is
}

func newPodWorker(r *Runner, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		r:     r,
		key:   types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
		uid:   pod.UID,
		dir:   filepath.Join(r.opts.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
		log:   r.log.WithValues("pod", klog.KObj(pod)),
		pod:   pod.DeepCopy(),
		stop:  make(chan struct{}),
		dirty: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			w.containers = append(w.containers, newContainer(w, c, true))
		} else {
			w.inits = append(w.inits, newContainer(w, c, true))
		}
	}
	for _, c := range pod.Spec.Containers {
		w.containers = append(w.containers, newContainer(w, c, false))
	}
	w.resume(pod.Status)
	return w
}

// resume carries on the restart counts a runner that stopped had written:
// the processes it starts now are restarts.
func (w *podWorker) resume(s corev1.PodStatus) {
	for _, st := range append(append([]corev1.ContainerStatus(nil), s.InitContainerStatuses...), s.ContainerStatuses...) {
		for _, c := range w.all() {
			if c.spec.Name == st.Name && (st.State.Running != nil || st.State.Terminated != nil || st.RestartCount > 0) {
				c.restarts, c.started, c.last = st.RestartCount, true, st.LastTerminationState
			}
		}
	}
}

func (w *podWorker) run() {
	w.log.Info("starting pod")
	w.mu.Lock()
	w.started = metav1.Now().Rfc3339Copy()
	w.mu.Unlock()
	statusDone, statusExited := make(chan struct{}), make(chan struct{})
	go w.writeStatusLoop(statusDone, statusExited)
	defer func() {
		close(statusDone)
		<-statusExited
		w.finish()
	}()

	if !w.prepareUntilDone() {
		return
	}
	for _, c := range w.inits {
		if !c.runToCompletion() {
			return
		}
	}
	w.mu.Lock()
	w.initialized = true
	w.mu.Unlock()
	w.changed()
	var wg sync.WaitGroup
	for _, c := range w.containers {
		wg.Go(c.run)
	}
	wg.Wait()
}

// prepareUntilDone writes the pod's volumes and kubeconfig, retrying as
// the kubelet does while a Secret or ConfigMap is missing. It is false if
// the pod was terminated first.
func (w *podWorker) prepareUntilDone() bool {
	backoff := initialBackoff
	for {
		err := w.prepare(w.r.ctx)
		w.mu.Lock()
		w.prepareErr = ""
		if err != nil {
			w.prepareErr = err.Error()
		}
		w.mu.Unlock()
		w.changed()
		if err == nil {
			return true
		}
		w.log.Info("cannot prepare the pod yet", "error", err.Error())
		if !w.sleep(backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *podWorker) prepare(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(w.dir, "home"), 0o700); err != nil {
		return err
	}
	volumes, err := w.writeVolumes(ctx)
	if err != nil {
		return err
	}
	kubeconfig := ""
	if w.wantsCredentials() {
		if kubeconfig, err = w.writeKubeconfig(ctx); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.volumes, w.kubeconfig = volumes, kubeconfig
	w.mu.Unlock()
	return nil
}

// finish writes the pod's last status, unless the runner is stopping,
// removes its volumes (they hold Secrets) and has the runner look again.
func (w *podWorker) finish() {
	w.mu.Lock()
	shutdown := w.shutdown
	w.mu.Unlock()
	if !shutdown {
		w.writeFinalStatus()
	}
	if err := os.RemoveAll(w.dir); err != nil {
		w.log.Error(err, "removing the pod's folder")
	}
	w.log.Info("pod stopped")
	close(w.done)
	w.r.workerDone(w.key)
}

// writeFinalStatus insists: nothing would write the pod's terminal phase
// later.
func (w *podWorker) writeFinalStatus() {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 6}
	err := wait.ExponentialBackoffWithContext(w.r.ctx, backoff, func(ctx context.Context) (bool, error) {
		err := w.writeStatus(ctx)
		if err != nil {
			w.log.V(1).Info("writing the final status, retrying", "error", err.Error())
		}
		return err == nil, nil
	})
	if err != nil {
		w.log.Error(err, "writing the final status")
	}
}

// terminate stops the pod's processes: SIGTERM now, SIGKILL after grace.
// With shutdown, the pod's status is left as it is.
func (w *podWorker) terminate(grace time.Duration, shutdown bool) {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.deadline = time.Now().Add(grace)
		w.shutdown = shutdown
		w.mu.Unlock()
		w.log.Info("terminating pod", "grace", grace.String())
		close(w.stop)
	})
}

func (w *podWorker) terminating() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *podWorker) finished() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// gracePeriod is the pod's termination grace period, from its deletion
// if given, capped by the runner's maximum.
func (w *podWorker) gracePeriod(deleted *corev1.Pod) time.Duration {
	secs := int64(30)
	if s := w.pod.Spec.TerminationGracePeriodSeconds; s != nil {
		secs = *s
	}
	if deleted != nil && deleted.DeletionGracePeriodSeconds != nil {
		secs = *deleted.DeletionGracePeriodSeconds
	}
	return min(time.Duration(secs)*time.Second, w.r.opts.MaxGracePeriod)
}

// sleep waits d unless the pod is terminated first, which it reports as false.
func (w *podWorker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		return false
	}
}

// all are the pod's containers, init containers first.
func (w *podWorker) all() []*container {
	return append(append([]*container(nil), w.inits...), w.containers...)
}

// changed asks for the pod's status to be written.
func (w *podWorker) changed() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

func (w *podWorker) snapshot(name string) (Container, bool) {
	for _, c := range w.all() {
		if c.spec.Name == name {
			return c.snapshot(), true
		}
	}
	return Container{}, false
}

func (w *podWorker) addr(port string) (string, bool) {
	for _, c := range w.containers {
		if a, ok := c.snapshot().Addrs[port]; ok {
			return a, true
		}
	}
	return "", false
}

func (w *podWorker) localPath(container, p string) (string, bool) {
	for _, c := range w.all() {
		if c.spec.Name == container {
			return c.localPath(p)
		}
	}
	return "", false
}

func (w *podWorker) signal(sig syscall.Signal) error {
	sent := 0
	for _, c := range w.all() {
		if c.signal(sig) {
			sent++
		}
	}
	if sent == 0 {
		return fmt.Errorf("runner: pod %s has no running process", w.key)
	}
	w.log.Info("signalled the pod's processes", "signal", sig.String())
	return nil
}

// killed lists the containers that outlived the grace period.
func (w *podWorker) killed() []error {
	var errs []error
	for _, c := range w.all() {
		w.mu.Lock()
		if c.killed {
			errs = append(errs, fmt.Errorf("pod %s container %s did not stop within its grace period and was killed", w.key, c.spec.Name))
		}
		w.mu.Unlock()
	}
	return errs
}
