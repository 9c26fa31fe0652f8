package plugins

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/webmon-dev/webmon/internal/task"
)

// checkKeys reports the first key, in sorted order, that is not one of
// allowed.
func checkKeys(config map[string]string, allowed ...string) error {
	var unknown []string
	for k := range config {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("unknown key %q: want %s", truncate(unknown[0], 64), oneOf(allowed))
}

// oneOf lists keys as "a", "a or b", "a, b or c".
func oneOf(keys []string) string {
	if len(keys) < 2 {
		return strings.Join(keys, "")
	}
	return strings.Join(keys[:len(keys)-1], ", ") + " or " + keys[len(keys)-1]
}

// truncate cuts s to at most n runes, marking the cut, so that a hostile
// page or config cannot flood a status.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// urlHost is the host name of the task's URL, without port or brackets;
// empty when there is no task or the URL does not parse.
func urlHost(t *task.Task) string {
	if t == nil {
		return ""
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// clockOf is opts.Now, or time.Now when the plugin is made without a
// registry.
func clockOf(opts Options) func() time.Time {
	if opts.Now == nil {
		return time.Now
	}
	return opts.Now
}
