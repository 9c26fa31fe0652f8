package plugins

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// FuzzPluginConfig: no configuration makes a plugin's Validate panic; one
// it accepts runs, on any body, to a verdict with a known outcome and a
// bounded message of valid UTF-8, without a panic. dns-blocklist is only
// validated: its Run asks a DNS server.
func FuzzPluginConfig(f *testing.F) {
	for _, seed := range []struct{ name, config, body string }{
		{"json-path", "expr=.status\nequals=ok", `{"status":"ok"}`},
		{"json-path", "expr={.items[0].state}\nmatches=^(up|ok)$", `{"items":[{"state":"up"}]}`},
		{"json-path", "expr={range .items[*]}{.a}{end}", `{"items":[{"a":1},{"a":2}]}`},
		{"json-path", "expr={.a}\nmatches=(", `{"a":"("}`},
		{"json-path", "expr=.a[?(@.b==1)]", `[{"b":1}]`},
		{"html-stats", "sigma=3\nminSamples=10", "<html><a href=x>y</a><script></script></html>"},
		{"html-stats", "sigma=-1", ""},
		{"tls-expiry", "warnDays=14\ncriticalDays=3", ""},
		{"tls-expiry", "warnDays=1\ncriticalDays=30", ""},
		{"dns-blocklist", "resolver=127.0.0.1:53", ""},
		{"nope", "a=b", "\xff"},
	} {
		f.Add(seed.name, seed.config, []byte(seed.body))
	}
	registry := NewRegistry(Options{})
	f.Fuzz(func(t *testing.T, name, rawConfig string, body []byte) {
		p, ok := registry.Get(name)
		if !ok {
			if err := registry.Validate([]task.Plugin{{Name: name}}); err == nil {
				t.Fatalf("unknown plugin %q accepted", name)
			}
			return
		}
		config := map[string]string{}
		for line := range strings.SplitSeq(rawConfig, "\n") {
			k, v, _ := strings.Cut(line, "=")
			config[k] = v
		}
		if err := p.Validate(config); err != nil {
			if !utf8.ValidString(err.Error()) || len(err.Error()) > 1024 {
				t.Errorf("error of %d bytes, valid UTF-8 %t: want a short message a status can hold", len(err.Error()), utf8.ValidString(err.Error()))
			}
			return
		}
		if name == "dns-blocklist" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		in := &Input{
			Task:     &task.Task{UID: "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", URL: "https://a.example/", ScheduledAt: time.Unix(1e9, 0)},
			Config:   config,
			Response: &probe.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/html"}}, Body: body, BodyBytes: len(body)},
		}
		result, judged := p.Run(ctx, in)
		if !judged {
			return
		}
		if s, ok := p.(Stateful); ok {
			result = s.Judge(config, in.Task.ScheduledAt, result, &History{})
		}
		switch result.Outcome {
		case OK, Warning, Error:
		default:
			t.Errorf("outcome %q", result.Outcome)
		}
		if !utf8.ValidString(result.Message) || len(result.Message) > 2048 {
			t.Errorf("message of %d bytes, valid UTF-8 %t", len(result.Message), utf8.ValidString(result.Message))
		}
	})
}
