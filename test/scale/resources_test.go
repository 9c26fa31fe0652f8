package scale

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/webmon-dev/webmon/test/testbed"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// Pod name prefixes of webmon's components, as the chart names them.
const (
	operatorPrefix  = sys.Release + "-operator-"
	schedulerPrefix = "webmon-scheduler-"
	checkerPrefix   = sys.Release + "-checker-"
)

// components whose CPU and memory the run reports, in report order.
var components = []string{"operator", "scheduler", "checker", "broker", "postgres", "targets", "apiserver", "harness"}

// resources finds each component's processes and reads their CPU time and
// memory from /proc.
type resources struct {
	s       *sys.System
	targets int // the target servers' process

	mu       sync.Mutex
	peakPss  int64 // PostgreSQL's, summed over its processes
	sampling sync.WaitGroup
}

// pids are each component's live processes.
func (r *resources) pids() map[string][]int {
	p := map[string][]int{
		"broker":  {r.s.Broker.Pid()},
		"targets": {r.targets},
		"harness": {os.Getpid()},
	}
	for name, prefix := range map[string]string{"operator": operatorPrefix, "scheduler": schedulerPrefix, "checker": checkerPrefix} {
		for _, pid := range r.s.Processes(prefix, name) {
			p[name] = append(p[name], pid)
		}
	}
	cp := r.s.CP.Pids()
	p["apiserver"] = []int{cp["kube-apiserver"], cp["etcd"]}
	if pm := r.s.Postgres.Pid(); pm > 0 {
		p["postgres"] = append([]int{pm}, childrenOf(pm)...)
	}
	return p
}

// cpuSnapshot is every process's CPU time at a moment, by component.
type cpuSnapshot map[string]map[int]time.Duration

func (r *resources) cpu() cpuSnapshot {
	snap := cpuSnapshot{}
	for name, pids := range r.pids() {
		snap[name] = map[int]time.Duration{}
		for _, pid := range pids {
			if st, ok := testbed.ReadProcStat(pid); ok {
				// A postmaster's children's time covers the backends
				// that ended.
				snap[name][pid] = st.CPU + st.Children
			}
		}
	}
	return snap
}

// cpuSince is each component's CPU time between two snapshots; a process
// that started in between counts all of its time.
func cpuSince(start, end cpuSnapshot) map[string]time.Duration {
	used := map[string]time.Duration{}
	for name, procs := range end {
		for pid, t := range procs {
			used[name] += t - start[name][pid]
		}
	}
	return used
}

// samplePostgres keeps the peak of PostgreSQL's summed PSS, every second
// until ctx ends.
func (r *resources) samplePostgres(ctx context.Context) {
	r.sampling.Add(1)
	go func() {
		defer r.sampling.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			r.samplePss()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func (r *resources) samplePss() {
	var sum int64
	for _, pid := range r.pids()["postgres"] {
		sum += pssKiB(pid)
	}
	r.mu.Lock()
	r.peakPss = max(r.peakPss, sum)
	r.mu.Unlock()
}

// peakMiB is each component's peak memory: the high-water mark of its
// largest process (Go processes' lifetime peak), and for PostgreSQL the
// peak of its processes' summed PSS while sampled.
func (r *resources) peakMiB() map[string]float64 {
	peaks := map[string]float64{}
	for name, pids := range r.pids() {
		if name == "postgres" || name == "harness" {
			continue
		}
		var hwm int64
		for _, pid := range pids {
			hwm = max(hwm, statusKiB(pid, "VmHWM"))
		}
		peaks[name] = float64(hwm) / 1024
	}
	r.mu.Lock()
	peaks["postgres"] = float64(r.peakPss) / 1024
	r.mu.Unlock()
	return peaks
}
