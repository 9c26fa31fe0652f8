// Package scheduler publishes a check task for every URL of one shard's
// Websites at its interval.
package scheduler

import (
	"time"

	"github.com/cespare/xxhash/v2"
	"k8s.io/apimachinery/pkg/types"
)

// Phase is where, inside each interval, a URL's checks fall: a hash of the
// Website's UID and the URL spreads a shard's URLs evenly over the
// interval, so that no second takes a thundering herd. It depends on
// nothing but its inputs, so every replica and every restart of a
// scheduler computes the same schedule.
func Phase(uid types.UID, url string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := xxhash.New()
	_, _ = h.WriteString(string(uid))
	_, _ = h.WriteString("\x00") // keep "ab"+"c" apart from "a"+"bc"
	_, _ = h.WriteString(url)
	return time.Duration(h.Sum64() % uint64(interval))
}

// NextRun is the first time strictly after `after` at which a URL with
// this phase and interval is due. Due times are aligned to the Unix epoch:
// epoch + phase + k×interval, the same for everyone who computes them.
func NextRun(phase, interval time.Duration, after time.Time) time.Time {
	if interval <= 0 {
		return after
	}
	since := after.UnixNano() - int64(phase)
	k := floorDiv(since, int64(interval)) + 1
	return time.Unix(0, k*int64(interval)+int64(phase))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
