package checker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const (
	pending = monitoringv1alpha1.URLStatePending
	up      = monitoringv1alpha1.URLStateUp
	down    = monitoringv1alpha1.URLStateDown
)

func TestURLStateMachine(t *testing.T) {
	type step struct {
		pass bool
		want monitoringv1alpha1.URLState
		// transition, if the step makes one
		transition bool
	}
	tests := map[string]struct {
		failureThreshold, successThreshold int32
		steps                              []step
	}{
		"first pass turns Pending Up": {3, 1, []step{{true, up, true}, {true, up, false}}},
		"failures under the threshold leave it Up": {3, 1, []step{
			{true, up, true}, {false, up, false}, {false, up, false}, {true, up, false}, {false, up, false}, {false, up, false},
		}},
		"failureThreshold failures in a row turn it Down": {3, 1, []step{
			{true, up, true}, {false, up, false}, {false, up, false}, {false, down, true}, {false, down, false},
		}},
		"Pending stays Pending until the threshold": {2, 1, []step{{false, pending, false}, {false, down, true}}},
		"successThreshold passes turn Down Up": {1, 3, []step{
			{false, down, true}, {true, down, false}, {true, down, false}, {false, down, false}, {true, down, false}, {true, down, false}, {true, up, true},
		}},
		"thresholds of 1 follow every check": {1, 1, []step{{false, down, true}, {true, up, true}, {false, down, true}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &urlState{url: "https://shop.example.com/", state: pending}
			for i, st := range tc.steps {
				at := t0.Add(time.Duration(i) * 30 * time.Second)
				tr := s.apply(checkOutcome{scheduledAt: at, checkedAt: at, up: st.pass, err: "status 500"}, tc.failureThreshold, tc.successThreshold)
				if s.state != st.want || (tr != nil) != st.transition {
					t.Fatalf("step %d (pass %v): state %s, transition %+v; want %s, a transition: %v", i, st.pass, s.state, tr, st.want, st.transition)
				}
				if tr != nil && (tr.to != st.want || !tr.at.Equal(at)) {
					t.Fatalf("step %d: transition %+v, want to %s at %v", i, tr, st.want, at)
				}
			}
		})
	}
}

func TestURLStateTransitions(t *testing.T) {
	s := &urlState{url: "https://shop.example.com/", state: pending}
	check := func(min int, pass bool) *transition {
		at := t0.Add(time.Duration(min) * time.Minute)
		return s.apply(checkOutcome{scheduledAt: at, checkedAt: at.Add(time.Second), up: pass, err: "connection refused"}, 1, 1)
	}
	if tr := check(0, false); tr == nil || tr.from != pending || tr.to != down || tr.reason != "connection refused" || tr.downFor != 0 {
		t.Fatalf("to Down: %+v", tr)
	}
	if tr := check(5, true); tr == nil || tr.to != up || tr.downFor != 5*time.Minute {
		t.Fatalf("Up again: %+v, want it Down for 5m", tr)
	}
	// An older check, redelivered or late, moves nothing.
	if tr := check(3, false); tr != nil || s.state != up || s.consecutiveFailures != 0 {
		t.Fatalf("an older failed check: %+v, state %s, %d failures; want nothing moved", tr, s.state, s.consecutiveFailures)
	}
	if tr := check(5, false); tr != nil || s.state != up {
		t.Fatalf("the same check again: %+v, state %s", tr, s.state)
	}
}

func TestRestore(t *testing.T) {
	verdicts := func(rs ...plugins.Result) json.RawMessage {
		b, _ := json.Marshal(rs)
		return b
	}
	result := func(min int, o store.Outcome, p json.RawMessage) store.RecentResult {
		at := t0.Add(time.Duration(min) * time.Minute)
		msg := ""
		if o == store.OutcomeDown {
			msg = "status 503, want 2xx"
		}
		return store.RecentResult{ScheduledAt: at, CheckedAt: at.Add(time.Second), Outcome: o, ErrorMessage: msg, StatusCode: 503, Total: time.Second, Plugins: p}
	}
	stored := store.StoredURL{
		URLState: store.URLState{URL: "https://shop.example.com/", State: "Down", Since: t0.Add(time.Minute), ScheduledAt: t0.Add(time.Minute)},
		Recent: []store.RecentResult{ // newest first
			result(4, store.OutcomeDown, nil),
			result(3, store.OutcomeDown, verdicts(plugins.Result{Name: "tls-expiry", Outcome: plugins.Warning, Message: "expires in 9 days"})),
			result(2, store.OutcomeUp, verdicts(plugins.Result{Name: "tls-expiry", Outcome: plugins.OK}, plugins.Result{Name: "html-stats", Outcome: plugins.OK})),
			result(1, store.OutcomeDown, nil),
		},
	}
	got := restore(stored)
	want := &urlState{
		url: "https://shop.example.com/", state: down, since: t0.Add(time.Minute), consecutiveFailures: 2,
		lastScheduledAt: t0.Add(4 * time.Minute), lastCheckedAt: t0.Add(4*time.Minute + time.Second),
		statusCode: 503, latency: time.Second, lastError: "status 503, want 2xx",
		plugins: map[string]plugins.Result{
			"tls-expiry": {Name: "tls-expiry", Outcome: plugins.Warning, Message: "expires in 9 days"},
			"html-stats": {Name: "html-stats", Outcome: plugins.OK},
		},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(urlState{})); diff != "" {
		t.Errorf("restored (-want +got):\n%s", diff)
	}
	// Resumed, one more failure counts as the third in a row.
	if tr := got.apply(checkOutcome{scheduledAt: t0.Add(5 * time.Minute), checkedAt: t0.Add(5 * time.Minute)}, 3, 1); tr != nil || got.consecutiveFailures != 3 {
		t.Errorf("after one more failure: %+v, %d in a row; want no transition, 3", tr, got.consecutiveFailures)
	}
	if s := restore(store.StoredURL{URLState: store.URLState{URL: "https://new.example.com/"}}); s.state != pending || !s.lastScheduledAt.IsZero() {
		t.Errorf("a URL never checked: %+v, want Pending", s)
	}
}
