package scale

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/webmon-dev/webmon/test/testbed"
)

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	for _, p := range testbed.Pids() {
		if st, ok := testbed.ReadProcStat(p); ok && st.PPID == pid {
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
