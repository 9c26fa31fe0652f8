package checker

import (
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/internal/task"
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

// TestBatchPreparedWhileWebsiteForgotten: a Website forgotten while its
// batch is prepared (deleted, or its partition given away at a rebalance,
// both from other goroutines) has its results stored all the same, and
// does not crash the checker. The batcher loads the state, releases its
// lock for PostgreSQL, and takes it again; forgets race with that.
func TestBatchPreparedWhileWebsiteForgotten(t *testing.T) {
	opts := DefaultOptions()
	opts.Store = st
	c := New(opts)
	const uid = "5b7a3f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
	forgetting := make(chan struct{})
	var stopped sync.WaitGroup
	stopped.Go(func() {
		for {
			select {
			case <-forgetting:
				return
			default:
				c.batcher.forget(uid)
				runtime.Gosched()
			}
		}
	})
	defer func() { close(forgetting); stopped.Wait() }()
	at := time.Now().Add(-time.Hour)
	for i := range 300 {
		tk := &task.Task{UID: uid, Namespace: "shop", Name: "forgotten", URL: "https://shop.example.com/", FailureThreshold: 1, SuccessThreshold: 1}
		tk.ScheduledAt = at.Add(time.Duration(i) * time.Second)
		// html-stats' history is read with the lock released: the
		// widest window.
		it := item{checked: &checked{task: tk, result: store.Result{
			WebsiteUID: uid, Namespace: "shop", Name: "forgotten", URL: tk.URL, ScheduledAt: tk.ScheduledAt, CheckedAt: tk.ScheduledAt, Outcome: store.OutcomeUp,
		}, measured: []plugins.Result{{Name: "html-stats", Outcome: plugins.OK, Values: map[string]float64{"bytes": 2600}}}}}
		pb := c.batcher.prepare(t.Context(), []item{it})
		if pb == nil || len(pb.batch.Results) != 1 || pb.batch.Results[0].ScheduledAt != tk.ScheduledAt {
			t.Fatalf("batch %d prepared as %+v, want its one result", i, pb)
		}
	}
}
