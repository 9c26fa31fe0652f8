package scheduler

import (
	"sync"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/types"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/task"
)

// site is one Website as the scheduler publishes it. It is immutable once
// built: a spec change builds a new one and retires the old, whose heap
// entries are then dropped as they come up.
type site struct {
	uid        types.UID
	generation int64
	interval   time.Duration
	// prefix is the encoded task, minus what differs per URL and per tick.
	prefix task.Prefix
	// urls share their strings with the informer's copy of the Website.
	urls []string
	// key is the Kafka key, made once: the Website's UID.
	key sarama.Encoder
	// partition is the key's partition, computed once.
	partition cachedPartition
	// handoff is when the Website moved to this shard (Unix nanoseconds;
	// zero if it did not): the previous shard publishes its ticks due
	// before then.
	handoff int64

	retired bool // guarded by Schedule.mu
	// leaving is when the Website is to move to another shard, as
	// announced; until, once it has left, is when its ticks become the
	// other shard's. Both Unix nanoseconds, guarded by Schedule.mu.
	leaving, until int64
	// parked are its URLs' entries due from leaving on, held while the
	// move has not reached this shard's watch: the other shard publishes
	// them. Guarded by Schedule.mu.
	parked []entry
}

func newSite(ws *monitoringv1alpha1.Website) *site {
	urls := make([]string, len(ws.Spec.URLs))
	for i, u := range ws.Spec.URLs {
		urls[i] = string(u)
	}
	st := &site{
		uid:        ws.UID,
		generation: ws.Generation,
		interval:   ws.Spec.Interval.Duration,
		prefix:     task.NewPrefix(task.ForWebsite(ws)),
		urls:       urls,
		key:        sarama.ByteEncoder(ws.UID),
	}
	if at, incoming, ok := handoffOf(ws); ok && incoming {
		st.handoff = at.UnixNano()
	}
	return st
}

// handoffOf reads the operator's handoff annotation: when the Website
// moves between shards, and whether it moves to the shard it is labelled
// for (it came here) or away from it (it is about to leave).
func handoffOf(ws *monitoringv1alpha1.Website) (at time.Time, incoming, ok bool) {
	to, at, ok := ws.ShardHandoff()
	return at, to == ws.Labels[monitoringv1alpha1.ShardLabel], ok
}

// handoffGrace is how long after an announced handoff a Website that
// has not left the shard's watch stays parked: a move the operator
// announced but did not make (it died between its two writes, or the plan
// changed) gives the Website back to this shard, its parked ticks counted
// as skipped.
const handoffGrace = 30 * time.Second

// entry is one URL's next tick. 24 bytes: a million URLs cost 24 MB of heap
// entries.
type entry struct {
	due  int64 // Unix nanoseconds
	site *site
	url  int32
}

// tick is an entry taken off the schedule to be published.
type tick struct {
	site     *site
	url      int32
	due      time.Time
	trigger  task.Trigger
	checkNow string
}

// Schedule is every URL of the shard and when each is next due. The
// informer's handlers keep its Websites current on every replica; only the
// leader starts it, which builds the queue of due times, and takes due
// ticks off it. It is safe for concurrent use.
type Schedule struct {
	mu    sync.Mutex
	sites map[types.UID]*site
	// checkNowSeen is the last check-now value seen per Website.
	checkNowSeen map[types.UID]string
	urls         int
	started      bool
	queue        *timingWheel
	checkNow     []tick
	// parked are the Websites holding entries back for an announced
	// handoff.
	parked map[*site]struct{}
	// handoffGrace is how long a Website stays parked; handoffGrace
	// unless a test says otherwise.
	handoffGrace time.Duration
	// wake is signalled when a tick earlier than the queue's head arrives.
	wake chan struct{}
}

// NewSchedule returns an empty schedule.
func NewSchedule() *Schedule {
	return &Schedule{
		sites:        map[types.UID]*site{},
		checkNowSeen: map[types.UID]string{},
		parked:       map[*site]struct{}{},
		handoffGrace: handoffGrace,
		wake:         make(chan struct{}, 1),
	}
}

