package checker

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/checker/plugins"
	"github.com/webmon-dev/webmon/internal/store"
)

// rebuildWindow is how far back a checker taking a Website over reads its
// results.
const rebuildWindow = 7 * 24 * time.Hour

// item is a check on its way to the store, with the message it came from.
type item struct {
	*checked
	ref messageRef
}

// preparedBatch is a batch whose state changes are applied, ready to store.
type preparedBatch struct {
	items       []item
	batch       store.Batch
	transitions []websiteTransition
	// touched are the Websites whose state the batch moved, by UID.
	touched map[string]types.NamespacedName
}

type websiteTransition struct {
	namespace, name, uid string
	transition
}

// batcher gathers checks into batches (BatchSize, or what arrived within
// BatchInterval), applies them to the state of the Websites this checker
// owns, and hands them to the writers. It is the one place that changes
// that state; the status writer reads it through snapshot.
type batcher struct {
	c      *Checker
	in     chan item
	writes chan *preparedBatch

	mu       sync.Mutex
	websites map[string]*websiteState
	// owned are the partitions this checker owns; nil until the first
	// assignment, meaning all.
	owned map[int32]bool
}

func newBatcher(c *Checker) *batcher {
	return &batcher{
		c:        c,
		in:       make(chan item, c.opts.BatchSize),
		writes:   make(chan *preparedBatch, c.opts.Writers),
		websites: map[string]*websiteState{},
	}
}

func (b *batcher) add(c *checked, ref messageRef) { b.in <- item{checked: c, ref: ref} }

// own drops the state of Websites on partitions this checker no longer
// owns: their next owner rebuilds it from PostgreSQL.
func (b *batcher) own(owned map[int32]bool) {
	b.mu.Lock()
	b.owned = owned
	var gone []string
	maps.DeleteFunc(b.websites, func(uid string, w *websiteState) bool {
		released := !owned[w.partition]
		if released {
			gone = append(gone, uid)
		}
		return released
	})
	b.mu.Unlock()
	// Nor does this checker write their status any more.
	for _, uid := range gone {
		b.c.status.forget(uid)
	}
}

// snapshot is a copy of a Website's state, or nil when this checker does
// not own it.
func (b *batcher) snapshot(uid string) *websiteState {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.websites[uid]
	if w == nil || (b.owned != nil && !b.owned[w.partition]) {
		return nil
	}
	return w.snapshot()
}

// forget drops a Website's state (it was deleted).
func (b *batcher) forget(uid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.websites, uid)
}

