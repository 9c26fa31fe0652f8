package checker

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// TestChecksEndToEnd: tasks from Kafka become stored results, URL states,
// a Website status, and Events; a missed task is stored as missed, and
// malformed messages and tasks from a clock far ahead are counted and
// skipped.
func TestChecksEndToEnd(t *testing.T) {
	b := newBed(t)
	healthy := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, page(300)) })
	failing := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	ws := b.website("shop", []string{healthy.URL + "/", failing.URL + "/health"}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "html-stats", Config: map[string]string{"minSamples": "2"}}}
	})
	uid := string(ws.UID)
	c := b.start()

	now := time.Now()
	b.publishRaw(uid, []byte("garbage"))
	b.publishRaw(uid, []byte{9, 1, 2, 3})
	for round := range 3 {
		b.publish(tasks(ws, now.Add(time.Duration(round-3)*time.Second))...)
	}
	// From a scheduler whose clock is a day ahead: not checked.
	b.publish(tasks(ws, now.Add(24*time.Hour))...)
	late := tasks(ws, now.Add(-time.Hour))[0] // its deadline passed long ago
	b.publish(late)

	eventually(t, 20*time.Second, func() error {
		got := stored(t, uid)
		want := map[string]int{"up": 3, "down/unexpected_status": 3, "missed/missed": 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stored %v, want %v", got, want)
		}
		return nil
	})
	if n := testutil.ToFloat64(c.metrics.MalformedTasks.WithLabelValues("malformed")) + testutil.ToFloat64(c.metrics.MalformedTasks.WithLabelValues("unknown_version")); n != 2 {
		t.Errorf("%v malformed messages counted, want 2", n)
	}
	if n := testutil.ToFloat64(c.metrics.MalformedTasks.WithLabelValues("scheduled_ahead")); n != 2 {
		t.Errorf("%v tasks scheduled a day ahead counted, want 2", n)
	}
	if n := testutil.ToFloat64(c.metrics.MissedTasks); n != 1 {
		t.Errorf("%v missed tasks counted, want 1", n)
	}
	if healthy.hits.Load() != 3 || failing.hits.Load() != 3 {
		t.Errorf("targets hit %d and %d times, want 3 each (never for the missed task)", healthy.hits.Load(), failing.hits.Load())
	}

	eventually(t, 20*time.Second, func() error {
		got := b.get("shop").Status
		if got.State != monitoringv1alpha1.WebsiteStateDegraded || len(got.URLs) != 2 || got.URLs[1].State != monitoringv1alpha1.URLStateDown {
			return fmt.Errorf("status %s, urls %+v; want Degraded with the second URL Down", got.State, got.URLs)
		}
		return nil
	})
	checkShopStatus(t, b.get("shop").Status, healthy.URL, failing.URL)
	eventually(t, 10*time.Second, func() error {
		if u := b.get("shop").Status.Uptime; u == nil || u.Last1h != "50.00%" {
			return fmt.Errorf("uptime %+v, want 50.00%% over the last hour (3 of 6 checks passed; the missed one is no check)", u)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		events := &eventsv1.EventList{}
		if err := k8s.List(t.Context(), events, client.InNamespace(b.namespace)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == EventWebsiteDown && e.Regarding.UID == ws.UID && e.Type == "Warning" && strings.Contains(e.Note, failing.URL+"/health is Down: status 503") {
				return nil
			}
		}
		return fmt.Errorf("no WebsiteDown Event naming the failing URL among %d Events", len(events.Items))
	})
	// html-stats kept a history of the healthy page: three checks counted.
	var n int
	if err := db.QueryRow(t.Context(), `SELECT (p.state->'stats'->'words'->>'n')::int FROM plugin_state p JOIN urls u USING (url_id)
		WHERE u.website_uid = $1 AND u.url = $2`, uid, healthy.URL+"/").Scan(&n); err != nil || n != 3 {
		t.Errorf("html-stats history of the healthy URL: %d checks counted, %v; want 3", n, err)
	}
}

// TestRedeliveredTaskStoredOnce: the same task twice (a redelivery) is
// stored, counted and summarised once.
func TestRedeliveredTaskStoredOnce(t *testing.T) {
	b := newBed(t)
	healthy := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") })
	ws := b.website("once", []string{healthy.URL})
	b.start()
	ts := tasks(ws, time.Now().Add(-time.Second))
	b.publish(ts...)
	b.publish(ts...)
	eventually(t, 20*time.Second, func() error {
		if healthy.hits.Load() < 2 {
			return fmt.Errorf("%d checks made, want both deliveries checked", healthy.hits.Load())
		}
		var checks int
		if err := db.QueryRow(t.Context(), "SELECT coalesce(sum(checks), 0) FROM rollups_minute WHERE website_uid = $1", ws.UID).Scan(&checks); err != nil {
			return err
		}
		if got := stored(t, string(ws.UID)); got["up"] != 1 || checks != 1 {
			return fmt.Errorf("stored %v, %d checks rolled up; want one result, counted once", got, checks)
		}
		return nil
	})
	// Give a wrongly doubled count time to show.
	time.Sleep(time.Second)
	var checks int
	if err := db.QueryRow(t.Context(), "SELECT sum(checks) FROM rollups_minute WHERE website_uid = $1", ws.UID).Scan(&checks); err != nil || checks != 1 {
		t.Errorf("%d checks rolled up, %v; want 1", checks, err)
	}
}

// checkShopStatus checks the status fields of TestChecksEndToEnd's
// Website: the healthy URL Up, the failing one Down with its error.
func checkShopStatus(t *testing.T, got monitoringv1alpha1.WebsiteStatus, healthy, failing string) {
	t.Helper()
	if u := got.URLs[0]; u.URL != healthy+"/" || u.State != monitoringv1alpha1.URLStateUp || u.StatusCode != 200 || u.LastCheckTime == nil || u.Latency.Duration <= 0 {
		t.Errorf("healthy URL: %+v", u)
	}
	if u := got.URLs[1]; u.URL != failing+"/health" || u.StatusCode != 503 || u.ConsecutiveFailures != 3 || !strings.Contains(u.Error, "status 503") {
		t.Errorf("failing URL: %+v", u)
	}
	if c := meta.FindStatusCondition(got.Conditions, monitoringv1alpha1.ConditionDegraded); c == nil || c.Reason != monitoringv1alpha1.ReasonSomeURLsDown {
		t.Errorf("Degraded condition %+v", c)
	}
	if got.LastCheckTime == nil || got.Latency == nil {
		t.Errorf("last check %v, latency %v: want both set", got.LastCheckTime, got.Latency)
	}
}
