package plugins

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

func TestRegistryNames(t *testing.T) {
	want := slices.Sorted(slices.Values(monitoringv1alpha1.KnownPlugins()))
	r := NewRegistry(Options{})
	if diff := cmp.Diff(want, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	for _, name := range want {
		p, ok := r.Get(name)
		if !ok || p.Name() != name {
			t.Errorf("Get(%q) = %v, %v", name, p, ok)
		}
	}
	if p, _ := r.Get(monitoringv1alpha1.PluginHTMLStats); p != nil {
		if _, ok := p.(Stateful); !ok {
			t.Error("html-stats is not Stateful")
		}
	}
}

func TestRegistryValidate(t *testing.T) {
	tests := map[string]struct {
		name   string
		config map[string]string
		want   string // "" is valid
	}{
		"unknown plugin": {name: "nope", want: `plugin "nope" is unknown`},

		"tls-expiry defaults":   {name: "tls-expiry"},
		"tls-expiry set":        {name: "tls-expiry", config: map[string]string{"warnDays": "30", "criticalDays": "30"}},
		"tls-expiry unknown":    {name: "tls-expiry", config: map[string]string{"warnDay": "3"}, want: `plugin tls-expiry: unknown key "warnDay": want warnDays or criticalDays`},
		"tls-expiry not days":   {name: "tls-expiry", config: map[string]string{"warnDays": "x"}, want: `plugin tls-expiry: warnDays "x": want a whole number of days from 0 to 3650`},
		"tls-expiry negative":   {name: "tls-expiry", config: map[string]string{"criticalDays": "-1"}, want: `plugin tls-expiry: criticalDays "-1": want a whole number of days from 0 to 3650`},
		"tls-expiry fraction":   {name: "tls-expiry", config: map[string]string{"warnDays": "1.5"}, want: `plugin tls-expiry: warnDays "1.5": want a whole number of days from 0 to 3650`},
		"tls-expiry above warn": {name: "tls-expiry", config: map[string]string{"criticalDays": "20"}, want: `plugin tls-expiry: criticalDays 20 is more than warnDays 14: want criticalDays at most warnDays (warnDays defaults to 14)`},

		"html-stats set":         {name: "html-stats", config: map[string]string{"minSamples": "2", "sigma": "2.5"}},
		"html-stats one sample":  {name: "html-stats", config: map[string]string{"minSamples": "1"}, want: `plugin html-stats: minSamples "1": want a whole number of checks from 2 to 100000`},
		"html-stats zero sigma":  {name: "html-stats", config: map[string]string{"sigma": "0"}, want: `plugin html-stats: sigma "0": want a number of standard deviations above 0, such as 3 or 2.5`},
		"html-stats NaN sigma":   {name: "html-stats", config: map[string]string{"sigma": "NaN"}, want: `plugin html-stats: sigma "NaN": want a number of standard deviations above 0, such as 3 or 2.5`},
		"html-stats unknown key": {name: "html-stats", config: map[string]string{"sigma": "3", "z": "", "a": ""}, want: `plugin html-stats: unknown key "a": want minSamples or sigma`},

		"dns-blocklist set":       {name: "dns-blocklist", config: map[string]string{"resolver": "[2620:fe::fe]:53", "timeout": "500ms"}},
		"dns-blocklist no port":   {name: "dns-blocklist", config: map[string]string{"resolver": "9.9.9.9"}, want: `plugin dns-blocklist: resolver "9.9.9.9": want an IP address and port, such as 9.9.9.9:53 or [2620:fe::fe]:53`},
		"dns-blocklist host name": {name: "dns-blocklist", config: map[string]string{"resolver": "dns.quad9.net:53"}, want: `plugin dns-blocklist: resolver "dns.quad9.net:53": want an IP address and port, such as 9.9.9.9:53 or [2620:fe::fe]:53`},
		"dns-blocklist long":      {name: "dns-blocklist", config: map[string]string{"timeout": "11s"}, want: `plugin dns-blocklist: timeout "11s": want a duration above 0 and at most 10s, such as 2s`},
		"dns-blocklist zero":      {name: "dns-blocklist", config: map[string]string{"timeout": "0s"}, want: `plugin dns-blocklist: timeout "0s": want a duration above 0 and at most 10s, such as 2s`},
		"dns-blocklist unknown":   {name: "dns-blocklist", config: map[string]string{"server": "1.1.1.1:53"}, want: `plugin dns-blocklist: unknown key "server": want resolver or timeout`},

		"json-path equals":     {name: "json-path", config: map[string]string{"expr": ".status", "equals": "up"}},
		"json-path matches":    {name: "json-path", config: map[string]string{"expr": "{.items[*].state}", "matches": "^ok"}},
		"json-path no expr":    {name: "json-path", config: map[string]string{"equals": "up"}, want: `plugin json-path: expr: required, a JSONPath such as {.status} or .items[0].state`},
		"json-path bad expr":   {name: "json-path", config: map[string]string{"expr": "{.items[", "equals": "up"}, want: `plugin json-path: expr "{.items[": want a JSONPath such as {.status} or .items[0].state: unterminated array`},
		"json-path two ..":     {name: "json-path", config: map[string]string{"expr": "{..a..b}", "equals": "up"}, want: `plugin json-path: expr "{..a..b}": want a JSONPath such as {.status} or .items[0].state: at most one recursive descent (..)`},
		"json-path both":       {name: "json-path", config: map[string]string{"expr": ".a", "equals": "up", "matches": "up"}, want: `plugin json-path: equals, matches: want exactly one of them, the value expected or a regular expression it must match`},
		"json-path neither":    {name: "json-path", config: map[string]string{"expr": ".a"}, want: `plugin json-path: equals, matches: want exactly one of them, the value expected or a regular expression it must match`},
		"json-path bad regexp": {name: "json-path", config: map[string]string{"expr": ".a", "matches": "(up"}, want: `plugin json-path: matches "(up": want an RE2 regular expression: missing closing )`},
		"json-path unknown":    {name: "json-path", config: map[string]string{"expr": ".a", "equal": "up"}, want: `plugin json-path: unknown key "equal": want expr, equals or matches`},
	}
	r := NewRegistry(Options{})
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := r.Validate([]task.Plugin{{Name: "tls-expiry"}, {Name: tc.name, Config: tc.config}})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRunRejectsInvalidConfig: a config that slipped past Validate is an
// Error naming the key, not a panic or a silent default.
func TestRunRejectsInvalidConfig(t *testing.T) {
	r := NewRegistry(Options{})
	in := &Input{
		Task:     &task.Task{URL: "https://shop.example.com/"},
		Config:   map[string]string{"bogus": "1"},
		Response: &probe.Response{StatusCode: 200, Body: []byte("{}"), BodyBytes: 2},
	}
	for _, name := range r.Names() {
		p, _ := r.Get(name)
		got, ok := p.Run(t.Context(), in)
		want := Result{Name: name, Outcome: Error}
		if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Message" }, cmp.Ignore())); !ok || diff != "" {
			t.Errorf("%s: ok %v (-want +got):\n%s", name, ok, diff)
		}
		if !strings.HasPrefix(got.Message, "invalid config: ") || !strings.Contains(got.Message, `"bogus"`) {
			t.Errorf("%s: message %q does not name the key", name, got.Message)
		}
	}
}

// FuzzValidate: no configuration makes a plugin panic, and Run rejects,
// as an Error with the same message, what Validate rejects.
func FuzzValidate(f *testing.F) {
	f.Add("warnDays", "14", "criticalDays", "3")
	f.Add("sigma", "1e308", "minSamples", "9223372036854775807")
	f.Add("resolver", "[::1%eth0]:53", "timeout", "-1ns")
	f.Add("expr", "{range .items[*]}{.a}{end}", "equals", "x")
	f.Add("expr", "{.a[?(@.b)]}", "matches", "(?i)^up$")
	f.Add("expr", `{['a','b','c','d']['a','b','c','d']['a','b','c','d']}`, "equals", "")
	r := NewRegistry(Options{Now: func() time.Time { return time.Unix(0, 0) }})
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		config := map[string]string{k1: v1, k2: v2}
		// No task: dns-blocklist has no host to look up.
		in := &Input{Config: config, Response: &probe.Response{Body: []byte(`{"a": [{"b": 1}]}`), BodyBytes: 17}}
		for _, name := range r.Names() {
			p, _ := r.Get(name)
			err := p.Validate(config)
			got, ok := p.Run(t.Context(), in)
			if err != nil && (!ok || got.Outcome != Error || got.Message != "invalid config: "+err.Error()) {
				t.Errorf("%s: Validate: %v; Run: %+v, %v", name, err, got, ok)
			}
		}
	})
}

