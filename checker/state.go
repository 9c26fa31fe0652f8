package checker

import (
	"encoding/json"
	"time"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
)

// urlState is what a checker knows of one URL of a Website it owns: the
// state machine's state, and the latest check for the status.
type urlState struct {
	url   string
	state monitoringv1alpha1.URLState
	// since is when the URL entered state.
	since time.Time
	// consecutiveFailures and consecutiveSuccesses count the latest
	// failed or passed checks in a row.
	consecutiveFailures, consecutiveSuccesses int32
	// lastScheduledAt is the newest check applied: an older result (out
	// of order, or redelivered) is stored but moves nothing.
	lastScheduledAt time.Time

	lastCheckedAt time.Time
	statusCode    int
	latency       time.Duration
	// lastError says why the latest check failed; empty if it passed.
	lastError string
	// plugins are the latest verdicts, by plugin name.
	plugins map[string]plugins.Result
	// histories are the stateful plugins' histories, loaded on first use.
	histories map[string]*plugins.History
	// recorded is true once the URL is in PostgreSQL's urls table.
	recorded bool
}

// websiteState is what a checker knows of a Website it owns.
type websiteState struct {
	uid, namespace, name string
	// partition is the Kafka partition of the Website's tasks: the state
	// is dropped when the partition moves to another checker.
	partition int32
	urls      map[string]*urlState
}

func (w *websiteState) url(u string) *urlState {
	s := w.urls[u]
	if s == nil {
		s = &urlState{url: u, state: monitoringv1alpha1.URLStatePending}
		w.urls[u] = s
	}
	return s
}

// transition is a URL changing state, for the store, the status and an
// Event.
type transition struct {
	url      string
	from, to monitoringv1alpha1.URLState
	at       time.Time
	// scheduledAt is the check that caused it.
	scheduledAt time.Time
	// reason is the failed check's error, for a transition to Down.
	reason string
	// downFor is how long the URL was Down, for a transition to Up.
	downFor time.Duration
}

// checkOutcome is what the state machine needs of one check.
type checkOutcome struct {
	scheduledAt, checkedAt time.Time
	up                     bool
	statusCode             int
	latency                time.Duration
	err                    string
	plugins                []plugins.Result
}

// apply moves a URL's state machine by one check: failureThreshold failed
// checks in a row turn it Down, successThreshold passed ones turn a Down
// URL Up again, and the first passed check turns a Pending URL Up. A check
// older than the newest applied moves nothing.
func (s *urlState) apply(c checkOutcome, failureThreshold, successThreshold int32) *transition {
	if !c.scheduledAt.After(s.lastScheduledAt) {
		return nil
	}
	s.lastScheduledAt = c.scheduledAt
	s.lastCheckedAt, s.statusCode, s.latency, s.lastError = c.checkedAt, c.statusCode, c.latency, c.err
	for _, r := range c.plugins {
		if s.plugins == nil {
			s.plugins = map[string]plugins.Result{}
		}
		s.plugins[r.Name] = r
	}
	to := s.state
	if c.up {
		s.consecutiveFailures = 0
		s.consecutiveSuccesses++
		if s.state == monitoringv1alpha1.URLStatePending || s.consecutiveSuccesses >= max(successThreshold, 1) {
			to = monitoringv1alpha1.URLStateUp
		}
	} else {
		s.consecutiveSuccesses = 0
		s.consecutiveFailures++
		if s.consecutiveFailures >= max(failureThreshold, 1) {
			to = monitoringv1alpha1.URLStateDown
		}
	}
	if to == s.state {
		return nil
	}
	t := &transition{url: s.url, from: s.state, to: to, at: c.checkedAt, scheduledAt: c.scheduledAt}
	switch to {
	case monitoringv1alpha1.URLStateDown:
		t.reason = c.err
	case monitoringv1alpha1.URLStateUp:
		if s.state == monitoringv1alpha1.URLStateDown && !s.since.IsZero() {
			t.downFor = c.checkedAt.Sub(s.since)
		}
	}
	s.state, s.since = to, c.checkedAt
	return t
}

// restore rebuilds a URL's state from what PostgreSQL holds: the state it
// settled on, and its latest results (newest first) for the counts in a
// row and the latest check.
func restore(stored store.StoredURL) *urlState {
	s := &urlState{url: stored.URL, state: monitoringv1alpha1.URLStatePending}
	if stored.State != "" {
		s.state = monitoringv1alpha1.URLState(stored.State)
		s.since = stored.Since
		s.lastScheduledAt = stored.ScheduledAt
	}
	if len(stored.Recent) == 0 {
		return s
	}
	latest := stored.Recent[0]
	s.lastScheduledAt = latest.ScheduledAt
	s.lastCheckedAt, s.statusCode, s.latency, s.lastError = latest.CheckedAt, latest.StatusCode, latest.Total, latest.ErrorMessage
	for _, r := range stored.Recent {
		if r.Outcome != latest.Outcome {
			break
		}
		if r.Outcome == store.OutcomeUp {
			s.consecutiveSuccesses++
		} else {
			s.consecutiveFailures++
		}
	}
	// The latest verdict of each plugin, from the newest result that has one.
	for _, r := range stored.Recent {
		var verdicts []plugins.Result
		if len(r.Plugins) == 0 || json.Unmarshal(r.Plugins, &verdicts) != nil {
			continue
		}
		for _, v := range verdicts {
			if _, seen := s.plugins[v.Name]; !seen {
				if s.plugins == nil {
					s.plugins = map[string]plugins.Result{}
				}
				s.plugins[v.Name] = v
			}
		}
	}
	return s
}
