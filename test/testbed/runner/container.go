package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// container runs one container's process, again and again as its pod's
// restartPolicy says. Its state is guarded by its pod worker's mu.
type container struct {
	w        *podWorker
	spec     corev1.Container
	init     bool // an init container, or a sidecar
	sidecar  bool // an init container with restartPolicy Always
	logFile  string
	addrs    map[string]string
	proc     *os.Process
	restarts int32
	state    corev1.ContainerState
	last     corev1.ContainerState
	ready    bool
	started  bool
	killed   bool   // outlived its grace period
	id       string // of the last process, for container statuses
}

func newContainer(w *podWorker, spec corev1.Container, init bool) *container {
	return &container{
		w: w, spec: spec, init: init,
		sidecar: init && spec.RestartPolicy != nil && *spec.RestartPolicy == corev1.ContainerRestartPolicyAlways,
		logFile: w.r.LogFile(w.key, spec.Name),
		addrs:   map[string]string{},
		state:   corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
	}
}

// outcome is how one run of the process went.
type outcome struct {
	ran      bool // a process ran (or failed to exec), as opposed to a config error
	exitCode int32
	uptime   time.Duration
}

// run runs a long-running container (or sidecar) until its pod is
// terminated or its restartPolicy says it is done.
func (c *container) run() {
	backoff := initialBackoff
	for {
		o := c.runOnce()
		if c.w.terminating() {
			return
		}
		if o.ran && !c.restartable(o.exitCode) {
			return
		}
		if o.uptime >= backoffReset {
			backoff = initialBackoff
		}
		if o.ran {
			c.setWaiting("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container %s", backoff, c.spec.Name))
		}
		if !c.w.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// runToCompletion runs an init container until it exits 0, which it
// reports; under restartPolicy Never a failure fails the pod.
func (c *container) runToCompletion() bool {
	backoff := initialBackoff
	for {
		o := c.runOnce()
		if c.w.terminating() {
			return false
		}
		if o.ran && o.exitCode == 0 {
			return true
		}
		if o.ran && c.w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			c.w.mu.Lock()
			c.w.initFailed = true
			c.w.mu.Unlock()
			return false
		}
		if o.ran {
			c.setWaiting("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed init container %s", backoff, c.spec.Name))
		}
		if !c.w.sleep(backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (c *container) restartable(exitCode int32) bool {
	if c.sidecar {
		return true
	}
	switch c.w.pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// runOnce starts the process and waits for it to exit, or stops it when
// the pod is terminated.
func (c *container) runOnce() outcome {
	if c.w.terminating() {
		return outcome{}
	}
	prog, args, err := c.program()
	if err != nil {
		c.setWaiting("CreateContainerError", err.Error())
		return outcome{}
	}
	args, env, dir, err := c.environment(args)
	if err != nil {
		c.setWaiting("CreateContainerConfigError", err.Error())
		c.w.log.Info("cannot start container yet", "container", c.spec.Name, "error", err.Error())
		return outcome{}
	}
	log, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.setWaiting("CreateContainerError", err.Error())
		return outcome{}
	}
	defer func() { _ = log.Close() }()
	cmd := &exec.Cmd{Path: prog, Args: append([]string{prog}, args...), Env: env, Dir: dir, Stdout: log, Stderr: log,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// Should the runner die without stopping them (kill -9, a
			// crashed test), its processes die too.
			Pdeathsig: syscall.SIGKILL,
		}}
	startedAt := metav1.Now().Rfc3339Copy()
	c.note(log, "starting %s", filepath.Base(prog))
	if err := cmd.Start(); err != nil {
		c.setTerminated(128, "StartError", err.Error(), startedAt)
		return outcome{ran: true, exitCode: 128}
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.setRunning(cmd.Process, startedAt)
	probeDone := make(chan struct{})
	go c.probeReadiness(probeDone)

	select {
	case <-exited:
	case <-c.w.stop:
		c.stop(cmd.Process.Pid, exited)
	}
	close(probeDone)
	// Whatever the process left in its group goes with it, as with a
	// container.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	code := exitCode(cmd.ProcessState)
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	c.note(log, "exited with code %d", code)
	c.setTerminated(code, reason, "", startedAt)
	return outcome{ran: true, exitCode: code, uptime: time.Since(startedAt.Time)}
}

// stop sends SIGTERM to the process's group, and SIGKILL at the pod's
// deadline if it has not exited.
func (c *container) stop(pid int, exited <-chan struct{}) {
	c.w.mu.Lock()
	deadline := c.w.deadline
	c.w.mu.Unlock()
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		c.w.log.Error(err, "sending SIGTERM", "container", c.spec.Name)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		c.w.log.Info("grace period over: killing", "container", c.spec.Name)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		c.w.mu.Lock()
		c.killed = true
		c.w.mu.Unlock()
		<-exited
	}
}

// environment is the container's args, environment and working
// directory, with $(VAR)s expanded and paths and listen addresses
// rewritten.
func (c *container) environment(args []string) (_, env []string, dir string, err error) {
	vars, err := c.w.envFor(c.spec)
	if err != nil {
		return nil, nil, "", err
	}
	for i, a := range args {
		args[i] = expand(a, vars.lookup)
	}
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	mounts, err := c.mountsLocked()
	if err != nil {
		return nil, nil, "", err
	}
	if args, err = c.rewriteArgsLocked(args, mounts); err != nil {
		return nil, nil, "", err
	}
	if err := c.rewriteEnvLocked(vars, mounts); err != nil {
		return nil, nil, "", err
	}
	dir = filepath.Join(c.w.dir, "home")
	if p, ok := mounts.local(c.spec.WorkingDir); ok {
		dir = p
	}
	return args, c.w.baseEnvLocked(c).with(vars).list(), dir, nil
}

// program is the local binary for the container's command, and the args
// that come before the container's own.
func (c *container) program() (string, []string, error) {
	args := append([]string(nil), c.spec.Args...)
	if len(c.spec.Command) == 0 {
		return c.w.r.opts.Binary, args, nil
	}
	rest := append(append([]string(nil), c.spec.Command[1:]...), args...)
	name := filepath.Base(c.spec.Command[0])
	if name == "webmon" {
		return c.w.r.opts.Binary, rest, nil
	}
	if p, ok := c.w.r.opts.Commands[name]; ok {
		return p, rest, nil
	}
	return "", nil, fmt.Errorf("the local runner runs only webmon, not command %q", c.spec.Command[0])
}

func (c *container) note(log *os.File, format string, args ...any) {
	_, _ = fmt.Fprintf(log, "--- runner %s: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func (c *container) setWaiting(reason, message string) {
	c.w.mu.Lock()
	if c.state.Terminated != nil {
		c.last = c.state
	}
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	c.ready = false
	c.w.mu.Unlock()
	c.w.changed()
}

func (c *container) setRunning(p *os.Process, at metav1.Time) {
	c.w.mu.Lock()
	if c.started || c.state.Terminated != nil {
		c.restarts++
	}
	if c.state.Terminated != nil {
		c.last = c.state
	}
	c.proc, c.id = p, containerID(p)
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}
	c.started = true
	// Without a readiness probe a container is ready once it runs; init
	// containers are never ready, sidecars are.
	c.ready = c.spec.ReadinessProbe == nil && (!c.init || c.sidecar)
	c.w.mu.Unlock()
	c.w.log.Info("container started", "container", c.spec.Name, "pid", p.Pid)
	c.w.changed()
}

func (c *container) setTerminated(code int32, reason, message string, startedAt metav1.Time) {
	c.w.mu.Lock()
	c.proc = nil
	c.ready = false
	c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, Message: message, ContainerID: c.id,
		StartedAt: startedAt, FinishedAt: metav1.Now().Rfc3339Copy(),
	}}
	c.w.mu.Unlock()
	c.w.log.Info("container exited", "container", c.spec.Name, "exitCode", code)
	c.w.changed()
}

