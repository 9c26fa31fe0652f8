// Package expect judges a probe's response against a Website's
// expectations: status codes, body regexes, latency. It is the built-in
// check that always runs, before any plugin.
package expect

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// Failure classes of a response that arrived but is not what the Website
// expects (probe's classes cover responses that did not arrive).
const (
	ClassUnexpectedStatus probe.ErrorClass = "unexpected_status"
	ClassBodyMismatch     probe.ErrorClass = "body_mismatch"
	ClassTooSlow          probe.ErrorClass = "too_slow"
)

// Verdict is the judgement of one response.
type Verdict struct {
	Up      bool
	Class   probe.ErrorClass
	Message string
}

// Judge says whether resp meets e. A failed probe is down with its own
// class and message.
func Judge(e *task.Expectations, resp *probe.Response) Verdict {
	if resp.Failed() {
		return Verdict{Class: resp.ErrorClass, Message: resp.Err.Error()}
	}
	ok, err := statusMatches(e.StatusCodes, resp.StatusCode)
	switch {
	case err != nil:
		return Verdict{Class: ClassUnexpectedStatus, Message: err.Error()}
	case !ok:
		want := "2xx"
		if len(e.StatusCodes) > 0 {
			want = strings.Join(e.StatusCodes, ", ")
		}
		return Verdict{Class: ClassUnexpectedStatus, Message: fmt.Sprintf("status %d, want %s", resp.StatusCode, want)}
	}
	if e.BodyRegex != "" {
		re, err := compiled(e.BodyRegex)
		if err != nil {
			return Verdict{Class: ClassBodyMismatch, Message: err.Error()}
		}
		if !re.Match(resp.Body) {
			return Verdict{Class: ClassBodyMismatch, Message: fmt.Sprintf("body does not match %q", e.BodyRegex)}
		}
	}
	if e.BodyNotRegex != "" {
		re, err := compiled(e.BodyNotRegex)
		if err != nil {
			return Verdict{Class: ClassBodyMismatch, Message: err.Error()}
		}
		if loc := re.FindIndex(resp.Body); loc != nil {
			return Verdict{Class: ClassBodyMismatch, Message: fmt.Sprintf("body matches %q: %q", e.BodyNotRegex, excerpt(resp.Body, loc))}
		}
	}
	if e.MaxLatency > 0 && resp.Timings.Total > e.MaxLatency {
		return Verdict{Class: ClassTooSlow, Message: fmt.Sprintf("took %s, over the %s allowed", resp.Timings.Total.Round(1e6), e.MaxLatency)}
	}
	return Verdict{Up: true}
}

// statusMatches reports whether code is in one of the ranges ("200-299")
// or codes ("204"); none means 2xx.
func statusMatches(ranges []string, code int) (bool, error) {
	if len(ranges) == 0 {
		return code >= 200 && code <= 299, nil
	}
	for _, r := range ranges {
		lo, hi, found := strings.Cut(r, "-")
		if !found {
			hi = lo
		}
		from, err1 := strconv.Atoi(strings.TrimSpace(lo))
		to, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil {
			return false, fmt.Errorf("status code range %q is not a code or code-code", r)
		}
		if code >= from && code <= to {
			return true, nil
		}
	}
	return false, nil
}

// excerpt is the match with a little context, short enough for a status.
func excerpt(body []byte, loc []int) string {
	from, to := max(0, loc[0]-20), min(len(body), loc[1]+20)
	return string(body[from:to])
}

// regexes caches compiled patterns: they come from Websites and repeat on
// every check of them.
var regexes sync.Map // pattern → *regexp.Regexp

func compiled(pattern string) (*regexp.Regexp, error) {
	if re, ok := regexes.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", pattern, err)
	}
	regexes.Store(pattern, re)
	return re, nil
}
