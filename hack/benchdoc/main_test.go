package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

const page = `# Benchmarks

Prose stays.

<!-- benchdoc:begin scheduler -->
old figures
<!-- benchdoc:end scheduler -->

More prose.

<!-- benchdoc:begin checker -->
kept: no run
<!-- benchdoc:end checker -->
`

func TestRewrite(t *testing.T) {
	runs := map[string]run{"scheduler": parseAt("scheduler", `
=== RUN   TestSchedulerThroughput
ceiling_msgs_per_s=539536
ratio=0.73
lateness_p99_ms=46.2
bytes_per_url=149
not a figure: 12
`)}
	out, updated, err := rewrite([]byte(page), runs, "2 × test CPU")
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{
		"Prose stays.\n", "More prose.\n", "kept: no run\n",
		"Last run: `make bench-scheduler`, 2026-12-02 19:00 UTC, on 2 × test CPU.",
		"| `ceiling_msgs_per_s` | 539,536 |  |\n",
		"| `ratio` | 0.73 | ≥ 0.8: **missed** |\n",
		"| `lateness_p99_ms` | 46.2 | ≤ 100: met |\n",
		"| `bytes_per_url` | 149 | ≤ 300: met |\n",
		"<!-- benchdoc:end scheduler -->\n\nMore prose.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the page lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"old figures", "not a figure"} {
		if strings.Contains(got, gone) {
			t.Errorf("the page still has %q", gone)
		}
	}
	if len(updated) != 1 || updated[0] != "scheduler" {
		t.Errorf("updated %v, want [scheduler]", updated)
	}
	// Rewriting its own output changes nothing but what is new.
	again, _, err := rewrite(out, runs, "2 × test CPU")
	if err != nil || string(again) != got {
		t.Errorf("a second rewrite changed the page (err %v):\n%s", err, again)
	}
}

func TestGoBenchmarks(t *testing.T) {
	r := parseAt("go", `goos: linux
pkg: github.com/webmon-dev/webmon/internal/task
BenchmarkEncoding/shop/protowire-2         	 5000000	        22.10 ns/op	       0 B/op	       0 allocs/op
PASS
`)
	if len(r.figures) != 1 || r.figures[0] != (figure{"internal/task BenchmarkEncoding/shop/protowire", "22.10 ns/op 0 B/op 0 allocs/op"}) {
		t.Fatalf("parsed %+v", r.figures)
	}
}

func TestRefusesBrokenPages(t *testing.T) {
	runs := map[string]run{"e2e": parseAt("e2e", "e2e_lost=0\n")}
	if _, _, err := rewrite([]byte(page), runs, ""); err == nil || !strings.Contains(err.Error(), `no section "e2e"`) {
		t.Errorf("a run without its section: err %v", err)
	}
	crossed := "<!-- benchdoc:begin scheduler -->\nx\n<!-- benchdoc:end checker -->\n"
	runs = map[string]run{"scheduler": parseAt("scheduler", "ratio=1\n")}
	if _, _, err := rewrite([]byte(crossed), runs, ""); err == nil {
		t.Error("crossed markers were accepted")
	}
}

func TestFormatValue(t *testing.T) {
	for in, want := range map[string]string{"1203885": "1,203,885", "9999": "9999", "10000.5": "10,000.5", "0.73": "0.73", "n/a": "n/a"} {
		if got := formatValue(in); got != want {
			t.Errorf("formatValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func parseAt(section, body string) run {
	r := parse([]byte(body))
	r.section, r.at = section, time.Date(2026, 12, 2, 19, 0, 0, 0, time.UTC)
	return r
}

// The project's page has a section for every benchmark target's output.
func TestThePageHasEverySection(t *testing.T) {
	page, err := os.ReadFile("../../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range commands {
		for _, m := range []string{"<!-- benchdoc:begin " + name + " -->\n", "<!-- benchdoc:end " + name + " -->\n"} {
			if !strings.Contains(string(page), m) {
				t.Errorf("docs/benchmarks.md lacks %q (for %s)", m, commands[name])
			}
		}
	}
}
