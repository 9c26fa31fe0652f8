package scale

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// storedWatch measures the delay from scheduledAt to a result being stored
// (committed, visible to readers) for a sample of URLs: check_results
// keeps checked_at but not the time of its commit, so it polls for the
// sample's new rows and takes each as stored halfway between the poll that
// first saw it and the one before.
type storedWatch struct {
	db     *pgxpool.Pool
	urlIDs []int64
	every  time.Duration

	mu     sync.Mutex
	seen   map[checkKey]time.Time
	errs   int
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// lookback bounds each poll to recent scheduledAts; a result stored later
// than that after its scheduledAt is found by the last poll (from).
const lookback = time.Minute

func watchStored(ctx context.Context, db *pgxpool.Pool, urlIDs []int64, every time.Duration) *storedWatch {
	w := &storedWatch{db: db, urlIDs: urlIDs, every: every, seen: map[checkKey]time.Time{}}
	ctx, w.cancel = context.WithCancel(ctx)
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		prev := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			w.poll(ctx, now.Add(-lookback), prev.Add(now.Sub(prev)/2))
			prev = now
		}
	}()
	return w
}

// poll records the sample's results scheduled since `since` that it has
// not seen yet as stored at `at`.
func (w *storedWatch) poll(ctx context.Context, since, at time.Time) {
	rows, err := w.db.Query(ctx, `SELECT url_id, scheduled_at FROM check_results
		WHERE url_id = ANY($1) AND scheduled_at >= $2 AND trigger = 0`, w.urlIDs, since)
	if err != nil {
		w.mu.Lock()
		w.errs++
		w.mu.Unlock()
		return
	}
	defer rows.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	for rows.Next() {
		var k checkKey
		var scheduled time.Time
		if rows.Scan(&k.urlID, &scheduled) != nil {
			continue
		}
		k.scheduledAt = scheduled.UnixMicro()
		if _, ok := w.seen[k]; !ok {
			w.seen[k] = at
		}
	}
}

// stop ends the polling after a last poll back to from, and returns the
// delays of the sample's results scheduled in [from, to), sorted.
func (w *storedWatch) stop(ctx context.Context, from, to time.Time) []time.Duration {
	w.cancel()
	w.done.Wait()
	w.poll(ctx, from, time.Now())
	w.mu.Lock()
	defer w.mu.Unlock()
	var delays []time.Duration
	for k, at := range w.seen {
		if k.scheduledAt >= from.UnixMicro() && k.scheduledAt < to.UnixMicro() {
			delays = append(delays, at.Sub(time.UnixMicro(k.scheduledAt)))
		}
	}
	slices.Sort(delays)
	return delays
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