// Set adds or updates a Website. A new generation reschedules its URLs
// (each URL keeps its phase, so a change that leaves URL and interval alone
// moves nothing); suspend removes it; a new check-now value queues an
// immediate check of every URL.
func (s *Schedule) Set(ws *monitoringv1alpha1.Website, now time.Time) {
	if ws.Spec.Suspend || ws.DeletionTimestamp != nil {
		s.Delete(ws.UID)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, known := s.sites[ws.UID]
	cur := old
	if !known || old.generation != ws.Generation {
		cur = newSite(ws)
		s.replace(old, cur, now)
	}
	leaving := int64(0)
	if at, incoming, ok := handoffOf(ws); ok && !incoming && now.Before(at.Add(s.handoffGrace)) {
		leaving = at.UnixNano()
	}
	if leaving != cur.leaving {
		cur.leaving = leaving
		s.unpark(cur) // announced anew, or withdrawn
	}
	token := ws.Annotations[monitoringv1alpha1.CheckNowAnnotation]
	seen, seenBefore := s.checkNowSeen[ws.UID]
	s.checkNowSeen[ws.UID] = token
	// A value present when the Website first shows up was asked of an
	// earlier scheduler, or of nobody yet: the regular checks answer it.
	if seenBefore && token != "" && token != seen && s.started {
		for i := range cur.urls {
			s.checkNow = append(s.checkNow, tick{site: cur, url: int32(i), due: now, trigger: task.TriggerCheckNow, checkNow: token})
		}
		s.signal()
	}
}

// Delete removes a Website; its queued ticks are dropped.
func (s *Schedule) Delete(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.sites[uid]; ok {
		s.replace(old, nil, time.Time{})
	}
	delete(s.checkNowSeen, uid)
}

// replace retires old (if any) and schedules cur (if any). Caller holds mu.
func (s *Schedule) replace(old, cur *site, now time.Time) {
	if old != nil {
		old.retired = true
		s.dropParked(old)
		s.urls -= len(old.urls)
		delete(s.sites, old.uid)
	}
	if cur == nil {
		return
	}
	s.sites[cur.uid] = cur
	s.urls += len(cur.urls)
	if !s.started {
		return
	}
	after := now
	// A Website that just moved here from another shard: its ticks from
	// the handoff on are ours, even those already due (they go out late,
	// or are counted skipped).
	if old == nil && cur.handoff > now.Add(-cur.interval).UnixNano() {
		after = time.Unix(0, cur.handoff-1)
	}
	s.push(cur, after)
}

// Depart removes a Website that left the shard's informer: deleted, or
// moved to another shard. One whose move was announced is handed over at
// the announced time: its ticks due before it are still published here,
// those due from then on by the other shard. A replica that does not
// lead, or a time already past, drops it at once.
func (s *Schedule) Depart(uid types.UID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.sites[uid]
	if !ok {
		return
	}
	delete(s.checkNowSeen, uid)
	if !s.started || old.leaving <= now.UnixNano() {
		s.replace(old, nil, time.Time{})
		return
	}
	old.until = old.leaving
	s.dropParked(old) // the other shard's, as announced
	s.urls -= len(old.urls)
	delete(s.sites, uid)
}

// park holds e back: its Website is to leave at the announced time, and
// the other shard publishes from then on even if the move has not reached
// this shard's watch yet. Caller holds mu.
func (s *Schedule) park(e entry) {
	e.site.parked = append(e.site.parked, e)
	s.parked[e.site] = struct{}{}
}

// unpark queues st's parked entries again at their due times: its handoff
// was announced anew or withdrawn. Those now behind go out as any late
// entry does: the latest if still on time, the others counted skipped.
// Caller holds mu.
func (s *Schedule) unpark(st *site) {
	if len(st.parked) == 0 {
		return
	}
	for _, e := range st.parked {
		s.queue.add(e)
	}
	s.dropParked(st)
	s.signal()
}

// dropParked forgets st's parked entries. Caller holds mu.
func (s *Schedule) dropParked(st *site) {
	st.parked = nil
	delete(s.parked, st)
}

// push queues each URL of st at its first due time after `after`, and
// wakes the publisher in case one is due before it planned to look.
func (s *Schedule) push(st *site, after time.Time) {
	for i, u := range st.urls {
		due := NextRun(Phase(st.uid, u, st.interval), st.interval, after).UnixNano()
		s.queue.add(entry{due: due, site: st, url: int32(i)})
	}
	s.signal()
}

// Start builds the queue for a new leader: each URL's first tick is the
// first one due after resumeAfter(uid), which is how far the previous
// leader is known to have published the Website's ticks.
func (s *Schedule) Start(resumeAfter func(uid types.UID) time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries := make([]entry, 0, s.urls)
	for _, st := range s.sites {
		after := resumeAfter(st.uid)
		if h := time.Unix(0, st.handoff-1); st.handoff != 0 && h.After(after) {
			// Moved here: the previous shard publishes the ticks due before
			// the handoff, even those still in flight as the topic is read
			// (the operator keeps a drained shard's scheduler until its
			// handoffs are past).
			after = h
		}
		for i, u := range st.urls {
			due := NextRun(Phase(st.uid, u, st.interval), st.interval, after).UnixNano()
			entries = append(entries, entry{due: due, site: st, url: int32(i)})
		}
	}
	s.queue = newTimingWheel()
	s.queue.fill(entries)
	s.clearParked()
	s.checkNow = nil
	s.started = true
	s.signal()
}

// Stop drops the queue: a replica that is no longer leader keeps only its
// Websites.
func (s *Schedule) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue, s.checkNow, s.started = nil, nil, false
	s.clearParked()
}