func (c *container) setReady(ready bool) {
	c.w.mu.Lock()
	changed := c.ready != ready && c.proc != nil
	if changed {
		c.ready = ready
	}
	c.w.mu.Unlock()
	if changed {
		c.w.changed()
	}
}

// signal sends sig to the container's process group, if it runs.
func (c *container) signal(sig syscall.Signal) bool {
	c.w.mu.Lock()
	p := c.proc
	c.w.mu.Unlock()
	return p != nil && syscall.Kill(-p.Pid, sig) == nil
}

func (c *container) snapshot() Container {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	s := Container{Name: c.spec.Name, Restarts: c.restarts, LogFile: c.logFile, Addrs: map[string]string{}}
	if c.proc != nil {
		s.Pid = c.proc.Pid
	}
	for k, v := range c.addrs {
		s.Addrs[k] = v
	}
	return s
}

func (c *container) localPath(p string) (string, bool) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	mounts, err := c.mountsLocked()
	if err != nil {
		return "", false
	}
	return mounts.local(p)
}

// exitCode is the process's exit code, 128+n for a death by signal n as
// container runtimes report it.
func exitCode(s *os.ProcessState) int32 {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(s.ExitCode())
}

// containerID names the process in container statuses.
func containerID(p *os.Process) string {
	return "local://" + strconv.Itoa(p.Pid)
}