// FuzzJSONPath: no expression or body makes json-path panic.
func FuzzJSONPath(f *testing.F) {
	f.Add("{.a[0].b}", `{"a": [{"b": 1}]}`)
	f.Add("{range .a[*]}{.b}{end}", `{"a": [{"b": 1}, {"b": [2]}]}`)
	f.Add(`{.a[?(@.b>0)].b}`, `{"a": [{"b": "x"}, null, 3]}`)
	f.Add("{..b}", `[[[[[[1]]]]]]`)
	f.Add("{.a[-5:-1:2]}", `{"a": "string"}`)
	f.Fuzz(func(t *testing.T, expr, body string) {
		in := &Input{Config: map[string]string{"expr": expr, "matches": "."}, Response: &probe.Response{Body: []byte(body), BodyBytes: len(body)}}
		newJSONPath().Run(t.Context(), in)
	})
}

// FuzzHTMLStats: any body is measured without a panic, with counts that
// add up.
func FuzzHTMLStats(f *testing.F) {
	f.Add("<p>a <a href=x>b</a><script>c d</script><img>")
	f.Add("<script/><style>\xff</style><a href>")
	f.Add("<!-- <a href=x> --><![CDATA[<img>]]><plaintext><p>")
	f.Fuzz(func(t *testing.T, body string) {
		in := &Input{Response: &probe.Response{Body: []byte(body), BodyBytes: len(body)}}
		got, ok := newHTMLStats().Run(t.Context(), in)
		if len(body) > 0 && !ok {
			t.Fatal("no measurement")
		}
		v := got.Values
		if v["links"]+v["scripts"]+v["images"] > v["tags"] || v["words"] > float64(len(body)) {
			t.Errorf("inconsistent counts %v for %q", v, body)
		}
	})
}
