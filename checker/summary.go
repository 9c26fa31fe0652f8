package checker

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
)

// maxMessage is the longest message kept in a status field.
const maxMessage = 1024

// snapshot copies what the status needs of w, for the status writer to
// read while the batcher goes on.
func (w *websiteState) snapshot() *websiteState {
	c := &websiteState{uid: w.uid, namespace: w.namespace, name: w.name, partition: w.partition, urls: make(map[string]*urlState, len(w.urls))}
	for u, s := range w.urls {
		copied := *s
		copied.plugins = maps.Clone(s.plugins)
		copied.histories = nil
		c.urls[u] = &copied
	}
	return c
}

// summarize sets the parts of ws's status that the checkers own, from the
// state of its URLs and the rollups: the state and its conditions, the
// URLs, the plugins, latency, uptime and the last check. URLs no longer in
// the spec are left out; URLs not checked yet are Pending.
func summarize(ws *monitoringv1alpha1.Website, st *websiteState, sum store.Summary, now metav1.Time) {
	status := &ws.Status
	urls := make([]monitoringv1alpha1.URLStatus, 0, len(ws.Spec.URLs))
	worst := map[string]monitoringv1alpha1.PluginResult{}
	var up, down int
	var lastCheck time.Time
	var slowest time.Duration
	for _, specURL := range ws.Spec.URLs {
		u := string(specURL)
		s := st.urls[u]
		if s == nil || s.lastCheckedAt.IsZero() {
			urls = append(urls, monitoringv1alpha1.URLStatus{URL: u, State: monitoringv1alpha1.URLStatePending})
			continue
		}
		switch s.state {
		case monitoringv1alpha1.URLStateUp:
			up++
		case monitoringv1alpha1.URLStateDown:
			down++
		}
		us := monitoringv1alpha1.URLStatus{
			URL: u, State: s.state, StatusCode: int32(s.statusCode), Latency: metav1.Duration{Duration: roundLatency(s.latency)},
			Error: truncate(s.lastError, maxMessage), ConsecutiveFailures: s.consecutiveFailures,
			LastCheckTime: &metav1.Time{Time: s.lastCheckedAt.Truncate(time.Second)},
		}
		if !s.since.IsZero() {
			us.LastTransitionTime = &metav1.Time{Time: s.since.Truncate(time.Second)}
		}
		urls = append(urls, us)
		if s.lastCheckedAt.After(lastCheck) {
			lastCheck = s.lastCheckedAt
		}
		slowest = max(slowest, s.latency)
		for _, name := range slices.Sorted(maps.Keys(s.plugins)) {
			r := s.plugins[name]
			if w, ok := worst[name]; ok && severity(w.Result) >= severity(r.Outcome) {
				continue
			}
			msg := r.Message
			if r.Outcome != plugins.OK {
				msg = u + ": " + msg
			}
			worst[name] = monitoringv1alpha1.PluginResult{Name: name, Result: r.Outcome, Message: truncate(msg, maxMessage)}
		}
	}
	status.URLs = urls
	status.Plugins = nil
	findings := 0
	for _, name := range slices.Sorted(maps.Keys(worst)) {
		status.Plugins = append(status.Plugins, worst[name])
		if worst[name].Result != plugins.OK {
			findings++
		}
	}

	state, reason := overallState(up, down, findings)
	if state != status.State {
		status.State = state
		status.LastTransitionTime = &now
	}
	setHealthConditions(ws, reason, up, down, now)

	if !lastCheck.IsZero() {
		status.LastCheckTime = &metav1.Time{Time: lastCheck.Truncate(time.Second)}
		status.Latency = &monitoringv1alpha1.LatencySummary{
			Last: metav1.Duration{Duration: roundLatency(slowest)},
			P95:  metav1.Duration{Duration: roundLatency(sum.LastHour.P95)},
		}
	}
	if sum.LastHour.Checks > 0 || sum.LastDay.Checks > 0 {
		status.Uptime = &monitoringv1alpha1.UptimeSummary{}
		if r, ok := sum.LastHour.Ratio(); ok {
			status.Uptime.Last1h, status.Uptime.Ratio1h = percent(r), ptr.To(round4(r))
		}
		if r, ok := sum.LastDay.Ratio(); ok {
			status.Uptime.Last24h, status.Uptime.Ratio24h = percent(r), ptr.To(round4(r))
		}
	}
}

