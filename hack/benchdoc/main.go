// Command benchdoc rewrites the figures in docs/benchmarks.md from the
// output of the benchmarks' last run. Each benchmark target writes its
// key=value lines (or, for Go benchmarks, `go test -bench` output) into a
// file of the bench directory named after the section; each section of the
// page lies between `<!-- benchdoc:begin NAME -->` and
// `<!-- benchdoc:end NAME -->` and is replaced by a table of the figures,
// each with its goal and whether it was met, under a line naming the
// command, the time and the machine. Prose outside the markers is kept:
// it is history and explanation, written by hand.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	dir := flag.String("dir", "bin/bench", "where the benchmark targets wrote their output, a file per section")
	doc := flag.String("doc", "docs/benchmarks.md", "the page to rewrite")
	flag.Parse()
	page, err := os.ReadFile(*doc)
	if err != nil {
		fail(err)
	}
	runs, err := readRuns(*dir)
	if err != nil {
		fail(err)
	}
	out, updated, err := rewrite(page, runs, describeMachine())
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*doc, out, 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("benchdoc: %s: rewrote %s\n", *doc, strings.Join(updated, ", "))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchdoc:", err)
	os.Exit(1)
}

// run is one section's output: its figures in the order printed.
type run struct {
	section string
	at      time.Time
	figures []figure
}

type figure struct{ key, value string }

var (
	keyValue = regexp.MustCompile(`^([a-z][a-z0-9_]*)=(\S+)$`)
	// BenchmarkEncoding/shop/protowire-2   1000  22.1 ns/op  0 B/op  0 allocs/op
	goBench = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.+)$`)
)

func readRuns(dir string) (map[string]run, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	runs := map[string]run{}
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		body, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		r := parse(body)
		r.section, r.at = name, info.ModTime()
		if len(r.figures) > 0 {
			runs[name] = r
		}
	}
	return runs, nil
}

// parse reads key=value lines, and Go benchmark lines under their package
// (the figure is the benchmark, the value its measurements).
func parse(body []byte) run {
	var r run
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/webmon-dev/webmon/")
			continue
		}
		if m := keyValue.FindStringSubmatch(line); m != nil {
			r.figures = append(r.figures, figure{m[1], m[2]})
		} else if m := goBench.FindStringSubmatch(line); m != nil {
			r.figures = append(r.figures, figure{pkg + " " + m[1], strings.Join(strings.Fields(m[2]), " ")})
		}
	}
	return r
}

// goal is a figure's target: at least or at most a value.
type goal struct {
	atLeast bool
	value   float64
}

func (g goal) String() string {
	v := formatValue(strconv.FormatFloat(g.value, 'f', -1, 64))
	if g.atLeast {
		return "≥ " + v
	}
	return "≤ " + v
}

func (g goal) met(v float64) bool {
	if g.atLeast {
		return v >= g.value
	}
	return v <= g.value
}

// goals are the issues' targets, per section.
var goals = map[string]map[string]goal{
	"operator": {"operator_scheduled_s": {false, 60}},
	// The Makefile's own goal for 100,000 (-scale.goal=10m).
	"operator-100k": {"operator_scheduled_s": {false, 600}},
	"scheduler": {
		"ratio":           {true, 0.8},
		"lateness_p99_ms": {false, 100},
		"bytes_per_url":   {false, 300},
		"relaxed_skipped": {false, 0},
	},
	"checker": {
		"ratio_vs_http":    {true, 0.7},
		"ratio_vs_copy":    {true, 0.7},
		"checks_per_cpu_s": {true, 5000},
	},
	"e2e": {
		"e2e_checks_per_s": {true, 10000},
		"e2e_lost":         {false, 0},
		"e2e_duplicated":   {false, 0},
		"lateness_p99_ms":  {false, 100},
	},
}

// commands are the make targets that produce each section.
var commands = map[string]string{
	"operator":      "make bench-operator",
	"operator-100k": "make bench-operator-100k",
	"scheduler":     "make bench-scheduler",
	"checker":       "make bench-checker",
	"e2e":           "make bench-e2e",
	"scale":         "make bench-scale",
	"go":            "make bench-go",
}

var marker = regexp.MustCompile(`(?m)^<!-- benchdoc:begin ([a-z0-9-]+) -->\n(?s:.*?)^<!-- benchdoc:end ([a-z0-9-]+) -->\n`)

// rewrite replaces each marked section that has a run; the others keep
// their last figures.
func rewrite(page []byte, runs map[string]run, machine string) ([]byte, []string, error) {
	var updated []string
	var err error
	out := marker.ReplaceAllFunc(page, func(block []byte) []byte {
		m := marker.FindSubmatch(block)
		name := string(m[1])
		if string(m[2]) != name {
			err = fmt.Errorf("section %q ends with the marker of %q", name, m[2])
			return block
		}
		r, ok := runs[name]
		if !ok {
			return block
		}
		updated = append(updated, name)
		return []byte(render(r, machine))
	})
	if err != nil {
		return nil, nil, err
	}
	for name := range runs {
		if !bytes.Contains(page, []byte("<!-- benchdoc:begin "+name+" -->")) {
			return nil, nil, fmt.Errorf("the page has no section %q for %s's output", name, commands[name])
		}
	}
	return out, updated, nil
}

func render(r run, machine string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- benchdoc:begin %s -->\n", r.section)
	b.WriteString("<!-- written by hack/benchdoc from the run's output: edit the prose around it, not this -->\n")
	fmt.Fprintf(&b, "Last run: `%s`, %s, on %s.\n\n", commands[r.section], r.at.UTC().Format("2006-01-02 15:04 MST"), machine)
	if r.section == "go" {
		b.WriteString("| benchmark | per operation |\n| --- | --- |\n")
		for _, f := range r.figures {
			fmt.Fprintf(&b, "| `%s` | %s |\n", f.key, f.value)
		}
	} else {
		b.WriteString("| figure | value | goal |\n| --- | --- | --- |\n")
		for _, f := range r.figures {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.key, formatValue(f.value), judge(r.section, f))
		}
	}
	fmt.Fprintf(&b, "<!-- benchdoc:end %s -->\n", r.section)
	return b.String()
}

func judge(section string, f figure) string {
	g, ok := goals[section][f.key]
	if !ok {
		return ""
	}
	v, err := strconv.ParseFloat(f.value, 64)
	if err != nil {
		return g.String() + ": not a number"
	}
	if g.met(v) {
		return g.String() + ": met"
	}
	return g.String() + ": **missed**"
}

// formatValue groups the digits of large numbers, so that 1203885 reads
// as 1,203,885; anything else is shown as printed.
func formatValue(v string) string {
	whole, frac, hasFrac := strings.Cut(v, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || n < 10000 {
		return v
	}
	if hasFrac {
		return groupDigits(n) + "." + frac
	}
	return groupDigits(n)
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// describeMachine names what the figures were measured on.
func describeMachine() string {
	cpu := "unknown processor"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	mem := ""
	if info, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(info), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB", (kb+(1<<19))>>20)
		}
	}
	return fmt.Sprintf("%d × %s%s, %s %s/%s", runtime.NumCPU(), cpu, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
