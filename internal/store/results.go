package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// Store is webmon's PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// New wraps a pool whose connections were set up by Configure.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Configure prepares a pool's configuration for WriteResults: each
// connection gets its own staging table, emptied at every commit.
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

var resultColumns = []string{
	"url_id", "scheduled_at", "website_uid", "namespace", "name", "url", "url_index", "trigger", "checked_at",
	"outcome", "error_class", "error_message", "status_code",
	"dns_us", "connect_us", "tls_us", "ttfb_us", "total_us", "body_bytes", "plugins",
}

// WriteResults stores a batch; once it returns nil, every result of it is
// durable. A result already stored (a redelivered task) is not stored
// again; inserted counts the new ones.
//
// The batch is COPYed straight into check_results: redeliveries are rare,
// and this is as fast as PostgreSQL takes rows. Only when that meets a
// result already stored does the batch go the idempotent way: COPY into
// the connection's staging table, then INSERT … ON CONFLICT DO NOTHING.
func (s *Store) WriteResults(ctx context.Context, results []Result) (inserted int64, err error) {
	rows := make([][]any, len(results))
	for i := range results {
		rows[i] = results[i].row()
	}
	inserted, err = s.pool.CopyFrom(ctx, pgx.Identifier{"check_results"}, resultColumns, pgx.CopyFromRows(rows))
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
		if err != nil {
			return 0, fmt.Errorf("copying %d results: %w", len(results), err)
		}
		return inserted, nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"check_results_staging"}, resultColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copying %d results to staging: %w", len(results), err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO check_results SELECT * FROM check_results_staging ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("inserting %d results: %w", len(results), err)
		}
		inserted = tag.RowsAffected()
		return nil
	})
	return inserted, err
}

func (r *Result) row() []any {
	return []any{
		URLID(r.WebsiteUID, r.URL), r.ScheduledAt, r.WebsiteUID, r.Namespace, r.Name, r.URL, int16(r.URLIndex), int16(r.Trigger), r.CheckedAt,
		string(r.Outcome), nullString(r.ErrorClass), nullString(r.ErrorMessage), nullInt16(r.StatusCode),
		micros(r.DNS), micros(r.Connect), micros(r.TLS), micros(r.TTFB), micros(r.Total), int32(r.BodyBytes), nullJSON(r.Plugins),
	}
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
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
	v := int32(d.Microseconds())
	return &v
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}
