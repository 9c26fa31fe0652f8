package scale

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times:
// 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// procStat is what /proc/<pid>/stat says of a process.
type procStat struct {
	ppid int
	// cpu is user and system time, its own; children is that of the
	// children it has waited for (PostgreSQL's ended backends).
	cpu, children time.Duration
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, false
	}
	n := func(k int) time.Duration {
		v, _ := strconv.ParseInt(f[k], 10, 64)
		return time.Duration(v) * clockTick
	}
	ppid, _ := strconv.Atoi(f[1])
	// Fields 14 to 17 of stat(5) (utime, stime, cutime, cstime) are 11 to
	// 14 here, the state being field 3.
	return procStat{ppid: ppid, cpu: n(11) + n(12), children: n(13) + n(14)}, true
}

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

// statusKiB reads a field of /proc/<pid>/status in kB (VmHWM, VmRSS); 0
// if the process is gone.
func statusKiB(pid int, field string) int64 {
	return kiBField(fmt.Sprintf("/proc/%d/status", pid), field+":")
}

// pssKiB is a process's proportional set size: shared pages divided among
// the processes that share them, so that PostgreSQL's shared buffers
// count once across its backends.
func pssKiB(pid int) int64 {
	return kiBField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
}

func kiBField(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
