package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is one server of the control plane, in its own process group so
// that a stop reaches anything it spawned.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	done    chan struct{}
	err     error // set when done closes
	// ready reports whether the server serves, if it can tell.
	ready func(context.Context) (bool, error)
}

func startProcess(name, logDir, bin string, args ...string) (*process, error) {
	logFile := filepath.Join(logDir, name+".log")
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	return run(name, logFile, out, bin, args...)
}

// restarted starts the process again with the same command line, its log
// carrying on in the same file.
func (p *process) restarted() (*process, error) {
	out, err := os.OpenFile(p.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	np, err := run(p.name, p.logFile, out, p.cmd.Path, p.cmd.Args[1:]...)
	if err == nil {
		np.ready = p.ready
	}
	return np, err
}

func run(name, logFile string, out *os.File, bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the process that started the control plane dies without
		// stopping it (kill -9, a crashed test), the servers die too.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to terminate, and kills its group if it has not
// exited within grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	pgid := -p.cmd.Process.Pid
	if err := syscall.Kill(pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s and was killed", p.name, grace)
	}
	// Anything left in its group (helpers it spawned) goes with it.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	return nil
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
