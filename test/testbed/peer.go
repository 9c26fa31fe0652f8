package testbed

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Peer is the test binary run again as a helper process of a benchmark
// (its broker, its target servers), so that the CPU time and memory it
// spends are not the measured process's.
type Peer struct {
	Pid int
	// Values are the key=value lines it printed when it was ready.
	Values map[string]string
}

// StartPeer runs the test binary again with env (NAME=value) set, which
// its TestMain turns into the helper (see ServePeer). It returns once the
// helper has printed every key in ready; the helper stops with the test,
// and dies with the test process.
func StartPeer(t testing.TB, env string, ready ...string) *Peer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	p := &Peer{Pid: cmd.Process.Pid, Values: map[string]string{}}
	missing := func() bool {
		for _, key := range ready {
			if _, ok := p.Values[key]; !ok {
				return true
			}
		}
		return false
	}
	lines := bufio.NewScanner(stdout)
	for missing() && lines.Scan() {
		if key, value, ok := strings.Cut(lines.Text(), "="); ok {
			p.Values[key] = value
		}
	}
	if missing() {
		t.Fatalf("the helper process (%s) did not start", env)
	}
	return p
}

// List is a comma-separated value of the peer's.
func (p *Peer) List(key string) []string { return strings.Split(p.Values[key], ",") }

// ServePeer is the helper's side of StartPeer: it prints values
// (key=value) and returns once the test is done with it.
func ServePeer(values ...string) {
	for _, v := range values {
		fmt.Println(v)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}
