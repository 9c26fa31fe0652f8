package expect

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

func TestJudge(t *testing.T) {
	ok := func(code int, body string, took time.Duration) *probe.Response {
		return &probe.Response{StatusCode: code, Body: []byte(body), Timings: probe.Timings{Total: took}}
	}
	tests := map[string]struct {
		expect  task.Expectations
		resp    *probe.Response
		class   probe.ErrorClass
		message string
	}{
		"2xx by default":       {resp: ok(204, "", time.Millisecond)},
		"3xx is not 2xx":       {resp: ok(301, "", time.Millisecond), class: ClassUnexpectedStatus, message: "status 301, want 2xx"},
		"in a range":           {expect: task.Expectations{StatusCodes: []string{"200-299", "304"}}, resp: ok(304, "", 0)},
		"outside the ranges":   {expect: task.Expectations{StatusCodes: []string{"200-299", "304"}}, resp: ok(503, "", 0), class: ClassUnexpectedStatus, message: "status 503, want 200-299, 304"},
		"body matches":         {expect: task.Expectations{BodyRegex: `"status":\s*"ok"`}, resp: ok(200, `{"status": "ok"}`, 0)},
		"body does not match":  {expect: task.Expectations{BodyRegex: `"status":\s*"ok"`}, resp: ok(200, `{"status": "degraded"}`, 0), class: ClassBodyMismatch, message: "does not match"},
		"forbidden text found": {expect: task.Expectations{BodyNotRegex: `(?i)maintenance`}, resp: ok(200, "<h1>Down for MAINTENANCE</h1>", 0), class: ClassBodyMismatch, message: "MAINTENANCE"},
		// The excerpt is quoted: a status and a result take valid UTF-8 only.
		"found in invalid UTF-8": {expect: task.Expectations{BodyNotRegex: `maintenance`}, resp: ok(200, "\xff\xfe maintenance \xe9", 0), class: ClassBodyMismatch, message: `"\xff\xfe maintenance \xe9"`},
		"too slow":               {expect: task.Expectations{MaxLatency: time.Second}, resp: ok(200, "", 1500*time.Millisecond), class: ClassTooSlow, message: "took 1.5s, over the 1s allowed"},
		"fast enough":            {expect: task.Expectations{MaxLatency: time.Second}, resp: ok(200, "", 900*time.Millisecond)},
		"probe failed":           {resp: &probe.Response{ErrorClass: probe.ClassTimeout, Err: errors.New("no complete response within the timeout")}, class: probe.ClassTimeout, message: "timeout"},
		"unparsable range":       {expect: task.Expectations{StatusCodes: []string{"2xx"}}, resp: ok(200, "", 0), class: ClassUnexpectedStatus, message: `"2xx" is not a code`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := Judge(&tc.expect, tc.resp)
			if v.Up != (tc.class == "") || v.Class != tc.class {
				t.Fatalf("verdict %+v, want class %q", v, tc.class)
			}
			if tc.message != "" && !strings.Contains(v.Message, tc.message) {
				t.Errorf("message %q, want it to mention %q", v.Message, tc.message)
			}
			if !utf8.ValidString(v.Message) {
				t.Errorf("message %q is not valid UTF-8", v.Message)
			}
		})
	}
}
