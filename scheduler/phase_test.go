package scheduler

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// TestPhaseSpreadsLoad: for 100k URLs, no second of an interval gets more
// than twice its fair share of checks.
func TestPhaseSpreadsLoad(t *testing.T) {
	const urls = 100_000
	for _, interval := range []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute} {
		t.Run(interval.String(), func(t *testing.T) {
			seconds := int(interval / time.Second)
			perSecond := make([]int, seconds)
			// Websites of 1 to 5 URLs, as users write them.
			for i := 0; i < urls; {
				uid := uuid.NewUUID()
				for j := 0; j < 1+i%5 && i < urls; j++ {
					perSecond[Phase(uid, fmt.Sprintf("https://site-%d.example.com/page/%d", i, j), interval)/time.Second]++
					i++
				}
			}
			fair := float64(urls) / float64(seconds)
			for s, n := range perSecond {
				if float64(n) > 2*fair {
					t.Errorf("second %d of %s holds %d checks, over twice the fair %.0f", s, interval, n, fair)
				}
			}
		})
	}
}

func TestPhaseIsDeterministicAndInsideTheInterval(t *testing.T) {
	uid := types.UID("0b6cfb1c-5a84-4c5e-9bd8-4b4f0c2d8a11")
	p := Phase(uid, "https://shop.example.com/", time.Minute)
	if p < 0 || p >= time.Minute {
		t.Fatalf("phase %v outside [0, 1m)", p)
	}
	if again := Phase(uid, "https://shop.example.com/", time.Minute); again != p {
		t.Errorf("phase changed between calls: %v, %v", p, again)
	}
	if other := Phase(uid, "https://shop.example.com/health", time.Minute); other == p {
		t.Errorf("two URLs of one Website share phase %v", p)
	}
	if Phase("ab", "c", time.Hour) == Phase("a", "bc", time.Hour) {
		t.Error(`("ab","c") and ("a","bc") collide: the UID and URL run together`)
	}
}

func TestNextRun(t *testing.T) {
	base := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC) // a multiple of 30s since the epoch
	tests := map[string]struct {
		phase, interval time.Duration
		after           time.Time
		want            time.Time
	}{
		"just before the phase":    {5 * time.Second, 30 * time.Second, base.Add(4 * time.Second), base.Add(5 * time.Second)},
		"exactly at a due time":    {5 * time.Second, 30 * time.Second, base.Add(5 * time.Second), base.Add(35 * time.Second)},
		"just after":               {5 * time.Second, 30 * time.Second, base.Add(5*time.Second + time.Nanosecond), base.Add(35 * time.Second)},
		"phase zero":               {0, 30 * time.Second, base, base.Add(30 * time.Second)},
		"last nanosecond":          {30*time.Second - 1, 30 * time.Second, base, base.Add(30*time.Second - 1)},
		"before the epoch":         {time.Second, 10 * time.Second, time.Unix(-15, 0), time.Unix(-9, 0)},
		"no interval: due at once": {0, 0, base, base},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := NextRun(tc.phase, tc.interval, tc.after); !got.Equal(tc.want) {
				t.Errorf("NextRun(%v, %v, %v) = %v, want %v", tc.phase, tc.interval, tc.after, got, tc.want)
			}
		})
	}
	// Successive runs are exactly one interval apart, and keep the phase.
	phase, interval := 7*time.Second+123*time.Millisecond, time.Minute
	at := NextRun(phase, interval, base)
	for range 1000 {
		next := NextRun(phase, interval, at)
		if next.Sub(at) != interval || time.Duration(next.UnixNano())%interval != phase {
			t.Fatalf("after %v came %v: not one interval later at phase %v", at, next, phase)
		}
		at = next
	}
}
