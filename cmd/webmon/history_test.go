package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

// TestHistoryCommand: webmon history prints the latest checks and the
// hourly uptime and latency of each URL, as stored and rolled up.
func TestHistoryCommand(t *testing.T) {
	ctx := t.Context()
	db, err := postgres.NewDatabase(ctx, "history")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	t.Setenv(store.URLEnv, db.URL)
	if _, err := run(ctx, "migrate"); err != nil {
		t.Fatal(err)
	}
	cfg := store.Config{}
	pool, err := cfg.Pool(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := store.New(pool)

	const uid = "0b8a2a52-3f0e-4c8e-9a53-2b0f3f6f9d11"
	home, health := "https://shop.example.com/", "https://shop.example.com/health"
	// Two hours ago and in the last hour: the home page passes every
	// check; health fails one in four, the newest with a timeout.
	now := time.Now().UTC()
	var b store.Batch
	for i := range 8 {
		at := now.Add(-2 * time.Hour).Add(time.Duration(i) * 15 * time.Minute)
		r := store.Result{WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: home, ScheduledAt: at, CheckedAt: at,
			Outcome: store.OutcomeUp, StatusCode: 200, Total: 40 * time.Millisecond, BodyBytes: 5120}
		b.Results = append(b.Results, r)
		r.URL, r.URLIndex, r.Total = health, 1, 120*time.Millisecond
		if i%4 == 3 {
			r.Outcome, r.StatusCode, r.ErrorClass, r.ErrorMessage, r.BodyBytes = store.OutcomeDown, 0, "timeout", "no response within 5s", 0
		}
		b.Results = append(b.Results, r)
	}
	b.URLs = []store.URLState{
		{URLID: store.URLID(uid, home), WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: home, State: "Up", Since: now.Add(-2 * time.Hour), ScheduledAt: now},
		{URLID: store.URLID(uid, health), WebsiteUID: uid, Namespace: "shop", Name: "storefront", URL: health, State: "Up", Since: now.Add(-time.Hour), ScheduledAt: now},
	}
	if _, err := st.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Rollup(ctx); err != nil {
		t.Fatal(err)
	}

	out, err := run(ctx, "history", "shop/storefront", "--since", "3h", "--limit", "3")
	if err != nil {
		t.Fatalf("history: %v\n%s", err, out)
	}
	t.Log("\n" + out)
	for _, want := range []string{
		"Website shop/storefront (uid " + uid + ")",
		"UPTIME 3h",
		"Latest checks of " + health,
		"HOUR (UTC)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output has no %q", want)
		}
	}
	lines := historyLines(t, out, home, health)
	// --limit 3: three checks of each URL, the newest of health failed.
	if want := map[string]int{"home": 1, "health": 1, "passed": 5, "failed": 1}; fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("lines %v, want %v", lines, want)
	}

	for args, want := range map[string]string{
		"history shop/nothing":                "no results are stored for that Website",
		"history storefront":                  `website "storefront": want <namespace>/<name>`,
		"history shop/storefront --since=-1h": "--since -1h0m0s: want a positive duration",
	} {
		if _, err := run(ctx, strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("webmon %s: %v, want an error with %q", args, err, want)
		}
	}
}

// historyLines counts the lines of the history output by kind, checking
// the URL summaries and the failed check on the way.
func historyLines(t *testing.T, out, home, health string) map[string]int {
	t.Helper()
	lines := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 7 && f[0] == home && f[1] == "Up":
			lines["home"]++
			if f[4] != "100.00%" || f[6] != "100.00%" {
				t.Errorf("home page summary %q: want 100.00%% over 3h and 30d", line)
			}
		case len(f) == 7 && f[0] == health && f[1] == "Up":
			lines["health"]++
			if f[4] != "75.00%" || f[6] != "75.00%" {
				t.Errorf("health summary %q: want 75.00%% (6 of 8 checks passed)", line)
			}
		case len(f) > 3 && f[2] == "up" && f[3] == "200":
			lines["passed"]++
		case len(f) > 3 && f[2] == "down":
			lines["failed"]++
			if !strings.HasSuffix(line, "timeout: no response within 5s") || f[3] != "-" {
				t.Errorf("the failed check %q: want no status and its error", line)
			}
		}
	}
	return lines
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour:                  "24h",
		10 * time.Minute:                "10m",
		90 * time.Minute:                "1h30m",
		time.Hour + 10*time.Second:      "1h0m10s",
		90 * time.Second:                "1m30s",
		30 * time.Second:                "30s",
		100 * time.Minute:               "1h40m",
		20*time.Minute + 10*time.Second: "20m10s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
