package system

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Broker is the embedded Kafka broker as a process of its own (`webmon
// dev-broker`), keeping its topics and committed offsets in a folder, so
// that a test can kill it and start it again on the same port, as a Kafka
// outage would.
type Broker struct {
	// Addr is its host:port.
	Addr string

	binary, dataDir, logFile string
	partitions               int

	mu   sync.Mutex // guards cmd and done, which each start replaces
	cmd  *exec.Cmd
	done chan struct{}
}

// startBroker starts the broker on a free port with partitions per topic
// by default, keeping its data in dataDir and its log in logFile.
func startBroker(ctx context.Context, binary, dataDir, logFile string, partitions int) (*Broker, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	b := &Broker{Addr: addr, binary: binary, dataDir: dataDir, logFile: logFile, partitions: partitions}
	return b, b.Start(ctx)
}

// Start starts the broker (again), on its port with its data, and waits
// until it takes connections.
func (b *Broker) Start(ctx context.Context) error {
	if b.Running() {
		return errors.New("the broker is running already")
	}
	out, err := os.OpenFile(b.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(b.Addr)
	cmd := exec.Command(b.binary, "dev-broker", "--port", port, "--partitions", strconv.Itoa(b.partitions), "--data-dir", b.dataDir)
	cmd.Stdout, cmd.Stderr = out, out
	// Dies with the test process, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("starting the broker: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
	}()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if !b.Running() {
			return false, fmt.Errorf("the broker exited; see %s", b.logFile)
		}
		conn, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the broker on %s: %w", b.Addr, err)
	}
	return nil
}

// Kill kills the broker with SIGKILL and waits for it to be gone.
func (b *Broker) Kill() error {
	return b.signal(syscall.SIGKILL)
}

// Stop stops the broker with SIGTERM (it flushes its data) and waits.
func (b *Broker) Stop() error {
	return b.signal(syscall.SIGTERM)
}

func (b *Broker) signal(sig syscall.Signal) error {
	cmd, done := b.process()
	if exited(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("the broker did not stop on %s within 20s and was killed", sig)
	}
}

func (b *Broker) process() (*exec.Cmd, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd, b.done
}

// Running reports whether the broker's process is alive.
func (b *Broker) Running() bool {
	_, done := b.process()
	return !exited(done)
}

// exited: nil is a process never started.
func exited(done chan struct{}) bool {
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Pid is the broker's process id, 0 when it is not running.
func (b *Broker) Pid() int {
	cmd, done := b.process()
	if exited(done) {
		return 0
	}
	return cmd.Process.Pid
}
