package checker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// urlState reads the state a URL settled on from PostgreSQL.
func urlStateOf(t *testing.T, uid, url string) string {
	t.Helper()
	var state string
	if err := db.QueryRow(t.Context(), "SELECT state FROM urls WHERE website_uid = $1 AND url = $2", uid, url).Scan(&state); err != nil {
		return "none: " + err.Error()
	}
	return state
}

// events lists the Events of a Website with a reason.
func (b *bed) events(ws *monitoringv1alpha1.Website, reason string) []eventsv1.Event {
	b.t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(b.t.Context(), list, client.InNamespace(b.namespace)); err != nil {
		b.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.UID == ws.UID {
			out = append(out, e)
		}
	}
	return out
}

// TestThresholdsAndEvents: failureThreshold failed checks in a row turn a
// URL Down, with a Warning Event naming the URL and the error;
// successThreshold passed ones turn it Up again, with a Normal Event
// saying how long it was Down. Fewer move nothing.
func TestThresholdsAndEvents(t *testing.T) {
	b := newBed(t)
	site, failing := serveFlaky(t, http.StatusBadGateway, "ok")
	ws := b.website("flaky", []string{site.URL}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.FailureThreshold, s.SuccessThreshold = 2, 2
	})
	uid := string(ws.UID)
	b.start()

	at := time.Now().Add(-20 * time.Second)
	checks := 0
	step := func(fail bool, wantURL, wantWebsite string) {
		t.Helper()
		failing.Store(fail)
		at = at.Add(time.Second)
		checks++
		b.publish(tasks(ws, at)...)
		eventually(t, 20*time.Second, func() error {
			if n := stored(t, uid); n["up"]+n["down/unexpected_status"] != checks {
				return fmt.Errorf("stored %v, want %d checks", n, checks)
			}
			return nil
		})
		if got := urlStateOf(t, uid, site.URL); got != wantURL {
			t.Fatalf("after check %d (failing %v): URL %s in PostgreSQL, want %s", checks, fail, got, wantURL)
		}
		eventually(t, 10*time.Second, func() error {
			if got := b.get("flaky").Status.State; string(got) != wantWebsite {
				return fmt.Errorf("after check %d: Website %s, want %s", checks, got, wantWebsite)
			}
			return nil
		})
	}
	step(false, "Up", "Up")
	step(true, "Up", "Up") // one failure of two
	if n := len(b.events(ws, EventWebsiteDown)); n != 0 {
		t.Errorf("%d WebsiteDown Events under the failure threshold", n)
	}
	step(true, "Down", "Down")
	down := b.events(ws, EventWebsiteDown)
	if len(down) != 1 || down[0].Type != "Warning" || !strings.Contains(down[0].Note, site.URL+" is Down: status 502") {
		t.Fatalf("WebsiteDown Events %+v, want one Warning naming the URL and its status", down)
	}
	step(false, "Down", "Down") // one success of two
	step(false, "Up", "Up")
	upAgain := b.events(ws, EventWebsiteUp)
	if len(upAgain) != 1 || upAgain[0].Type != "Normal" || !strings.Contains(upAgain[0].Note, site.URL+" is Up again after") {
		t.Fatalf("WebsiteUp Events %+v, want one Normal saying how long it was Down", upAgain)
	}
	if u := b.get("flaky").Status.URLs[0]; u.ConsecutiveFailures != 0 || u.LastTransitionTime == nil {
		t.Errorf("URL status after recovery: %+v", u)
	}
}

