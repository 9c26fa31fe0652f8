package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Outcome is a check's verdict.
type Outcome string

// The outcomes a result can have.
const (
	OutcomeUp     Outcome = "up"
	OutcomeDown   Outcome = "down"
	OutcomeMissed Outcome = "missed"
)

// Result is one check's result, a row of check_results.
type Result struct {
	WebsiteUID   string
	Namespace    string
	Name         string
	URL          string
	URLIndex     int
	ScheduledAt  time.Time
	Trigger      int
	CheckedAt    time.Time
	Outcome      Outcome
	ErrorClass   string
	ErrorMessage string
	StatusCode   int
	// Phase timings; zero when the phase did not happen.
	DNS, Connect, TLS, TTFB, Total time.Duration
	BodyBytes                      int
	Plugins                        json.RawMessage
}

// URLID identifies a URL of a Website in check_results: a hash of the
// UID and the URL, stable across URL reordering.
func URLID(websiteUID, url string) int64 {
	h := xxhash.New()
	_, _ = h.WriteString(websiteUID)
	_, _ = h.WriteString("\x00")
	_, _ = h.WriteString(url)
	return int64(h.Sum64())
}

// URLState is a row of urls: a URL a checker saw for the first time
// (State empty), or whose state it settled anew.
type URLState struct {
	URLID      int64
	WebsiteUID string
	Namespace  string
	Name       string
	URL        string
	// State is Pending, Up or Down; empty only records the URL.
	State string
	// Since is when the URL entered State.
	Since time.Time
	// ScheduledAt is the scheduledAt of the check that settled State: a
	// row is only ever updated by a newer one.
	ScheduledAt time.Time
}

// PluginState is the history a stateful plugin keeps for a URL, as of the
// check scheduled at ScheduledAt.
type PluginState struct {
	URLID       int64
	Plugin      string
	State       json.RawMessage
	ScheduledAt time.Time
}

