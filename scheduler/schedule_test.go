package scheduler

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/task"
)

var epoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func website(uid types.UID, generation int64, interval time.Duration, urls ...string) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: string(uid), UID: uid, Generation: generation},
		Spec:       monitoringv1alpha1.WebsiteSpec{Interval: metav1.Duration{Duration: interval}},
	}
	for _, u := range urls {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(u))
	}
	return ws
}

// drain steps a clock through [from, to) in steps and returns every tick
// Due hands out, as "url@due" strings.
func drain(s *Schedule, from, to time.Time, step time.Duration) []tick {
	var all []tick
	for now := from; now.Before(to); now = now.Add(step) {
		for {
			ticks, _, _ := s.Due(now, batchSize, nil)
			all = append(all, ticks...)
			if len(ticks) < batchSize {
				break
			}
		}
	}
	return all
}

func startNow(s *Schedule, now time.Time) {
	s.Start(func(types.UID) time.Time { return now })
}

// TestScheduleSpreadsLoad drives the schedule with an injected clock,
// second by second, through one interval of 100k URLs: no second gets more
// than twice its fair share.
func TestScheduleSpreadsLoad(t *testing.T) {
	const urls, interval = 100_000, time.Minute
	s := NewSchedule()
	for i := 0; i < urls; {
		ws := website(uuid.NewUUID(), 1, interval)
		for j := 0; j < 1+i%5 && i < urls; j++ {
			ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(fmt.Sprintf("https://site-%d.example.com/%d", i, j)))
			i++
		}
		s.Set(ws, epoch)
	}
	startNow(s, epoch)
	fair := urls / int(interval/time.Second)
	total := 0
	for sec := 1; sec <= int(interval/time.Second); sec++ {
		now := epoch.Add(time.Duration(sec) * time.Second)
		n := len(drain(s, now, now.Add(time.Nanosecond), time.Second))
		total += n
		if n > 2*fair {
			t.Errorf("second %d: %d ticks, over twice the fair %d", sec, n, fair)
		}
	}
	if total != urls {
		t.Errorf("one interval published %d ticks, want one per URL: %d", total, urls)
	}
	// The next interval repeats exactly.
	if n := len(drain(s, epoch.Add(interval+time.Second), epoch.Add(2*interval+time.Second), time.Second)); n != urls {
		t.Errorf("second interval: %d ticks, want %d", n, urls)
	}
}

func TestScheduleTicksAtPhaseEveryInterval(t *testing.T) {
	s := NewSchedule()
	ws := website("a", 1, 10*time.Second, "https://a.example/", "https://a.example/health")
	s.Set(ws, epoch)
	startNow(s, epoch)
	ticks := drain(s, epoch, epoch.Add(35*time.Second), 100*time.Millisecond)
	if len(ticks) != 6 {
		t.Fatalf("35s of a 2-URL Website at 10s: %d ticks, want 6", len(ticks))
	}
	for _, tk := range ticks {
		u := tk.site.urls[tk.url]
		want := NextRun(Phase("a", u, 10*time.Second), 10*time.Second, tk.due.Add(-time.Nanosecond))
		if !tk.due.Equal(want) {
			t.Errorf("%s due %s, not at its phase (%s)", u, tk.due, want)
		}
	}
}

func TestScheduleReschedulesOnChange(t *testing.T) {
	s := NewSchedule()
	s.Set(website("a", 1, 10*time.Second, "https://a.example/", "https://a.example/old"), epoch)
	startNow(s, epoch)
	// A new generation: one URL replaced, interval halved.
	now := epoch.Add(time.Second)
	s.Set(website("a", 2, 5*time.Second, "https://a.example/", "https://a.example/new"), now)
	ticks := drain(s, now, now.Add(20*time.Second), 100*time.Millisecond)
	count := map[string]int{}
	for _, tk := range ticks {
		if tk.site.generation != 2 {
			t.Errorf("a tick of generation %d after the change", tk.site.generation)
		}
		count[tk.site.urls[tk.url]]++
	}
	if count["https://a.example/old"] != 0 || count["https://a.example/new"] != 4 || count["https://a.example/"] != 4 {
		t.Errorf("20s at 5s after the change: ticks per URL %v; want 4 each for / and /new, none for /old", count)
	}
	if _, urls := s.Size(); urls != 2 {
		t.Errorf("%d URLs scheduled, want 2", urls)
	}

	// The same generation again (a label or status change) moves nothing.
	before := drain(s, now.Add(20*time.Second), now.Add(40*time.Second), time.Second)
	s.Set(website("a", 2, 5*time.Second, "https://a.example/", "https://a.example/new"), now.Add(40*time.Second))
	after := drain(s, now.Add(40*time.Second), now.Add(60*time.Second), time.Second)
	if len(before) != len(after) {
		t.Errorf("re-setting an unchanged Website changed its ticks: %d then %d per 20s", len(before), len(after))
	}
}

