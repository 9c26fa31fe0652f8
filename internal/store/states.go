package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RecentResult is one of a URL's latest results, as much of it as a
// checker needs to rebuild the URL's state.
type RecentResult struct {
	ScheduledAt  time.Time
	CheckedAt    time.Time
	Outcome      Outcome
	ErrorMessage string
	StatusCode   int
	Total        time.Duration
	Plugins      json.RawMessage
}

// StoredURL is what PostgreSQL knows of a URL: its settled state and its
// latest results, newest first.
type StoredURL struct {
	URLState
	Recent []RecentResult
}

// LoadURLs reads the URLs of the given Websites, each with up to depth of
// its latest passed or failed results since `since`: what a checker that
// takes over a Website (a Kafka partition moved to it, or it restarted)
// rebuilds its state from.
func (s *Store) LoadURLs(ctx context.Context, websiteUIDs []string, since time.Time, depth int) ([]StoredURL, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT u.url_id, u.website_uid::text, u.namespace, u.name, u.url, u.state,
			u.state_since, u.state_scheduled_at,
			r.scheduled_at, r.checked_at, r.outcome, coalesce(r.error_message, ''), coalesce(r.status_code, 0),
			coalesce(r.total_us, 0), r.plugins
		FROM urls u
		LEFT JOIN LATERAL (
			SELECT scheduled_at, checked_at, outcome, error_message, status_code, total_us, plugins
			FROM check_results c
			WHERE c.url_id = u.url_id AND c.scheduled_at >= $2 AND c.outcome <> 'missed'
			ORDER BY c.scheduled_at DESC LIMIT $3
		) r ON true
		WHERE u.website_uid = ANY($1::uuid[])
		ORDER BY u.url_id, r.scheduled_at DESC`, websiteUIDs, since, depth)
	if err != nil {
		return nil, fmt.Errorf("loading the URLs of %d Websites: %w", len(websiteUIDs), err)
	}
	var out []StoredURL
	for rows.Next() {
		var (
			u          URLState
			since, at  *time.Time
			scheduled  *time.Time
			checked    *time.Time
			outcome    *string
			message    string
			statusCode int16
			totalUS    int32
			plugins    []byte
		)
		if err := rows.Scan(&u.URLID, &u.WebsiteUID, &u.Namespace, &u.Name, &u.URL, &u.State, &since, &at,
			&scheduled, &checked, &outcome, &message, &statusCode, &totalUS, &plugins); err != nil {
			return nil, err
		}
		if since != nil && at != nil {
			u.Since, u.ScheduledAt = *since, *at
		}
		if len(out) == 0 || out[len(out)-1].URLID != u.URLID {
			out = append(out, StoredURL{URLState: u})
		}
		if scheduled != nil {
			last := &out[len(out)-1]
			last.Recent = append(last.Recent, RecentResult{
				ScheduledAt: *scheduled, CheckedAt: *checked, Outcome: Outcome(*outcome), ErrorMessage: message,
				StatusCode: int(statusCode), Total: time.Duration(totalUS) * time.Microsecond, Plugins: plugins,
			})
		}
	}
	return out, rows.Err()
}

// LoadPluginStates reads the histories plugin keeps for the given URLs,
// by URL id.
func (s *Store) LoadPluginStates(ctx context.Context, plugin string, urlIDs []int64) (map[int64]PluginState, error) {
	rows, err := s.pool.Query(ctx, `SELECT url_id, plugin, state, scheduled_at FROM plugin_state
		WHERE plugin = $1 AND url_id = ANY($2)`, plugin, urlIDs)
	if err != nil {
		return nil, fmt.Errorf("loading %s histories: %w", plugin, err)
	}
	states, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PluginState, error) {
		var p PluginState
		err := row.Scan(&p.URLID, &p.Plugin, &p.State, &p.ScheduledAt)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("loading %s histories: %w", plugin, err)
	}
	out := make(map[int64]PluginState, len(states))
	for _, p := range states {
		out[p.URLID] = p
	}
	return out, nil
}
