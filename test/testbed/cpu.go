package testbed

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the CPU time this process has used, user and system.
func ProcessCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcStat is what /proc/<pid>/stat says of a process.
type ProcStat struct {
	Comm string
	PPID int
	// CPU is user and system time, its own; Children is that of the
	// children it has waited for (PostgreSQL's ended backends).
	CPU, Children time.Duration
}

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times:
// 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// ReadProcStat reads /proc/<pid>/stat; false if the process is gone.
func ReadProcStat(pid int) (ProcStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, false
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after its last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return ProcStat{}, false
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return ProcStat{}, false
	}
	n := func(k int) time.Duration {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		return time.Duration(v) * clockTick
	}
	ppid, _ := strconv.Atoi(f[1])
	// Fields 14 to 17 of stat(5) (utime, stime, cutime, cstime) are 11 to
	// 14 here, the state being field 3.
	return ProcStat{Comm: string(b[open+1 : end]), PPID: ppid, CPU: n(11) + n(12), Children: n(13) + n(14)}, true
}

// Pids lists the live processes.
func Pids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// CommandCPU is the CPU time used so far by every process whose command
// name is comm, with the children they have waited for: for a server the
// test talks to, such as "postgres" on a machine that runs only the test
// bed's.
func CommandCPU(t testing.TB, comm string) time.Duration {
	t.Helper()
	var total time.Duration
	for _, pid := range Pids() {
		if st, ok := ReadProcStat(pid); ok && st.Comm == comm {
			total += st.CPU + st.Children
		}
	}
	return total
}