// TestStatusWritesThrottled: a Website checked many times a second has
// its status written on a state change at once, and otherwise at most once
// per StatusInterval, as the API server sees it.
func TestStatusWritesThrottled(t *testing.T) {
	b := newBed(t)
	site := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") })
	ws := b.website("busy", []string{site.URL, site.URL + "/a", site.URL + "/b"})
	const interval = 2 * time.Second
	var reads atomic.Int32
	c := b.start(func(o *Options) {
		o.StatusInterval = interval
		o.Reader = countingReader{Reader: o.Reader, websites: &reads}
	})

	// Count the status writes at the API server: every MODIFIED event of
	// the Website.
	w, err := k8s.Watch(t.Context(), &monitoringv1alpha1.WebsiteList{}, client.InNamespace(b.namespace),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", "busy")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var writes atomic.Int32
	go func() {
		for e := range w.ResultChan() {
			if e.Type == watch.Modified {
				writes.Add(1)
			}
		}
	}()

	// 10 rounds a second for 7 s: 210 checks.
	start := time.Now()
	at := start.Add(-10 * time.Second)
	published := 0
	for time.Since(start) < 7*time.Second {
		at = at.Add(10 * time.Millisecond)
		b.publish(tasks(ws, at)...)
		published += len(ws.Spec.URLs)
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	eventually(t, 20*time.Second, func() error {
		if n := stored(t, string(ws.UID))["up"]; n != published {
			return fmt.Errorf("%d results stored, want %d", n, published)
		}
		return nil
	})
	got := int(writes.Load())
	// The first checks turn the URLs Up: written at once. Then at most one
	// write per interval, and one after the last checks, once they are
	// rolled up; at least one more than the first, or nothing would be
	// summarised between state changes.
	most := 1 + int(elapsed/interval) + 2
	t.Logf("%d status writes at the API server for about %d checks over %s (status interval %s)", got, published, elapsed.Round(time.Second), interval)
	if got > most || got < 2 {
		t.Errorf("%d status writes, want 2 to %d", got, most)
	}
	if n := testutil.ToFloat64(c.metrics.StatusWrites.WithLabelValues(statusWritten)); int(n) != got {
		t.Errorf("webmon_checker_status_writes_total{result=written} = %v, the API server saw %d", n, got)
	}
	// Nobody else wrote the Website: only the first write read it, the
	// others started from what the API server returned.
	if n := reads.Load(); n != 1 {
		t.Errorf("the Website was read %d times for %d status writes, want once", n, got)
	}
	busy := b.get("busy")
	if s := busy.Status; s.State != monitoringv1alpha1.WebsiteStateUp || s.Uptime == nil || s.Uptime.Last1h != "100.00%" {
		t.Errorf("status %s, uptime %+v; want Up at 100.00%%", s.State, s.Uptime)
	}
	// status.urls is an atomic list: the API server tracks it as one
	// field, not one managedFields entry per URL that every write, read and
	// watch event of the Website would carry.
	owned := false
	for _, mf := range busy.ManagedFields {
		if mf.Subresource != "status" || mf.FieldsV1 == nil {
			continue
		}
		set := mf.FieldsV1.GetRawString()
		if strings.Contains(set, `"k:{\"url\"`) {
			t.Errorf("managedFields of %s track status.urls per URL: %s", mf.Manager, set)
		}
		owned = owned || strings.Contains(set, `"f:urls":{}`)
	}
	if !owned {
		t.Errorf("no status managedFields entry owns status.urls whole: %+v", busy.ManagedFields)
	}
}

// countingReader counts the reads of Websites.
type countingReader struct {
	client.Reader
	websites *atomic.Int32
}

func (r countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*monitoringv1alpha1.Website); ok {
		r.websites.Add(1)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// TestStatusWriteConflicts: while another writer (the operator) keeps
// updating its own status fields, the checker's writes conflict, are
// retried, and neither writer loses the other's fields.
func TestStatusWriteConflicts(t *testing.T) {
	b := newBed(t)
	site, failing := serveFlaky(t, http.StatusInternalServerError, "ok")
	ws := b.website("contended", []string{site.URL}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.FailureThreshold, s.SuccessThreshold = 1, 1
	})
	c := b.start()

	// The operator's stand-in: status.urlCount, updated as fast as it can
	// with a fresh read each time, as controller-runtime's Update does.
	ctx, stop := context.WithCancel(t.Context())
	var operatorWrites atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			got := &monitoringv1alpha1.Website{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(ws), got); err != nil {
				continue
			}
			got.Status.URLCount = operatorWrites.Load()%7 + 1
			if err := k8s.Status().Update(ctx, got); err == nil {
				operatorWrites.Add(1)
			}
		}
	}()
	// Every check a state change, written at once, until a write of the
	// checker has met a conflict.
	at := time.Now().Add(-20 * time.Second)
	for i := 0; testutil.ToFloat64(c.metrics.StatusWrites.WithLabelValues(statusConflict)) == 0; i++ {
		if i == 200 {
			t.Fatal("200 state changes and no status write of the checker conflicted with the other writer")
		}
		failing.Store(i%2 == 1)
		at = at.Add(time.Second)
		b.publish(tasks(ws, at)...)
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	<-done
	last := b.get("contended").Status.URLCount

	// The last state: Up, after a last passing check, written in spite of
	// the conflicts; the operator's field as it left it.
	failing.Store(false)
	b.publish(tasks(ws, at.Add(time.Second))...)
	eventually(t, 20*time.Second, func() error {
		got := b.get("contended").Status
		if got.State != monitoringv1alpha1.WebsiteStateUp || len(got.URLs) != 1 || got.URLs[0].LastCheckTime == nil {
			return fmt.Errorf("state %s, urls %+v: want Up after the last check", got.State, got.URLs)
		}
		if got.URLCount != last {
			return fmt.Errorf("urlCount %d: the checker overwrote the other writer's %d", got.URLCount, last)
		}
		return nil
	})
	t.Logf("%d writes of the other writer; the checker's: %v written, %v conflicts", operatorWrites.Load(),
		testutil.ToFloat64(c.metrics.StatusWrites.WithLabelValues(statusWritten)), testutil.ToFloat64(c.metrics.StatusWrites.WithLabelValues(statusConflict)))
}

// TestReleasedWebsitesForgotten: when a rebalance takes a partition away,
// the checker drops what it kept to write the status of its Websites,
// the last written copy among it, not only their state.
func TestReleasedWebsitesForgotten(t *testing.T) {
	c := New(DefaultOptions())
	for uid, partition := range map[string]int32{"kept": 2, "moved": 1} {
		c.batcher.websites[uid] = &websiteState{uid: uid, partition: partition}
		c.status.touched(uid, types.NamespacedName{Namespace: "shop", Name: uid}, false)
		c.status.written[uid] = &monitoringv1alpha1.Website{}
	}
	c.batcher.own(map[int32]bool{2: true})
	c.status.mu.Lock()
	defer c.status.mu.Unlock()
	if len(c.status.written) != 1 || c.status.written["kept"] == nil || len(c.status.names) != 1 || len(c.status.lastStored) != 1 {
		t.Errorf("after the rebalance the status writer keeps %d written copies, %d names, %d store times; want only the kept Website's",
			len(c.status.written), len(c.status.names), len(c.status.lastStored))
	}
}

// TestDeletedWebsiteForgotten: once a Website is deleted, the checker
// drops all it kept of it (its URL states, what it last wrote), though it
// writes statuses from its own last copy: the write that follows its last
// results reads the Website afresh.
func TestDeletedWebsiteForgotten(t *testing.T) {
	b := newBed(t)
	site := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") })
	ws := b.website("deleted", []string{site.URL})
	uid := string(ws.UID)
	c := b.start()
	b.publish(tasks(ws, time.Now().Add(-time.Second))...)
	eventually(t, 20*time.Second, func() error {
		if got := b.get("deleted").Status.State; got != monitoringv1alpha1.WebsiteStateUp {
			return fmt.Errorf("state %q, want Up", got)
		}
		return nil
	})
	if err := k8s.Delete(t.Context(), ws); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		c.batcher.mu.Lock()
		state := c.batcher.websites[uid] != nil
		c.batcher.mu.Unlock()
		c.status.mu.Lock()
		_, named := c.status.names[uid]
		written := c.status.written[uid] != nil
		c.status.mu.Unlock()
		if state || named || written {
			return fmt.Errorf("the checker still keeps the deleted Website: state %v, name %v, last written copy %v", state, named, written)
		}
		return nil
	})
}