// Batch is what a checker stores at once, in one transaction: results,
// and the URL states and plugin histories that those results moved.
type Batch struct {
	Results      []Result
	URLs         []URLState
	PluginStates []PluginState
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// Store is webmon's PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// New wraps a pool whose connections were set up by Configure.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Configure prepares a pool's configuration for Write: each connection
// gets its own staging table, emptied at every commit.
func Configure(cfg *pgxpool.Config) {
	next := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if next != nil {
			if err := next(ctx, conn); err != nil {
				return err
			}
		}
		_, err := conn.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS check_results_staging
			(LIKE check_results INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`)
		return err
	}
}

var (
	// ResultColumns are the columns of check_results, in Result.Row's order.
	ResultColumns = []string{
		"url_id", columnScheduledAt, "website_uid", "namespace", "name", "url", "url_index", "trigger", "checked_at",
		"outcome", "error_class", "error_message", "status_code",
		"dns_us", "connect_us", "tls_us", "ttfb_us", "total_us", "body_bytes", "plugins",
	}
	pendingColumns = []string{"website_uid", "url_id", columnScheduledAt, "outcome", "total_us"}
)

// columnScheduledAt is check_results' partition key.
const columnScheduledAt = "scheduled_at"

// Write stores a batch; once it returns nil, all of it is durable. A
// result already stored (a redelivered task) is not stored again, nor
// counted again in the rollups; inserted counts the new results.
//
// The results are COPYed straight into check_results: redeliveries are
// rare, and this is as fast as PostgreSQL takes rows. Only when that meets
// a result already stored does the batch go the idempotent way: COPY into
// the connection's staging table, then INSERT … ON CONFLICT DO NOTHING,
// which says which results were new.
func (s *Store) Write(ctx context.Context, b *Batch) (inserted int64, err error) {
	rows := make([][]any, len(b.Results))
	for i := range b.Results {
		rows[i] = b.Results[i].Row()
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n, err := tx.CopyFrom(ctx, pgx.Identifier{TableResults}, ResultColumns, pgx.CopyFromRows(rows))
		if err != nil {
			return err
		}
		pending := make([][]any, len(rows))
		for i, r := range rows {
			pending[i] = []any{r[2], r[0], r[1], r[9], r[17]}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"rollup_pending"}, pendingColumns, pgx.CopyFromRows(pending)); err != nil {
			return fmt.Errorf("copying %d results to rollup_pending: %w", len(rows), err)
		}
		inserted = n
		return writeStates(ctx, tx, b)
	})
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
		if err != nil {
			return 0, fmt.Errorf("storing %d results: %w", len(b.Results), err)
		}
		return inserted, nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"check_results_staging"}, ResultColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copying %d results to staging: %w", len(rows), err)
		}
		tag, err := tx.Exec(ctx, `
			WITH new AS (
				INSERT INTO check_results SELECT * FROM check_results_staging ON CONFLICT DO NOTHING
				RETURNING website_uid, url_id, scheduled_at, outcome, total_us
			)
			INSERT INTO rollup_pending SELECT * FROM new`)
		if err != nil {
			return fmt.Errorf("inserting %d results: %w", len(rows), err)
		}
		inserted = tag.RowsAffected()
		return writeStates(ctx, tx, b)
	})
	return inserted, err
}

// writeStates upserts the batch's URL states and plugin histories, each
// only over an older one. Rows are deduplicated (an upsert cannot touch a
// row twice) and sorted, so that concurrent writers lock in one order.
func writeStates(ctx context.Context, tx pgx.Tx, b *Batch) error {
	if urls := latestURLStates(b.URLs); len(urls) > 0 {
		var (
			ids                                []int64
			uids, namespaces, names, us, state []string
			since, scheduled                   []*time.Time
		)
		for _, u := range urls {
			ids, uids, namespaces, names, us = append(ids, u.URLID), append(uids, u.WebsiteUID), append(namespaces, u.Namespace), append(names, u.Name), append(us, u.URL)
			if u.State == "" {
				state, since, scheduled = append(state, "Pending"), append(since, nil), append(scheduled, nil)
				continue
			}
			state, since, scheduled = append(state, u.State), append(since, &u.Since), append(scheduled, &u.ScheduledAt)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO urls AS u (url_id, website_uid, namespace, name, url, state, state_since, state_scheduled_at)
			SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
			ON CONFLICT (url_id) DO UPDATE SET
				state = excluded.state, state_since = excluded.state_since, state_scheduled_at = excluded.state_scheduled_at
			WHERE excluded.state_scheduled_at IS NOT NULL
				AND (u.state_scheduled_at IS NULL OR u.state_scheduled_at < excluded.state_scheduled_at)`,
			ids, uids, namespaces, names, us, state, since, scheduled); err != nil {
			return fmt.Errorf("storing %d URL states: %w", len(urls), err)
		}
	}
	if states := latestPluginStates(b.PluginStates); len(states) > 0 {
		var (
			ids       []int64
			plugins   []string
			values    []string
			scheduled []time.Time
		)
		for _, p := range states {
			ids, plugins, values, scheduled = append(ids, p.URLID), append(plugins, p.Plugin), append(values, string(p.State)), append(scheduled, p.ScheduledAt)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO plugin_state AS p (url_id, plugin, state, scheduled_at)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::timestamptz[])
			ON CONFLICT (url_id, plugin) DO UPDATE SET state = excluded.state, scheduled_at = excluded.scheduled_at
			WHERE p.scheduled_at < excluded.scheduled_at`,
			ids, plugins, values, scheduled); err != nil {
			return fmt.Errorf("storing %d plugin histories: %w", len(states), err)
		}
	}
	return nil
}

// latestURLStates keeps, per URL, the state settled by the newest check
// (a bare record only when there is nothing else), sorted by URL id.
func latestURLStates(in []URLState) []URLState {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b URLState) int {
		return cmp.Or(cmp.Compare(a.URLID, b.URLID), a.ScheduledAt.Compare(b.ScheduledAt))
	})
	return dedupLast(out, func(a, b URLState) bool { return a.URLID == b.URLID })
}

func latestPluginStates(in []PluginState) []PluginState {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b PluginState) int {
		return cmp.Or(cmp.Compare(a.URLID, b.URLID), cmp.Compare(a.Plugin, b.Plugin), a.ScheduledAt.Compare(b.ScheduledAt))
	})
	return dedupLast(out, func(a, b PluginState) bool { return a.URLID == b.URLID && a.Plugin == b.Plugin })
}

// dedupLast keeps the last of each run of equal neighbours.
func dedupLast[T any](s []T, eq func(a, b T) bool) []T {
	out := s[:0]
	for i := range s {
		if i+1 < len(s) && eq(s[i], s[i+1]) {
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// Row is the result as a row of check_results, for COPY. The UID goes as
// a parsed UUID: pgx encodes a string for a uuid column only after a
// failed first try, which costs more than the rest of the row; and
// uuid.Parse, unlike pgtype's, allocates nothing.
func (r *Result) Row() []any {
	parsed, err := uuid.Parse(r.WebsiteUID)
	// An invalid UID is NULL, refused by the table: tasks are validated.
	uid := pgtype.UUID{Bytes: parsed, Valid: err == nil}
	return []any{
		URLID(r.WebsiteUID, r.URL), r.ScheduledAt, uid, text(r.Namespace), text(r.Name), text(r.URL), int16(r.URLIndex), int16(r.Trigger), r.CheckedAt,
		string(r.Outcome), nullString(r.ErrorClass), nullString(r.ErrorMessage), nullInt16(r.StatusCode),
		micros(r.DNS), micros(r.Connect), micros(r.TLS), micros(r.TTFB), micros(r.Total), int32(r.BodyBytes), nullJSON(r.Plugins),
	}
}

// text makes s storable: PostgreSQL's text takes neither NUL bytes nor
// invalid UTF-8, and one such message, from a hostile target, must not
// make a whole batch fail on every retry.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	s = text(s)
	return &s
}

func nullInt16(n int) *int16 {
	if n == 0 {
		return nil
	}
	v := int16(n)
	return &v
}

func micros(d time.Duration) *int32 {
	if d <= 0 {
		return nil
	}
	v := int32(min(d.Microseconds(), 1<<31-1))
	return &v
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	// jsonb refuses the NUL character, which encoding/json writes as
	// \u0000 (a plugin may quote a hostile body).
	return strings.ReplaceAll(string(b), `\u0000`, `\ufffd`)
}