func (s *Schedule) clearParked() {
	for st := range s.parked {
		st.parked = nil
	}
	clear(s.parked)
}

// Knows reports whether the Website is in the schedule.
func (s *Schedule) Knows(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sites[uid]
	return ok
}

// Size is how many Websites and URLs are scheduled.
func (s *Schedule) Size() (websites, urls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sites), s.urls
}

// Due appends to buf, and returns, up to limit ticks due at now: check-now
// ticks first, then the queue's in due order. A URL more than an interval
// behind (a leader that could not keep up, or a predecessor's gap) yields
// only its latest due tick, the one whose deadline has not passed; the
// older ones are counted in skipped. Each tick taken is rescheduled to its
// next due time after now, so recovery is never a burst. next is when the
// next tick falls due, or zero if none is queued.
func (s *Schedule) Due(now time.Time, limit int, buf []tick) (ticks []tick, next time.Time, skipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ticks = buf
	n := min(limit, len(s.checkNow))
	ticks = append(ticks, s.checkNow[:n]...)
	s.checkNow = s.checkNow[n:]
	if len(s.checkNow) == 0 {
		s.checkNow = nil // let the backing array go
	}
	if s.queue == nil {
		return ticks, next, skipped
	}
	nowNanos := now.UnixNano()
	s.endGrace(nowNanos)
	for len(ticks) < limit {
		e, ok := s.queue.popDue(nowNanos)
		if !ok {
			break
		}
		if e.site.retired {
			continue
		}
		// The ticks due from the handoff on are the other shard's: dropped
		// once the Website has left, parked while its move is announced
		// but not yet seen (the operator's second write, or this shard's
		// watch, can lag behind the handoff time).
		until, leaving := e.site.until, false
		if until == 0 && e.site.leaving != 0 {
			until, leaving = e.site.leaving, true
		}
		if until != 0 && e.due >= until {
			if leaving {
				s.park(e)
			}
			continue
		}
		interval := int64(e.site.interval)
		if behind := (nowNanos - e.due) / interval; behind > 0 {
			if until != 0 {
				behind = min(behind, (until-1-e.due)/interval)
			}
			skipped += int(behind)
			e.due += behind * interval
		}
		ticks = append(ticks, tick{site: e.site, url: e.url, due: time.Unix(0, e.due)})
		e.due += interval
		s.queue.add(e)
	}
	if len(s.checkNow) > 0 {
		next = now
	} else if s.queue.len() > 0 {
		next = time.Unix(0, s.queue.next())
	}
	for st := range s.parked {
		if end := time.Unix(0, st.leaving).Add(s.handoffGrace); next.IsZero() || end.Before(next) {
			next = end
		}
	}
	return ticks, next, skipped
}

// endGrace gives back the Websites parked for longer than the grace: the
// announced move did not happen. Caller holds mu.
func (s *Schedule) endGrace(now int64) {
	for st := range s.parked {
		if now >= st.leaving+int64(s.handoffGrace) {
			st.leaving = 0
			s.unpark(st)
		}
	}
}

// Wake is signalled when a tick due earlier than the last answer of Due
// arrives.
func (s *Schedule) Wake() <-chan struct{} { return s.wake }

func (s *Schedule) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
