package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
)

// websiteWith is a Website with the given URLs and checker state, each
// URL Up, Down or Pending (never checked).
func websiteWith(states map[string]monitoringv1alpha1.URLState, urls ...string) (*monitoringv1alpha1.Website, *websiteState) {
	ws := &monitoringv1alpha1.Website{}
	ws.Generation = 2
	st := &websiteState{uid: "uid", urls: map[string]*urlState{}}
	for i, u := range urls {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(u))
		state, ok := states[u]
		if !ok || state == pending {
			continue
		}
		s := &urlState{url: u, state: state, since: t0, lastCheckedAt: t0.Add(time.Duration(i) * time.Second), latency: time.Duration(100*(i+1)) * time.Millisecond, statusCode: 200}
		if state == down {
			s.statusCode, s.lastError, s.consecutiveFailures = 503, "status 503, want 2xx", 3
		}
		st.urls[u] = s
	}
	return ws, st
}

func TestSummarizeState(t *testing.T) {
	a, b, c := "https://a.example.com/", "https://b.example.com/", "https://c.example.com/"
	tests := map[string]struct {
		states              map[string]monitoringv1alpha1.URLState
		findings            bool
		want                monitoringv1alpha1.WebsiteState
		available, degraded metav1.ConditionStatus
		reason              string
	}{
		"nothing checked":          {nil, false, monitoringv1alpha1.WebsiteStatePending, metav1.ConditionUnknown, metav1.ConditionUnknown, monitoringv1alpha1.ReasonNoChecksYet},
		"all Up":                   {map[string]monitoringv1alpha1.URLState{a: up, b: up, c: up}, false, monitoringv1alpha1.WebsiteStateUp, metav1.ConditionTrue, metav1.ConditionFalse, monitoringv1alpha1.ReasonAllURLsUp},
		"Up and one Pending":       {map[string]monitoringv1alpha1.URLState{a: up, b: up}, false, monitoringv1alpha1.WebsiteStateUp, metav1.ConditionTrue, metav1.ConditionFalse, monitoringv1alpha1.ReasonAllURLsUp},
		"one Down":                 {map[string]monitoringv1alpha1.URLState{a: up, b: down, c: up}, false, monitoringv1alpha1.WebsiteStateDegraded, metav1.ConditionFalse, metav1.ConditionTrue, monitoringv1alpha1.ReasonSomeURLsDown},
		"all Down":                 {map[string]monitoringv1alpha1.URLState{a: down, b: down, c: down}, false, monitoringv1alpha1.WebsiteStateDown, metav1.ConditionFalse, metav1.ConditionFalse, monitoringv1alpha1.ReasonAllURLsDown},
		"Down and Pending":         {map[string]monitoringv1alpha1.URLState{a: down}, false, monitoringv1alpha1.WebsiteStateDown, metav1.ConditionFalse, metav1.ConditionFalse, monitoringv1alpha1.ReasonAllURLsDown},
		"Up with a plugin Warning": {map[string]monitoringv1alpha1.URLState{a: up, b: up, c: up}, true, monitoringv1alpha1.WebsiteStateDegraded, metav1.ConditionTrue, metav1.ConditionTrue, monitoringv1alpha1.ReasonPluginFindings},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ws, st := websiteWith(tc.states, a, b, c)
			if tc.findings {
				st.urls[b].plugins = map[string]plugins.Result{"tls-expiry": {Name: "tls-expiry", Outcome: plugins.Warning, Message: "expires in 9 days"}}
			}
			now := metav1.NewTime(t0.Add(time.Hour))
			summarize(ws, st, store.Summary{}, now)
			if ws.Status.State != tc.want || !ws.Status.LastTransitionTime.Equal(&now) {
				t.Errorf("state %s since %v, want %s since %v", ws.Status.State, ws.Status.LastTransitionTime, tc.want, now)
			}
			for typ, want := range map[string]metav1.ConditionStatus{monitoringv1alpha1.ConditionAvailable: tc.available, monitoringv1alpha1.ConditionDegraded: tc.degraded} {
				c := meta.FindStatusCondition(ws.Status.Conditions, typ)
				if c == nil || c.Status != want || c.Reason != tc.reason || c.ObservedGeneration != 2 || c.Message == "" {
					t.Errorf("%s: %+v, want %s with reason %s at generation 2", typ, c, want, tc.reason)
				}
			}
		})
	}
}

