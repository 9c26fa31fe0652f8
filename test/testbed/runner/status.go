package runner

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// writeStatusLoop writes the pod's status whenever it changes, until done;
// it closes exited when it has returned.
func (w *podWorker) writeStatusLoop(done <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	for {
		select {
		case <-done:
			return
		case <-w.dirty:
			if err := w.writeStatus(w.r.ctx); err != nil && w.r.ctx.Err() == nil {
				w.log.Error(err, "writing the pod's status")
			}
		}
	}
}

// writeStatus writes what the runner knows of the pod into its status,
// keeping what others wrote (the scheduler's PodScheduled condition), and
// only if that changes it.
func (w *podWorker) writeStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := w.r.cs.CoreV1().Pods(w.key.Namespace).Get(ctx, w.key.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && pod.UID != w.uid {
			return nil
		}
		if err != nil {
			return err
		}
		w.mu.Lock()
		status := w.statusLocked(pod.Status)
		w.mu.Unlock()
		if equality.Semantic.DeepEqual(pod.Status, status) {
			return nil
		}
		pod.Status = status
		_, err = w.r.cs.CoreV1().Pods(w.key.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// statusLocked is the pod's status with the runner's part brought up to date.
func (w *podWorker) statusLocked(old corev1.PodStatus) corev1.PodStatus {
	s := *old.DeepCopy()
	s.Phase = w.phaseLocked()
	s.HostIP, s.HostIPs = localIP, []corev1.HostIP{{IP: localIP}}
	s.PodIP, s.PodIPs = localIP, []corev1.PodIP{{IP: localIP}}
	s.StartTime = ptr.To(w.started)
	s.InitContainerStatuses = nil
	for _, c := range w.pod.Spec.InitContainers {
		s.InitContainerStatuses = append(s.InitContainerStatuses, w.containerStatusLocked(c.Name))
	}
	s.ContainerStatuses = nil
	for _, c := range w.pod.Spec.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, w.containerStatusLocked(c.Name))
	}
	for _, c := range w.conditionsLocked(s.Phase) {
		setCondition(&s, c)
	}
	return s
}

// phaseLocked follows the kubelet: Pending until every container has
// started, Running while any runs or will restart, and once all have
// exited for good, Succeeded if all exited 0 and Failed otherwise.
func (w *podWorker) phaseLocked() corev1.PodPhase {
	if w.initFailed {
		return corev1.PodFailed
	}
	if w.terminating() {
		return w.terminatingPhaseLocked()
	}
	if !w.initialized {
		return corev1.PodPending
	}
	var running, waiting, failed int
	for _, c := range w.containers {
		switch {
		case c.sidecar:
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil:
			if c.state.Terminated.ExitCode != 0 {
				failed++
			}
		case c.started || c.last.Terminated != nil:
			running++ // backing off before a restart
		default:
			waiting++
		}
	}
	policy := w.pod.Spec.RestartPolicy
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case failed > 0 && policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	case failed == 0 && policy != corev1.RestartPolicyAlways:
		return corev1.PodSucceeded
	}
	return corev1.PodRunning
}

// terminatingPhaseLocked is the phase of a pod being stopped: as it was
// while a process runs, and terminal once none does, as the kubelet
// leaves a deleted pod: Succeeded only if every container exited 0.
func (w *podWorker) terminatingPhaseLocked() corev1.PodPhase {
	for _, c := range w.all() {
		if c.proc != nil && w.initialized {
			return corev1.PodRunning
		}
		if c.proc != nil {
			return corev1.PodPending
		}
	}
	for _, c := range w.containers {
		if t := c.state.Terminated; !c.sidecar && (t == nil || t.ExitCode != 0) {
			return corev1.PodFailed
		}
	}
	return corev1.PodSucceeded
}

func (w *podWorker) containerStatusLocked(name string) corev1.ContainerStatus {
	for _, c := range w.all() {
		if c.spec.Name != name {
			continue
		}
		st := corev1.ContainerStatus{
			Name: name, Image: c.spec.Image, ContainerID: c.id,
			Ready: c.ready, Started: ptr.To(c.state.Running != nil), RestartCount: c.restarts,
			State: *c.state.DeepCopy(), LastTerminationState: *c.last.DeepCopy(),
		}
		if c.init && !c.sidecar {
			st.Ready = c.state.Terminated != nil && c.state.Terminated.ExitCode == 0
		}
		if wt := st.State.Waiting; wt != nil && wt.Reason == "ContainerCreating" {
			switch {
			case w.prepareErr != "":
				wt.Message = w.prepareErr
			case !c.init && !w.initialized && len(w.inits) > 0:
				wt.Reason = "PodInitializing"
			}
		}
		return st
	}
	return corev1.ContainerStatus{Name: name}
}

// conditionsLocked are the conditions the kubelet owns.
func (w *podWorker) conditionsLocked(phase corev1.PodPhase) []corev1.PodCondition {
	var unready []string
	for _, c := range w.containers {
		if !c.ready {
			unready = append(unready, c.spec.Name)
		}
	}
	ready := condition(corev1.ContainersReady, len(unready) == 0 && phase == corev1.PodRunning,
		"ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " ")))
	if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
		ready.Reason, ready.Message = "PodCompleted", ""
	}
	podReady := ready
	podReady.Type = corev1.PodReady
	return []corev1.PodCondition{
		condition(corev1.PodReadyToStartContainers, w.volumes != nil, "", ""),
		condition(corev1.PodInitialized, w.initialized, "ContainersNotInitialized", "containers with incomplete status: init containers"),
		ready,
		podReady,
	}
}

func condition(t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
	if ok {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
	}
	return corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message}
}

// setCondition sets a condition, moving its transition time only when its
// status changes.
func setCondition(s *corev1.PodStatus, c corev1.PodCondition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type != c.Type {
			continue
		}
		c.LastTransitionTime = s.Conditions[i].LastTransitionTime
		if s.Conditions[i].Status != c.Status {
			c.LastTransitionTime = metav1.Now().Rfc3339Copy()
		}
		c.LastProbeTime = s.Conditions[i].LastProbeTime
		s.Conditions[i] = c
		return
	}
	c.LastTransitionTime = metav1.Now().Rfc3339Copy()
	s.Conditions = append(s.Conditions, c)
}
