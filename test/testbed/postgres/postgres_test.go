package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

var db *postgres.Database

func TestMain(m *testing.M) {
	ctx := context.Background()
	var err error
	if db, err = postgres.NewDatabase(ctx, "testbed"); err != nil {
		fmt.Fprintln(os.Stderr, "test bed PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := db.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "closing test bed PostgreSQL:", err)
		code = 1
	}
	os.Exit(code)
}

// TestCopyAndReadBack writes rows the way the checker will (COPY through a
// pool) and reads them back.
func TestCopyAndReadBack(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var version int
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 150000 {
		t.Fatalf("server version %d, want PostgreSQL 15 or newer", version)
	}

	if _, err := pool.Exec(ctx, `CREATE TABLE results (
		id bigint NOT NULL, checked_at timestamptz NOT NULL, status int, latency_ms int, ok bool, error text,
		PRIMARY KEY (id, checked_at))`); err != nil {
		t.Fatal(err)
	}
	const rows = 10_000
	start := time.Now().UTC().Truncate(time.Microsecond)
	copied, err := pool.CopyFrom(ctx, pgx.Identifier{"results"},
		[]string{"id", "checked_at", "status", "latency_ms", "ok", "error"},
		pgx.CopyFromSlice(rows, func(i int) ([]any, error) {
			var errText *string
			if i%10 == 0 {
				s := "connection refused"
				errText = &s
			}
			return []any{int64(i % 100), start.Add(time.Duration(i) * time.Second), 200, i % 500, i%10 != 0, errText}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if copied != rows {
		t.Fatalf("copied %d rows, want %d", copied, rows)
	}

	var count, failures int
	var first time.Time
	err = pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE NOT ok), min(checked_at) FROM results`).Scan(&count, &failures, &first)
	if err != nil {
		t.Fatal(err)
	}
	if count != rows || failures != rows/10 || !first.Equal(start) {
		t.Errorf("read back count=%d failures=%d first=%v, want %d, %d, %v", count, failures, first, rows, rows/10, start)
	}
}

// TestDatabasesAreIsolated makes sure test packages sharing a server cannot
// see each other's tables, and that Close removes a database.
func TestDatabasesAreIsolated(t *testing.T) {
	ctx := t.Context()
	other, err := postgres.NewDatabase(ctx, "testbed_other")
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = other.Close(context.Background())
		}
	})
	if serverOf(t, other.URL) != serverOf(t, db.URL) {
		t.Fatalf("the two databases are on different servers (%s, %s): isolation would be trivially true", serverOf(t, other.URL), serverOf(t, db.URL))
	}
	conn, err := pgx.Connect(ctx, other.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE only_here (x int)"); err != nil {
		t.Fatal(err)
	}
	var dbName string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	mine, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close(ctx)
	var visible bool
	if err := mine.QueryRow(ctx, "SELECT to_regclass('only_here') IS NOT NULL").Scan(&visible); err != nil {
		t.Fatal(err)
	}
	if visible {
		t.Error("a table created in another test database is visible in this one")
	}

	closed = true
	if err := other.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := mine.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", dbName).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after Close", dbName)
	}
}

// serverOf is the host:port of a connection URL.
func serverOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