func TestSummarizeFields(t *testing.T) {
	a, b, gone := "https://a.example.com/", "https://b.example.com/", "https://gone.example.com/"
	ws, st := websiteWith(map[string]monitoringv1alpha1.URLState{a: up, b: down, gone: up}, a, b, gone)
	ws.Spec.URLs = ws.Spec.URLs[:2] // gone left the spec
	st.urls[a].plugins = map[string]plugins.Result{
		"tls-expiry": {Name: "tls-expiry", Outcome: plugins.OK, Message: "certificate for a.example.com expires in 90 days"},
		"html-stats": {Name: "html-stats", Outcome: plugins.Error, Message: "words 5 is 40.0σ below the mean 900 (30 checks)"},
	}
	st.urls[b].plugins = map[string]plugins.Result{"tls-expiry": {Name: "tls-expiry", Outcome: plugins.Warning, Message: "expires in 9 days"}}
	st.urls[b].lastError = strings.Repeat("x", 2000)
	sum := store.Summary{
		LastHour: store.Uptime{Checks: 120, Up: 119, P95: 180 * time.Millisecond},
		LastDay:  store.Uptime{Checks: 2880, Up: 2880, P95: 150 * time.Millisecond},
	}
	ws.Status.State = monitoringv1alpha1.WebsiteStateDegraded
	summarize(ws, st, sum, metav1.NewTime(t0.Add(time.Hour)))

	got := ws.Status
	if got.LastTransitionTime != nil {
		t.Errorf("the state did not change, yet its transition time was set to %v", got.LastTransitionTime)
	}
	if len(got.URLs) != 2 || got.URLs[0].URL != a || got.URLs[1].URL != b {
		t.Fatalf("urls %+v: want a and b, in spec order, without the URL that left the spec", got.URLs)
	}
	if u := got.URLs[1]; u.State != down || u.StatusCode != 503 || u.ConsecutiveFailures != 3 || len(u.Error) > maxMessage || !strings.HasSuffix(u.Error, "…") {
		t.Errorf("Down URL: %+v", u)
	}
	wantPlugins := []monitoringv1alpha1.PluginResult{
		{Name: "html-stats", Result: plugins.Error, Message: a + ": words 5 is 40.0σ below the mean 900 (30 checks)"},
		{Name: "tls-expiry", Result: plugins.Warning, Message: b + ": expires in 9 days"},
	}
	if diff := cmp.Diff(wantPlugins, got.Plugins); diff != "" {
		t.Errorf("plugins: the worst verdict of each, naming its URL (-want +got):\n%s", diff)
	}
	wantUptime := &monitoringv1alpha1.UptimeSummary{Last1h: "99.16%", Last24h: "100.00%", Ratio1h: ptrTo(0.9917), Ratio24h: ptrTo(1.0)}
	if diff := cmp.Diff(wantUptime, got.Uptime); diff != "" {
		t.Errorf("uptime (-want +got):\n%s", diff)
	}
	// The slowest latest check: b, the second URL, 200 ms; p95 from the rollups.
	if got.Latency == nil || got.Latency.Last.Duration != 200*time.Millisecond || got.Latency.P95.Duration != 180*time.Millisecond {
		t.Errorf("latency %+v, want last 200ms, p95 180ms", got.Latency)
	}
	if got.LastCheckTime == nil || !got.LastCheckTime.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("last check %v, want the newest URL's, %v", got.LastCheckTime, t0.Add(time.Second))
	}
}

func TestPercent(t *testing.T) {
	for r, want := range map[float64]string{1: "100.00%", 0.99999: "99.99%", 0.9995: "99.95%", 0.5: "50.00%", 0: "0.00%", 0.12345: "12.34%"} {
		if got := percent(r); got != want {
			t.Errorf("percent(%v) = %s, want %s", r, got, want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