// overallState is a Website's state from its URLs and plugins: Pending
// until a URL is checked; Down when no URL is Up and one is Down; Degraded
// when some URLs are Down, or a plugin has a finding; else Up.
func overallState(up, down, findings int) (monitoringv1alpha1.WebsiteState, string) {
	switch {
	case up == 0 && down == 0:
		return monitoringv1alpha1.WebsiteStatePending, monitoringv1alpha1.ReasonNoChecksYet
	case up == 0:
		return monitoringv1alpha1.WebsiteStateDown, monitoringv1alpha1.ReasonAllURLsDown
	case down > 0:
		return monitoringv1alpha1.WebsiteStateDegraded, monitoringv1alpha1.ReasonSomeURLsDown
	case findings > 0:
		return monitoringv1alpha1.WebsiteStateDegraded, monitoringv1alpha1.ReasonPluginFindings
	}
	return monitoringv1alpha1.WebsiteStateUp, monitoringv1alpha1.ReasonAllURLsUp
}

// setHealthConditions sets Available (a URL is Up and none is Down) and
// Degraded (some URLs are Down, or a plugin has a finding).
func setHealthConditions(ws *monitoringv1alpha1.Website, reason string, up, down int, now metav1.Time) {
	available := metav1.Condition{Type: monitoringv1alpha1.ConditionAvailable, Reason: reason, ObservedGeneration: ws.Generation, LastTransitionTime: now}
	degraded := metav1.Condition{Type: monitoringv1alpha1.ConditionDegraded, Reason: reason, ObservedGeneration: ws.Generation, LastTransitionTime: now}
	checked := fmt.Sprintf("%d of %d URLs Up, %d Down", up, len(ws.Spec.URLs), down)
	switch reason {
	case monitoringv1alpha1.ReasonNoChecksYet:
		available.Status, available.Message = metav1.ConditionUnknown, "no check has completed yet"
		degraded.Status, degraded.Message = metav1.ConditionUnknown, "no check has completed yet"
	case monitoringv1alpha1.ReasonAllURLsDown:
		available.Status, available.Message = metav1.ConditionFalse, checked
		degraded.Status, degraded.Message = metav1.ConditionFalse, "every checked URL is Down: the Website is Down, not degraded"
	case monitoringv1alpha1.ReasonSomeURLsDown:
		available.Status, available.Message = metav1.ConditionFalse, checked
		degraded.Status, degraded.Message = metav1.ConditionTrue, checked
	case monitoringv1alpha1.ReasonPluginFindings:
		available.Status, available.Message = metav1.ConditionTrue, checked
		degraded.Status, degraded.Message = metav1.ConditionTrue, pluginFindings(ws.Status.Plugins)
	default:
		available.Status, available.Message = metav1.ConditionTrue, checked
		degraded.Status, degraded.Message = metav1.ConditionFalse, checked
	}
	meta.SetStatusCondition(&ws.Status.Conditions, available)
	meta.SetStatusCondition(&ws.Status.Conditions, degraded)
}

func pluginFindings(results []monitoringv1alpha1.PluginResult) string {
	var parts []string
	for _, r := range results {
		if r.Result != plugins.OK {
			parts = append(parts, fmt.Sprintf("%s %s: %s", r.Name, r.Result, r.Message))
		}
	}
	return truncate(strings.Join(parts, "; "), maxMessage)
}

var severities = map[monitoringv1alpha1.PluginOutcome]int{plugins.OK: 1, plugins.Warning: 2, plugins.Error: 3}

func severity(o monitoringv1alpha1.PluginOutcome) int { return severities[o] }

// percent renders an uptime ratio for people: two decimals, never
// rounded up to 100% while a check failed.
func percent(r float64) string {
	p := r * 100
	if p < 100 && p > 99.99 {
		p = 99.99
	}
	return fmt.Sprintf("%.2f%%", float64(int64(p*100))/100)
}

// roundLatency keeps a latency to the millisecond, or to the microsecond
// under a millisecond, which a target on the same network can answer in.
func roundLatency(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

func round4(r float64) float64 { return float64(int64(r*10000+0.5)) / 10000 }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
