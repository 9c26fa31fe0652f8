package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoWebsite is returned by History for a Website that has no stored
// results.
var ErrNoWebsite = errors.New("no results are stored for that Website")

// History is what PostgreSQL holds of one Website: each URL's state, its
// latest checks, and its hourly rollups.
type History struct {
	Namespace, Name, WebsiteUID string
	URLs                        []URLHistory
}

// URLHistory is one URL's part of a History.
type URLHistory struct {
	URLState
	// Recent are the latest results, newest first.
	Recent []Result
	// Hours are the hourly rollups since the window's start, oldest first.
	Hours []HourRollup
	// Window covers the whole window; Month the last 30 days.
	Window, Month Uptime
}

// HourRollup is an hour of one URL's checks.
type HourRollup struct {
	Hour time.Time
	Uptime
	// Mean is the mean latency of the hour's checks.
	Mean time.Duration
}

// History reads the Website namespace/name's history over the window
// before now: up to limit recent results per URL, and every hourly rollup.
// A name used by Websites deleted and created again has several UIDs; the
// newest is read.
func (s *Store) History(ctx context.Context, namespace, name string, now time.Time, window time.Duration, limit int) (*History, error) {
	since := now.Add(-window)
	h := &History{Namespace: namespace, Name: name}
	err := s.pool.QueryRow(ctx, `SELECT website_uid::text FROM urls WHERE namespace = $1 AND name = $2
		ORDER BY first_seen DESC LIMIT 1`, namespace, name).Scan(&h.WebsiteUID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s/%s: %w", namespace, name, ErrNoWebsite)
	}
	if err != nil {
		return nil, fmt.Errorf("finding %s/%s: %w", namespace, name, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT url_id, url, state, state_since FROM urls WHERE website_uid = $1 ORDER BY url`, h.WebsiteUID)
	if err != nil {
		return nil, fmt.Errorf("reading the URLs of %s/%s: %w", namespace, name, err)
	}
	byID := map[int64]*URLHistory{}
	urls, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (URLHistory, error) {
		u := URLHistory{URLState: URLState{WebsiteUID: h.WebsiteUID, Namespace: namespace, Name: name}}
		var since *time.Time
		err := row.Scan(&u.URLID, &u.URL, &u.State, &since)
		if since != nil {
			u.Since = *since
		}
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the URLs of %s/%s: %w", namespace, name, err)
	}
	h.URLs = urls
	ids := make([]int64, len(urls))
	for i := range h.URLs {
		ids[i] = h.URLs[i].URLID
		byID[ids[i]] = &h.URLs[i]
	}
	if err := s.recentResults(ctx, ids, since, limit, byID); err != nil {
		return nil, err
	}
	if err := s.hourRollups(ctx, h.WebsiteUID, now, since, byID); err != nil {
		return nil, err
	}
	return h, nil
}

func (s *Store) recentResults(ctx context.Context, ids []int64, since time.Time, limit int, byID map[int64]*URLHistory) error {
	rows, err := s.pool.Query(ctx, `
		SELECT r.url_id, r.scheduled_at, r.checked_at, r.trigger, r.outcome, coalesce(r.error_class, ''), coalesce(r.error_message, ''),
			coalesce(r.status_code, 0), coalesce(r.total_us, 0), coalesce(r.body_bytes, 0)
		FROM unnest($1::bigint[]) AS u(url_id)
		CROSS JOIN LATERAL (
			SELECT * FROM check_results c WHERE c.url_id = u.url_id AND c.scheduled_at >= $2
			ORDER BY c.scheduled_at DESC LIMIT $3
		) r
		ORDER BY r.url_id, r.scheduled_at DESC`, ids, since, limit)
	if err != nil {
		return fmt.Errorf("reading recent results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id              int64
			r               Result
			trigger, status int16
			outcome         string
			totalUS, body   int32
		)
		if err := rows.Scan(&id, &r.ScheduledAt, &r.CheckedAt, &trigger, &outcome, &r.ErrorClass, &r.ErrorMessage, &status, &totalUS, &body); err != nil {
			return fmt.Errorf("reading recent results: %w", err)
		}
		r.Trigger, r.Outcome, r.StatusCode, r.BodyBytes = int(trigger), Outcome(outcome), int(status), int(body)
		r.Total = time.Duration(totalUS) * time.Microsecond
		u := byID[id]
		r.WebsiteUID, r.Namespace, r.Name, r.URL = u.WebsiteUID, u.Namespace, u.Name, u.URL
		u.Recent = append(u.Recent, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading recent results: %w", err)
	}
	return nil
}

// hourRollups fills each URL's hours since `since`, its uptime over them,
// and its uptime over the last 30 days, from one read of the hour rollups.
func (s *Store) hourRollups(ctx context.Context, websiteUID string, now, since time.Time, byID map[int64]*URLHistory) error {
	month := now.UTC().Truncate(time.Hour).Add(-30 * 24 * time.Hour)
	from := since.UTC().Truncate(time.Hour)
	if month.Before(from) {
		from = month
	}
	rows, err := s.pool.Query(ctx, `SELECT url_id, bucket, checks, up, missed, latency_count, latency_sum_us, latency_le
		FROM `+pgx.Identifier{TableHourRollups}.Sanitize()+` WHERE website_uid = $1 AND bucket >= $2 ORDER BY url_id, bucket`,
		websiteUID, from)
	if err != nil {
		return fmt.Errorf("reading hour rollups: %w", err)
	}
	defer rows.Close()
	type totals struct {
		count int64
		le    []int64
	}
	window, monthly := map[int64]*totals{}, map[int64]*totals{}
	add := func(m map[int64]*totals, id int64, u *Uptime, r Uptime, count int64, le []int64) {
		u.Checks, u.Up, u.Missed = u.Checks+r.Checks, u.Up+r.Up, u.Missed+r.Missed
		t := m[id]
		if t == nil {
			t = &totals{}
			m[id] = t
		}
		t.count += count
		t.le = addCounts(t.le, le)
	}
	for rows.Next() {
		var (
			id                         int64
			hour                       time.Time
			checks, up, missed, lcount int32
			sumUS                      int64
			le32                       []int32
		)
		if err := rows.Scan(&id, &hour, &checks, &up, &missed, &lcount, &sumUS, &le32); err != nil {
			return fmt.Errorf("reading hour rollups: %w", err)
		}
		u := byID[id]
		if u == nil {
			continue
		}
		le := make([]int64, len(le32))
		for i, n := range le32 {
			le[i] = int64(n)
		}
		counts := Uptime{Checks: int64(checks), Up: int64(up), Missed: int64(missed)}
		if !hour.Before(month) {
			add(monthly, id, &u.Month, counts, int64(lcount), le)
		}
		if hour.Before(since.UTC().Truncate(time.Hour)) {
			continue
		}
		r := HourRollup{Hour: hour, Uptime: counts}
		r.P95 = Quantile(0.95, int64(lcount), le)
		if lcount > 0 {
			r.Mean = time.Duration(sumUS/int64(lcount)) * time.Microsecond
		}
		u.Hours = append(u.Hours, r)
		add(window, id, &u.Window, counts, int64(lcount), le)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading hour rollups: %w", err)
	}
	for id, u := range byID {
		if t := window[id]; t != nil {
			u.Window.P95 = Quantile(0.95, t.count, t.le)
		}
		if t := monthly[id]; t != nil {
			u.Month.P95 = Quantile(0.95, t.count, t.le)
		}
	}
	return nil
}

func addCounts(a, b []int64) []int64 {
	if len(a) < len(b) {
		a = append(a, make([]int64, len(b)-len(a))...)
	}
	for i, n := range b {
		a[i] += n
	}
	return a
}