func TestScheduleSuspendAndDelete(t *testing.T) {
	s := NewSchedule()
	s.Set(website("a", 1, 5*time.Second, "https://a.example/"), epoch)
	s.Set(website("b", 1, 5*time.Second, "https://b.example/"), epoch)
	startNow(s, epoch)
	suspended := website("a", 2, 5*time.Second, "https://a.example/")
	suspended.Spec.Suspend = true
	s.Set(suspended, epoch)
	s.Delete("b")
	if ticks := drain(s, epoch, epoch.Add(time.Minute), time.Second); len(ticks) != 0 {
		t.Errorf("%d ticks of a suspended and a deleted Website", len(ticks))
	}
	if sites, urls := s.Size(); sites != 0 || urls != 0 {
		t.Errorf("left in the schedule: %d Websites, %d URLs", sites, urls)
	}
	// Resumed: ticks again.
	s.Set(website("a", 3, 5*time.Second, "https://a.example/"), epoch.Add(time.Minute))
	if ticks := drain(s, epoch.Add(time.Minute), epoch.Add(2*time.Minute), time.Second); len(ticks) != 12 {
		t.Errorf("a resumed 5s Website: %d ticks in a minute, want 12", len(ticks))
	}
}

func TestScheduleCheckNow(t *testing.T) {
	s := NewSchedule()
	ws := website("a", 1, time.Hour, "https://a.example/", "https://a.example/health")
	ws.Annotations = map[string]string{monitoringv1alpha1.CheckNowAnnotation: "old"}
	s.Set(ws, epoch) // present when first seen: answered by the regular checks
	startNow(s, epoch)
	now := epoch.Add(time.Second)
	if ticks, _, _ := s.Due(now, batchSize, nil); len(ticks) != 0 {
		t.Fatalf("a check-now value from before the scheduler started fired %d ticks", len(ticks))
	}
	ws = ws.DeepCopy()
	ws.Annotations[monitoringv1alpha1.CheckNowAnnotation] = "2026-11-22T12:00:01Z"
	s.Set(ws, now)
	select {
	case <-s.Wake():
	default:
		t.Error("check-now did not wake the publisher")
	}
	ticks, next, _ := s.Due(now, batchSize, nil)
	if len(ticks) != 2 {
		t.Fatalf("check-now: %d ticks, want one per URL (2)", len(ticks))
	}
	for _, tk := range ticks {
		if tk.trigger != task.TriggerCheckNow || tk.checkNow != "2026-11-22T12:00:01Z" || !tk.due.Equal(now) {
			t.Errorf("check-now tick: trigger %d token %q due %s", tk.trigger, tk.checkNow, tk.due)
		}
	}
	if !next.After(now) {
		t.Errorf("after check-now the next tick is %s, not later than now", next)
	}
	// The same value again, in a later update, does not fire twice.
	s.Set(ws.DeepCopy(), now.Add(time.Second))
	if ticks, _, _ := s.Due(now.Add(time.Second), batchSize, nil); len(ticks) != 0 {
		t.Errorf("an unchanged check-now value fired %d ticks again", len(ticks))
	}
}

// TestScheduleFarBehindResumesWithoutBurst: a leader that could not take
// ticks for several intervals gets one tick per URL, then the normal pace.
func TestScheduleFarBehindResumesWithoutBurst(t *testing.T) {
	s := NewSchedule()
	s.Set(website("a", 1, 5*time.Second, "https://a.example/"), epoch)
	startNow(s, epoch)
	late := epoch.Add(time.Minute) // 12 intervals without a look
	ticks, next, skipped := s.Due(late, batchSize, nil)
	if len(ticks) != 1 || skipped != 11 {
		t.Errorf("a minute (12 intervals) behind: %d ticks at once and %d skipped, want 1 and 11", len(ticks), skipped)
	}
	if ticks[0].due.Before(late.Add(-5 * time.Second)) {
		t.Errorf("the tick handed out is due %s, past its deadline: want the latest one", ticks[0].due)
	}
	if next.Sub(late) > 5*time.Second || !next.After(late) {
		t.Errorf("next tick at %s: want within the interval after %s", next, late)
	}
}

