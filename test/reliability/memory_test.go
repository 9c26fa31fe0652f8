package reliability

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// components are webmon's containers, as the runner names them, and the
// broker.
var components = []string{"operator", "scheduler", "checker", "broker"}

// memory samples the resident set size of every process of webmon's pods
// and of the broker from /proc, four times a second, and keeps each
// component's peak (its largest process) for each peaks being tracked.
type memory struct {
	s *sys.System

	mu      sync.Mutex
	tracked map[*peaks]bool
}

// peaks are the largest resident set sizes seen, by component, since
// memory.track.
type peaks struct {
	m     *memory
	bytes map[string]int64
}

func startMemory(ctx context.Context, s *sys.System) *memory {
	m := &memory{s: s, tracked: map[*peaks]bool{}}
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *memory) sample() {
	rss := map[string]int64{}
	for _, pod := range m.s.Runner.Pods() {
		for _, name := range components[:3] {
			if c, ok := m.s.Runner.Container(pod, name); ok && c.Pid > 0 {
				rss[name] = max(rss[name], residentBytes(c.Pid))
			}
		}
	}
	if pid := m.s.Broker.Pid(); pid > 0 {
		rss["broker"] = residentBytes(pid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.tracked {
		for name, v := range rss {
			p.bytes[name] = max(p.bytes[name], v)
		}
	}
}

// track starts keeping peaks.
func (m *memory) track() *peaks {
	p := &peaks{m: m, bytes: map[string]int64{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tracked[p] = true
	return p
}

// stop ends the tracking and returns the peaks, sampling once more.
func (p *peaks) stop() map[string]int64 {
	p.m.sample()
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	delete(p.m.tracked, p)
	return p.bytes
}

// residentBytes is a process's VmRSS, 0 if it is gone.
func residentBytes(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