// run batches until in is closed, then flushes what it has and closes
// writes. Preparing a batch may wait for PostgreSQL; ctx ends the wait.
func (b *batcher) run(ctx context.Context) {
	defer close(b.writes)
	var items []item
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(items) == 0 {
			return
		}
		if pb := b.prepare(ctx, items); pb != nil {
			b.writes <- pb
		}
		items = nil
	}
	for {
		select {
		case it, ok := <-b.in:
			if !ok {
				flush()
				return
			}
			if len(items) == 0 {
				timer.Reset(b.c.opts.BatchInterval)
			}
			items = append(items, it)
			if len(items) >= b.c.opts.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// prepare loads the state of Websites and URLs new to this checker, then
// applies the checks to it in the order they were scheduled: stateful
// plugins judge against their history, and URL state machines move. It
// returns nil only when ctx ends first.
func (b *batcher) prepare(ctx context.Context, items []item) *preparedBatch {
	if err := b.retry(ctx, "loading Website state", func() error { return b.load(ctx, items) }); err != nil {
		return nil
	}
	slices.SortStableFunc(items, func(x, y item) int { return x.result.ScheduledAt.Compare(y.result.ScheduledAt) })
	pb := &preparedBatch{items: items, touched: map[string]types.NamespacedName{}}
	pb.batch.Results = make([]store.Result, len(items))

	b.mu.Lock()
	defer b.mu.Unlock()
	for i, it := range items {
		t, r := it.task, &it.result
		verdicts := it.verdicts
		ws := b.websites[t.UID]
		if ws == nil {
			// Forgotten since load, the lock released (the Website was
			// deleted, or a rebalance gave its partition away): the result
			// is stored, but its state is no longer this checker's to keep.
			r.Plugins = marshalVerdicts(verdicts)
			pb.batch.Results[i] = *r
			continue
		}
		ws.partition = it.ref.partition
		us := ws.url(t.URL)
		urlID := store.URLID(t.UID, t.URL)
		if !us.recorded {
			pb.batch.URLs = append(pb.batch.URLs, store.URLState{URLID: urlID, WebsiteUID: t.UID, Namespace: t.Namespace, Name: t.Name, URL: t.URL})
			us.recorded = true
		}
		for _, m := range it.measured {
			p, _ := b.c.plugins.Get(m.Name)
			h := us.histories[m.Name]
			verdicts = append(verdicts, p.(plugins.Stateful).Judge(pluginConfig(it.checked, m.Name), t.ScheduledAt, m, h))
			if h.LastScheduledAt.Equal(t.ScheduledAt) {
				state, err := json.Marshal(h)
				if err == nil {
					pb.batch.PluginStates = append(pb.batch.PluginStates, store.PluginState{URLID: urlID, Plugin: m.Name, State: state, ScheduledAt: t.ScheduledAt})
				}
			}
		}
		r.Plugins = marshalVerdicts(verdicts)
		pb.batch.Results[i] = *r
		if r.Outcome == store.OutcomeMissed {
			continue
		}
		pb.touched[t.UID] = types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
		tr := us.apply(checkOutcome{
			scheduledAt: t.ScheduledAt, checkedAt: r.CheckedAt, up: it.up(), statusCode: r.StatusCode,
			latency: r.Total, err: r.ErrorMessage, plugins: verdicts,
		}, t.FailureThreshold, t.SuccessThreshold)
		if tr != nil {
			pb.batch.URLs = append(pb.batch.URLs, store.URLState{
				URLID: urlID, WebsiteUID: t.UID, Namespace: t.Namespace, Name: t.Name, URL: t.URL,
				State: string(tr.to), Since: tr.at, ScheduledAt: tr.scheduledAt,
			})
			pb.transitions = append(pb.transitions, websiteTransition{namespace: t.Namespace, name: t.Name, uid: t.UID, transition: *tr})
		}
	}
	return pb
}

func pluginConfig(c *checked, name string) map[string]string {
	for _, p := range c.task.Plugins {
		if p.Name == name {
			return p.Config
		}
	}
	return nil
}

// marshalVerdicts is a result's plugin verdicts as stored, sorted by
// plugin; nil without any.
func marshalVerdicts(verdicts []plugins.Result) []byte {
	if len(verdicts) == 0 {
		return nil
	}
	slices.SortFunc(verdicts, func(x, y plugins.Result) int { return cmp.Compare(x.Name, y.Name) })
	b, _ := json.Marshal(verdicts)
	return b
}

// load rebuilds, from PostgreSQL, the state of the Websites in items that
// this checker does not hold (it just took their partition over, or
// restarted), and the histories of their stateful plugins.
func (b *batcher) load(ctx context.Context, items []item) error {
	b.mu.Lock()
	depths := map[int32][]string{} // Websites to load, by how many results to read per URL
	seen := map[string]bool{}
	for _, it := range items {
		t := it.task
		if b.websites[t.UID] != nil || seen[t.UID] {
			continue
		}
		seen[t.UID] = true
		depth := max(t.FailureThreshold, t.SuccessThreshold, 1)
		depths[depth] = append(depths[depth], t.UID)
	}
	b.mu.Unlock()

	loaded := map[string]*websiteState{}
	for depth, uids := range depths {
		stored, err := b.c.store.LoadURLs(ctx, uids, b.c.clock.Now().Add(-rebuildWindow), int(depth))
		if err != nil {
			return err
		}
		for _, uid := range uids {
			loaded[uid] = &websiteState{uid: uid, urls: map[string]*urlState{}}
		}
		for _, s := range stored {
			u := restore(s)
			u.recorded = true
			loaded[s.WebsiteUID].urls[s.URL] = u
		}
	}

	b.mu.Lock()
	for _, it := range items {
		t := it.task
		if b.websites[t.UID] == nil {
			ws := loaded[t.UID]
			ws.namespace, ws.name, ws.partition = t.Namespace, t.Name, it.ref.partition
			b.websites[t.UID] = ws
		}
	}
	// Histories of stateful plugins, for URLs that have none in memory.
	wanted := map[string][]int64{}
	for _, it := range items {
		us := b.websites[it.task.UID].url(it.task.URL)
		for _, m := range it.measured {
			if us.histories[m.Name] == nil {
				wanted[m.Name] = append(wanted[m.Name], store.URLID(it.task.UID, it.task.URL))
			}
		}
	}
	b.mu.Unlock()
	for plugin, ids := range wanted {
		states, err := b.c.store.LoadPluginStates(ctx, plugin, ids)
		if err != nil {
			return err
		}
		b.mu.Lock()
		for _, it := range items {
			ws := b.websites[it.task.UID]
			if ws == nil {
				continue // forgotten while the lock was released
			}
			us := ws.url(it.task.URL)
			if us.histories[plugin] != nil {
				continue
			}
			h := &plugins.History{}
			if s, ok := states[store.URLID(it.task.UID, it.task.URL)]; ok {
				if err := json.Unmarshal(s.State, h); err != nil {
					b.c.log.Info("discarding an unreadable plugin history", "plugin", plugin, "url", it.task.URL, "error", err.Error())
					h = &plugins.History{}
				}
			}
			if us.histories == nil {
				us.histories = map[string]*plugins.History{}
			}
			us.histories[plugin] = h
		}
		b.mu.Unlock()
	}
	return nil
}

// write stores prepared batches until writes is closed. A batch that
// fails is retried with backoff until it is stored (or ctx ends): its
// offsets wait meanwhile, and MaxPending stops the consumers.
func (b *batcher) write(ctx context.Context) {
	for pb := range b.writes {
		start := b.c.clock.Now()
		var inserted int64
		err := b.retry(ctx, "storing results", func() (err error) {
			inserted, err = b.c.store.Write(ctx, &pb.batch)
			return err
		})
		if err != nil {
			// Stopping: these results are not stored, and their offsets
			// not committed; the tasks are redelivered.
			for range pb.items {
				b.c.release()
			}
			continue
		}
		m := b.c.metrics
		m.WriteTime.Observe(b.c.clock.Since(start).Seconds())
		m.BatchSize.Observe(float64(len(pb.items)))
		m.Results.WithLabelValues("new").Add(float64(inserted))
		m.Results.WithLabelValues("duplicate").Add(float64(int64(len(pb.items)) - inserted))
		for _, it := range pb.items {
			m.Checks.WithLabelValues(string(it.result.Outcome), it.result.ErrorClass).Inc()
			if it.result.Outcome == store.OutcomeMissed {
				m.MissedTasks.Inc()
			}
			it.ref.done()
			b.c.release()
		}
		transitioned := map[string]bool{}
		for _, t := range pb.transitions {
			transitioned[t.uid] = true
			b.c.recordEvent(t)
		}
		for uid, name := range pb.touched {
			b.c.status.touched(uid, name, transitioned[uid])
		}
	}
}

// retry runs fn until it succeeds or ctx ends, backing off from 100 ms to
// 10 s, and logs each failure.
func (b *batcher) retry(ctx context.Context, what string, fn func() error) error {
	backoff := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.c.metrics.WriteErrors.Inc()
		delay := backoff.Step()
		b.c.log.Error(err, what+" failed; retrying", "in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.c.clock.After(delay):
		}
	}
}

// recordEvent tells the Website's users that a URL went Down or came back.
func (c *Checker) recordEvent(t websiteTransition) {
	if c.recorder == nil || t.from == t.to {
		return
	}
	ws := &monitoringv1alpha1.Website{}
	ws.Namespace, ws.Name, ws.UID = t.namespace, t.name, types.UID(t.uid)
	switch {
	case t.to == monitoringv1alpha1.URLStateDown:
		c.recorder.Eventf(ws, nil, corev1.EventTypeWarning, EventWebsiteDown, "Check", "%s is Down: %s", t.url, truncate(t.reason, 512))
		c.metrics.Events.WithLabelValues(EventWebsiteDown).Inc()
	case t.to == monitoringv1alpha1.URLStateUp && t.from == monitoringv1alpha1.URLStateDown:
		c.recorder.Eventf(ws, nil, corev1.EventTypeNormal, EventWebsiteUp, "Check", "%s is Up again after %s Down", t.url, t.downFor.Round(time.Second))
		c.metrics.Events.WithLabelValues(EventWebsiteUp).Inc()
	}
}

// Event reasons.
const (
	// EventWebsiteDown: a URL turned Down, with the error of the check that did it.
	EventWebsiteDown = "WebsiteDown"
	// EventWebsiteUp: a Down URL turned Up, with how long it was Down.
	EventWebsiteUp = "WebsiteUp"
)
