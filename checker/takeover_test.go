package checker

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// TestRebuildAfterReassignment: a checker that takes a Website's partition
// over rebuilds the URL state machine and the html-stats history from
// PostgreSQL and goes on where the previous owner stopped. Without the
// rebuild the new owner would start from Pending: one failure would not
// turn the URL Down, and html-stats would count from zero.
func TestRebuildAfterReassignment(t *testing.T) {
	b := newBed(t)
	site, failing := serveFlaky(t, http.StatusInternalServerError, page(200))
	ws := b.website("moving", []string{site.URL}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.FailureThreshold = 3
		s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "html-stats"}}
	})
	uid := string(ws.UID)
	at := time.Now().Add(-20 * time.Second)
	publish := func(n int, fail bool) {
		failing.Store(fail)
		for range n {
			at = at.Add(time.Second)
			b.publish(tasks(ws, at)...)
		}
	}
	waitStored := func(want int) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			n := stored(t, uid)
			if got := n["up"] + n["down/unexpected_status"]; got != want {
				return fmt.Errorf("stored %v, want %d checks", n, want)
			}
			return nil
		})
	}
	historyCount := func() int {
		var n int
		if err := db.QueryRow(t.Context(), `SELECT (p.state->'stats'->'words'->>'n')::int FROM plugin_state p JOIN urls u USING (url_id)
			WHERE u.website_uid = $1`, uid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	first := b.start()
	// Three passes (Up; three words counts for html-stats), then two
	// failures: under the threshold of three, still Up.
	publish(3, false)
	waitStored(3)
	publish(2, true)
	waitStored(5)
	if got := urlStateOf(t, uid, site.URL); got != "Up" {
		t.Fatalf("URL %s after 3 passes and 2 failures, want Up", got)
	}

	// A second checker joins the group, then the first leaves: the second
	// owns every partition now, the Website's among them.
	second := b.start()
	eventually(t, 30*time.Second, func() error {
		if !second.batcher.assigned() {
			return fmt.Errorf("the second checker has no partition yet")
		}
		return nil
	})
	first.stop()
	publish(1, true)
	waitStored(6)
	if got := urlStateOf(t, uid, site.URL); got != "Down" {
		t.Errorf("URL %s after a third failure on the new owner, want Down: the two before were not rebuilt", got)
	}
	eventually(t, 10*time.Second, func() error {
		if s := b.get("moving").Status; s.State != monitoringv1alpha1.WebsiteStateDown || s.URLs[0].ConsecutiveFailures != 3 {
			return fmt.Errorf("status %s with %+v, want Down after 3 failures in a row", s.State, s.URLs)
		}
		return nil
	})
	if n := len(b.events(ws, EventWebsiteDown)); n != 1 {
		t.Errorf("%d WebsiteDown Events, want 1", n)
	}

	// html-stats' history went on from three checks; failed checks have
	// no page to measure.
	publish(1, false)
	waitStored(7)
	if n := historyCount(); n != 4 {
		t.Errorf("html-stats history counts %d checks, want 4 (3 on the first checker, 1 on the second)", n)
	}
}

// assigned reports whether the consumer group gave the checker partitions.
func (b *batcher) assigned() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owned != nil
}
