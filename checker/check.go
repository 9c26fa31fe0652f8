package checker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/webmon-dev/webmon/checker/expect"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
)

// Failure classes of checks that never reached the target.
const (
	// ClassMissed: the task reached a checker after its deadline.
	ClassMissed probe.ErrorClass = "missed"
	// ClassSecret: a header's Secret could not be read.
	ClassSecret probe.ErrorClass = "secret"
)

// Redirect defaults, for Websites that leave them unset.
const (
	defaultFollowRedirects = true
	defaultMaxRedirects    = 10
)

// checked is one task's check, on its way to the store.
type checked struct {
	task   *task.Task
	result store.Result
	// verdicts are the plugins' verdicts; measured are the measurements
	// of stateful plugins, which the batcher judges against the URL's
	// history.
	verdicts, measured []plugins.Result
}

// up reports whether the check passed.
func (c *checked) up() bool { return c.result.Outcome == store.OutcomeUp }

// check runs one task: a missed result when it is past its deadline,
// else the probe, the expectations and the plugins.
func (c *Checker) check(ctx context.Context, t *task.Task) *checked {
	out := &checked{task: t, result: store.Result{
		WebsiteUID: t.UID, Namespace: t.Namespace, Name: t.Name, URL: t.URL, URLIndex: t.URLIndex,
		ScheduledAt: t.ScheduledAt, Trigger: int(t.Trigger),
	}}
	r := &out.result
	now := c.clock.Now()
	if now.After(t.Deadline) {
		r.CheckedAt, r.Outcome, r.ErrorClass = now, store.OutcomeMissed, string(ClassMissed)
		r.ErrorMessage = fmt.Sprintf("not checked: the task reached a checker %s after its deadline", now.Sub(t.Deadline).Round(time.Millisecond))
		return out
	}
	var (
		header  http.Header
		secrets []string
		err     error
	)
	if len(t.Headers) > 0 {
		header, secrets, err = c.headers(ctx, t)
	}
	if err != nil {
		r.CheckedAt, r.Outcome, r.ErrorClass, r.ErrorMessage = now, store.OutcomeDown, string(ClassSecret), err.Error()
		return out
	}
	req := probe.Request{
		Method: t.Method, URL: t.URL, Header: header, Body: t.Body, Timeout: t.Timeout,
		FollowRedirects: defaultFollowRedirects, MaxRedirects: defaultMaxRedirects, TLSSkipVerify: t.Expect.TLSSkipVerify,
	}
	if host := header.Get("Host"); host != "" {
		// net/http takes the Host header from the request, not the map.
		req.Host = host
	}
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if t.Expect.FollowRedirects != nil {
		req.FollowRedirects = *t.Expect.FollowRedirects
	}
	if t.Expect.MaxRedirects != nil {
		req.MaxRedirects = int(*t.Expect.MaxRedirects)
	}
	resp := c.prober.Do(ctx, req)
	defer resp.Release() // nothing below keeps the body past the check
	r.CheckedAt = c.clock.Now()
	r.StatusCode, r.BodyBytes = resp.StatusCode, resp.BodyBytes
	r.DNS, r.Connect, r.TLS, r.TTFB, r.Total = resp.Timings.DNS, resp.Timings.Connect, resp.Timings.TLS, resp.Timings.TTFB, resp.Timings.Total
	verdict := expect.Judge(&t.Expect, resp)
	r.Outcome = store.OutcomeDown
	if verdict.Up {
		r.Outcome = store.OutcomeUp
	} else {
		r.ErrorClass, r.ErrorMessage = string(verdict.Class), verdict.Message
	}
	c.metrics.ObservePhases(resp.Timings.DNS, resp.Timings.Connect, resp.Timings.TLS, resp.Timings.TTFB, resp.Timings.Total)

	for _, spec := range t.Plugins {
		p, ok := c.plugins.Get(spec.Name)
		if !ok {
			out.verdicts = append(out.verdicts, plugins.Result{Name: spec.Name, Outcome: plugins.Error, Message: "webmon has no plugin of that name"})
			continue
		}
		result, ok := p.Run(ctx, &plugins.Input{Task: t, Config: spec.Config, Response: resp, CheckFailed: !verdict.Up})
		switch {
		case !ok:
		case isStateful(p):
			out.measured = append(out.measured, result)
		default:
			out.verdicts = append(out.verdicts, result)
		}
	}
	redact(out, secrets)
	return out
}

// redact removes Secret header values from what the check says: a target
// that echoes its request (a debug page, an error page quoting the
// Authorization header) must not get a credential into results, statuses
// and Events through an excerpt of its body.
func redact(c *checked, secrets []string) {
	if len(secrets) == 0 {
		return
	}
	clean := func(s string) string {
		for _, v := range secrets {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
		return s
	}
	c.result.ErrorMessage = clean(c.result.ErrorMessage)
	for _, rs := range [][]plugins.Result{c.verdicts, c.measured} {
		for i := range rs {
			rs[i].Message = clean(rs[i].Message)
		}
	}
}

func isStateful(p plugins.Plugin) bool {
	_, ok := p.(plugins.Stateful)
	return ok
}

// headers builds the request's headers, reading the values kept in
// Secrets; secrets are those values, to be kept out of what is stored.
func (c *Checker) headers(ctx context.Context, t *task.Task) (h http.Header, secrets []string, err error) {
	h = make(http.Header, len(t.Headers))
	for _, th := range t.Headers {
		value := th.Value
		if th.SecretRef != nil {
			v, err := c.secrets.value(ctx, t.Namespace, th.SecretRef.Name, th.SecretRef.Key)
			if err != nil {
				return nil, nil, fmt.Errorf("header %s: %w", th.Name, err)
			}
			value = v
			if len(v) >= minRedacted {
				secrets = append(secrets, v)
			}
		}
		h.Set(th.Name, value)
	}
	return h, secrets, nil
}

// minRedacted is the shortest Secret value redacted from messages: shorter
// ones would blot out ordinary words, and are no credentials.
const minRedacted = 4