func TestScheduleResumesWhereThePreviousLeaderStopped(t *testing.T) {
	s := NewSchedule()
	s.Set(website("a", 1, 10*time.Second, "https://a.example/"), epoch)
	s.Set(website("b", 1, 10*time.Second, "https://b.example/"), epoch)
	takeover := epoch.Add(time.Minute)
	// The previous leader published a's ticks up to 25s before the
	// takeover; nothing is known of b.
	s.Start(func(uid types.UID) time.Time {
		if uid == "a" {
			return takeover.Add(-25 * time.Second)
		}
		return takeover
	})
	ticks, _, skipped := s.Due(takeover, batchSize, nil)
	var a int
	for _, tk := range ticks {
		if tk.site.uid != "a" {
			t.Errorf("a tick of %s before its first due time after the takeover", tk.site.uid)
			continue
		}
		a++
	}
	// Of the 2 or 3 ticks in the gap, only the latest is still before its
	// deadline.
	if a != 1 || skipped < 1 || skipped > 2 {
		t.Errorf("a missed 25s of 10s ticks: %d caught up and %d skipped, want 1 and the rest (1 or 2)", a, skipped)
	}
}

// TestScheduleHandsOverAMovedWebsite moves a Website from one leading
// schedule to another as the operator does: it announces the move and its
// handoff time on the old shard's Website, then relabels it. Each schedule
// sees the relabelling at its own moment, in either order, or only after
// the handoff: together they hand out every tick exactly once, and count
// none skipped. A move announced but not made parks the Website on the old
// shard from the handoff for the grace, then gives it back: the ticks of
// the grace are counted skipped, none handed out twice.
func TestScheduleHandsOverAMovedWebsite(t *testing.T) {
	const interval = 5 * time.Second
	urls := make([]string, 20)
	for i := range urls {
		urls[i] = fmt.Sprintf("https://a.example/%d", i)
	}
	handoff := epoch.Add(30 * time.Second)
	never := time.Hour
	tests := map[string]struct {
		// after the announcement, which is 2s before the handoff
		oldSees, newSees time.Duration
	}{
		"the old shard first":             {oldSees: 100 * time.Millisecond, newSees: 900 * time.Millisecond},
		"the new shard first":             {oldSees: 1500 * time.Millisecond, newSees: 200 * time.Millisecond},
		"the new shard after the handoff": {oldSees: 300 * time.Millisecond, newSees: 3500 * time.Millisecond},
		"the old shard after the handoff": {oldSees: 2500 * time.Millisecond, newSees: 300 * time.Millisecond},
		"announced, never moved":          {oldSees: never, newSees: never},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ws := website("a", 1, interval, urls...)
			ws.Labels = map[string]string{monitoringv1alpha1.ShardLabel: "0"}
			from, to := NewSchedule(), NewSchedule()
			from.handoffGrace = 10 * time.Second
			from.Set(ws, epoch)
			startNow(from, epoch)
			startNow(to, epoch)
			announce := handoff.Add(-2 * time.Second)
			announced := ws.DeepCopy()
			announced.Annotations = map[string]string{monitoringv1alpha1.ShardHandoffAnnotation: "1@" + handoff.Format(time.RFC3339Nano)}
			moved := announced.DeepCopy()
			moved.Labels[monitoringv1alpha1.ShardLabel] = "1"

			h := handOut(t, urls, interval, func(now time.Time) {
				switch {
				case now.Equal(announce):
					from.Set(announced, now)
				case now.Equal(announce.Add(tc.oldSees)):
					from.Depart("a", now)
				}
				if now.Equal(announce.Add(tc.newSees)) {
					to.Set(moved, now)
				}
			}, func(due time.Time) bool {
				return tc.oldSees == never && !due.Before(handoff) && due.Before(handoff.Add(from.handoffGrace))
			}, from, to)
			if skipped, unpublished := h.skipped, h.unpublished; skipped != unpublished {
				t.Errorf("%d ticks counted skipped, %d not handed out", skipped, unpublished)
			}
			if tc.oldSees == never && h.unpublished == 0 {
				t.Error("the announced move parked nothing")
			}
			if sites, _ := from.Size(); (sites == 0) == (tc.oldSees == never) {
				t.Errorf("the old shard has %d Websites", sites)
			}
		})
	}
}

