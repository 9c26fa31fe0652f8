// Package postgres gives tests a fresh, empty PostgreSQL database on a real
// server: the one in $WEBMON_DATABASE_URL (as `make test` sets it through
// hack/with-postgres.sh), or else a throwaway cluster started by
// hack/postgres.sh for as long as the database lives.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/webmon-dev/webmon/test/testbed"
)

// URLEnv names the environment variable with the server to use.
const URLEnv = "WEBMON_DATABASE_URL"

// Database is a database of its own on a real PostgreSQL server.
type Database struct {
	// URL is the connection string of the database.
	URL string

	name      string
	serverURL string
}

// NewDatabase creates an empty database named after prefix with a random
// suffix, so test packages running at once never see each other's tables.
func NewDatabase(ctx context.Context, prefix string) (*Database, error) {
	serverURL, err := acquireServer(ctx)
	if err != nil {
		return nil, err
	}
	d := &Database{serverURL: serverURL}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	d.name = prefix + "_" + hex.EncodeToString(suffix)
	if err := d.admin(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, errors.Join(fmt.Errorf("creating test database on %s: %w", redact(serverURL), err), releaseServer())
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("parsing $%s: %w", URLEnv, err), releaseServer())
	}
	u.Path = "/" + d.name
	d.URL = u.String()
	return d, nil
}

// Close drops the database, and stops the throwaway server when its last
// database is gone.
func (d *Database) Close(ctx context.Context) error {
	err := d.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
	return errors.Join(err, releaseServer())
}

// The server the databases of this process live on: $WEBMON_DATABASE_URL,
// or one throwaway cluster shared by every database until the last closes.
var server struct {
	sync.Mutex
	url        string
	clusterDir string // set when this process started the cluster
	users      int
}

func acquireServer(ctx context.Context) (string, error) {
	server.Lock()
	defer server.Unlock()
	if server.users == 0 {
		if env := os.Getenv(URLEnv); env != "" {
			server.url = env
		} else {
			dir, err := os.MkdirTemp("", "webmon-pg-")
			if err != nil {
				return "", err
			}
			out, err := exec.CommandContext(ctx, script(), "start", dir).Output()
			if err != nil {
				_ = exec.Command(script(), "stop", dir).Run()
				return "", fmt.Errorf("starting a throwaway PostgreSQL (hack/postgres.sh): %w%s", err, stderrOf(err))
			}
			server.url, server.clusterDir = strings.TrimSpace(string(out)), dir
		}
	}
	server.users++
	return server.url, nil
}

func releaseServer() error {
	server.Lock()
	defer server.Unlock()
	server.users--
	if server.users > 0 || server.clusterDir == "" {
		return nil
	}
	dir := server.clusterDir
	server.clusterDir, server.url = "", ""
	if out, err := exec.Command(script(), "stop", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("stopping throwaway PostgreSQL: %w: %s", err, out)
	}
	return nil
}

func (d *Database) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, d.serverURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

func script() string { return filepath.Join(testbed.RepoRoot(), "hack", "postgres.sh") }

func stderrOf(err error) string {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && len(exitErr.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(exitErr.Stderr))
	}
	return ""
}

// redact hides a password in a connection URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
