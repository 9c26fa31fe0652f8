package plugins

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJSONPath(t *testing.T) {
	const health = `{"status": "up", "version": "1.4.2", "uptime": 1000000, "load": 0.5,
  "items": [{"name": "db", "state": "ok"}, {"name": "cache", "state": "degraded"}],
  "meta": {"region": "eu"}}`
	long := `{"status": "` + strings.Repeat("x", 200) + `"}`
	tests := map[string]struct {
		body   string
		config []string
		want   Result
	}{
		"equals": {
			body: health, config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: OK, Message: `{.status} is "up"`},
		},
		"without braces": {
			body: health, config: []string{"expr", ".items[0].state", "equals", "ok"},
			want: Result{Outcome: OK, Message: `{.items[0].state} is "ok"`},
		},
		"a number as written": {
			body: health, config: []string{"expr", "{.uptime}", "equals", "1000000"},
			want: Result{Outcome: OK, Message: `{.uptime} is "1000000"`},
		},
		"an object as JSON": {
			body: health, config: []string{"expr", "{.meta}", "equals", `{"region":"eu"}`},
			want: Result{Outcome: OK, Message: `{.meta} is "{\"region\":\"eu\"}"`},
		},
		"a filter": {
			body: health, config: []string{"expr", `{.items[?(@.name=="cache")].state}`, "equals", "ok"},
			want: Result{Outcome: Error, Message: `{.items[?(@.name=="cache")].state} is "degraded", want "ok"`},
		},
		"differs": {
			body: health, config: []string{"expr", "{.status}", "equals", "down"},
			want: Result{Outcome: Error, Message: `{.status} is "up", want "down"`},
		},
		"matches": {
			body: health, config: []string{"expr", "{.version}", "matches", `^1\.[0-9]+\.`},
			want: Result{Outcome: OK, Message: `{.version} is "1.4.2"`},
		},
		"does not match": {
			body: health, config: []string{"expr", "{.items[*].state}", "matches", `^(ok ?)+$`},
			want: Result{Outcome: Error, Message: `{.items[*].state} is "ok degraded", want a match of "^(ok ?)+$"`},
		},
		"key not found": {
			body: health, config: []string{"expr", "{.meta.zone}", "equals", "a"},
			want: Result{Outcome: Error, Message: "{.meta.zone} not found in the body"},
		},
		"index out of range": {
			body: health, config: []string{"expr", "{.items[5].name}", "equals", "a"},
			want: Result{Outcome: Error, Message: "{.items[5].name} not found in the body"},
		},
		"filter matches nothing": {
			body: health, config: []string{"expr", `{.items[?(@.name=="queue")].state}`, "equals", ""},
			want: Result{Outcome: Error, Message: `{.items[?(@.name=="queue")].state} not found in the body`},
		},
		"not JSON": {
			body: "<html>maintenance</html>", config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: Error, Message: "body is not JSON: invalid character '<' looking for beginning of value"},
		},
		"trailing garbage": {
			body: `{"status": "up"} x`, config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: Error, Message: "body is not JSON: invalid character 'x' after top-level value"},
		},
		"empty body": {
			body: "", config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: Error, Message: "body is empty, not JSON"},
		},
		"long value is truncated": {
			body: long, config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: Error, Message: `{.status} is "` + strings.Repeat("x", 80) + `…", want "up"`},
		},
		"a list is not an object": {
			body: `[1, 2]`, config: []string{"expr", "{.status}", "equals", "up"},
			want: Result{Outcome: Error, Message: "{.status} not found in the body"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := serve(t, "application/json", tc.body)
			got, ok := newJSONPath().Run(t.Context(), newCheck(t, srv.URL).Config(tc.config...).input())
			tc.want.Name = "json-path"
			if diff := cmp.Diff(tc.want, got); !ok || diff != "" {
				t.Errorf("Run: ok %v (-want +got):\n%s", ok, diff)
			}
		})
	}
}

func TestJSONPathFailedCheck(t *testing.T) {
	srv := serve(t, "application/json", `{"status": "up", "padding": "`+strings.Repeat("x", 100)+`"}`)
	in := newCheck(t, srv.URL).Config("expr", "{.status}", "equals", "up").BodyLimit(16).input()
	if got, ok := newJSONPath().Run(t.Context(), in); ok {
		t.Errorf("failed check (%v): got %+v, want no verdict", in.Response.Err, got)
	}
}

// TestJSONPathBounded: an expression that would select or print much of a
// large body stops at the bounds.
func TestJSONPathBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"items": [`)
	for i := range 20000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"name": "item", "tags": ["a", "b", "c"]}`)
	}
	b.WriteString("]}")
	srv := serve(t, "application/json", b.String())
	got, ok := newJSONPath().Run(t.Context(), newCheck(t, srv.URL).Config("expr", "{..tags}", "matches", "z").input())
	want := Result{Name: "json-path", Outcome: Error, Message: "{..tags}: the value is longer than 64 KiB"}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("Run: ok %v (-want +got):\n%s", ok, diff)
	}
}