// TestScheduleStartWaitsForTheHandoff starts a leader of the shard a
// Website moved to. The previous shard publishes the Website's ticks due
// before the handoff (the operator keeps it until then), the last of them
// perhaps still in flight as the topic is read: whether the handoff is
// ahead of the takeover or just past it, the new leader's first tick of
// each URL is the first due from the handoff on, and never one the topic
// already holds.
func TestScheduleStartWaitsForTheHandoff(t *testing.T) {
	const interval = 10 * time.Second
	urls := make([]string, 50)
	for i := range urls {
		urls[i] = fmt.Sprintf("https://a.example/%d", i)
	}
	takeover := epoch.Add(time.Minute)
	for name, tc := range map[string]struct{ handoff, lastPublished time.Time }{
		"handoff ahead":                      {handoff: takeover.Add(3 * time.Second), lastPublished: takeover.Add(-8 * time.Second)},
		"handoff past, its last tick unread": {handoff: takeover.Add(-time.Second), lastPublished: takeover.Add(-8 * time.Second)},
		"published beyond the handoff":       {handoff: takeover.Add(-30 * time.Second), lastPublished: takeover.Add(-2 * time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			ws := website("a", 1, interval, urls...)
			ws.Labels = map[string]string{monitoringv1alpha1.ShardLabel: "1"}
			ws.Annotations = map[string]string{monitoringv1alpha1.ShardHandoffAnnotation: "1@" + tc.handoff.Format(time.RFC3339Nano)}
			s := NewSchedule()
			s.Set(ws, epoch)
			s.Start(func(types.UID) time.Time { return tc.lastPublished })
			first := map[int32]time.Time{}
			for _, tk := range drain(s, takeover, takeover.Add(2*interval), 100*time.Millisecond) {
				if _, ok := first[tk.url]; !ok {
					first[tk.url] = tk.due
				}
			}
			after := tc.lastPublished
			if h := tc.handoff.Add(-time.Nanosecond); h.After(after) {
				after = h
			}
			for i, u := range urls {
				want := NextRun(Phase("a", u, interval), interval, after)
				if got, ok := first[int32(i)]; !ok || !got.Equal(want) {
					t.Errorf("%s: first tick due %s, want %s", u, got.Format(time.StampMilli), want.Format(time.StampMilli))
				}
			}
		})
	}
}

// TestScheduleReannouncedHandoff: the operator died between announcing a
// move and making it, and its successor announced it again, later. The old
// shard parked the Website at the first handoff and takes it back until
// the second: between them each due tick is handed out once or counted
// skipped, and from the second on the new shard has it alone.
func TestScheduleReannouncedHandoff(t *testing.T) {
	const interval = 5 * time.Second
	urls := make([]string, 20)
	for i := range urls {
		urls[i] = fmt.Sprintf("https://a.example/%d", i)
	}
	first, second := epoch.Add(20*time.Second), epoch.Add(32*time.Second)
	announced := func(at time.Time) *monitoringv1alpha1.Website {
		ws := website("a", 1, interval, urls...)
		ws.Labels = map[string]string{monitoringv1alpha1.ShardLabel: "0"}
		ws.Annotations = map[string]string{monitoringv1alpha1.ShardHandoffAnnotation: "1@" + at.Format(time.RFC3339Nano)}
		return ws
	}
	from, to := NewSchedule(), NewSchedule()
	from.Set(website("a", 1, interval, urls...), epoch)
	startNow(from, epoch)
	startNow(to, epoch)
	moved := announced(second)
	moved.Labels[monitoringv1alpha1.ShardLabel] = "1"

	h := handOut(t, urls, interval, func(now time.Time) {
		switch {
		case now.Equal(first.Add(-2 * time.Second)):
			from.Set(announced(first), now)
		case now.Equal(second.Add(-2 * time.Second)):
			from.Set(announced(second), now)
		case now.Equal(second.Add(-time.Second)):
			to.Set(moved, now)
			from.Depart("a", now)
		}
	}, func(due time.Time) bool { return !due.Before(first) && due.Before(second) }, from, to)
	if h.skipped != h.unpublished || h.skipped == 0 {
		t.Errorf("%d ticks counted skipped, %d not handed out between the two handoffs", h.skipped, h.unpublished)
	}
}

// handedOut is what schedules handed out of Website "a"'s ticks.
type handedOut struct {
	// unpublished are the due ticks none handed out, all of them where
	// the test allowed it; skipped are those the schedules counted.
	unpublished, skipped int
}

// handOut steps the schedules through a minute from epoch, 50ms at a
// time, calling at(now) before each step, and fails the test for each of
// Website "a"'s due ticks not handed out exactly once, but for those
// mayMiss allows to be missing.
func handOut(t *testing.T, urls []string, interval time.Duration, at func(now time.Time), mayMiss func(due time.Time) bool,
	schedules ...*Schedule) handedOut {
	t.Helper()
	const step = 50 * time.Millisecond
	count := map[string]int{}
	var h handedOut
	end := epoch.Add(time.Minute)
	for now := epoch; now.Before(end); now = now.Add(step) {
		at(now)
		for _, s := range schedules {
			ticks, _, n := s.Due(now, batchSize, nil)
			h.skipped += n
			for _, tk := range ticks {
				count[fmt.Sprintf("%s@%s", tk.site.urls[tk.url], tk.due.Format(time.StampMilli))]++
			}
		}
	}
	for _, u := range urls {
		for due := NextRun(Phase("a", u, interval), interval, epoch); due.Before(end.Add(-step)); due = due.Add(interval) {
			switch n := count[fmt.Sprintf("%s@%s", u, due.Format(time.StampMilli))]; {
			case n == 0 && mayMiss(due):
				h.unpublished++
			case n != 1:
				t.Errorf("%s due %s handed out %d times, want once", u, due.Format(time.StampMilli), n)
			}
		}
	}
	return h
}
