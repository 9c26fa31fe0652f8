// Package postgres gives tests a fresh, empty PostgreSQL database on a real
// server: the one in $WEBMON_DATABASE_URL (as `make test` sets it through
// hack/with-postgres.sh), or else a throwaway cluster started by
// hack/postgres.sh for as long as the database lives. A test that stops
// PostgreSQL on purpose starts a Server of its own instead.
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
	"strconv"
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
	// release lets go of the server once the database is dropped.
	release func() error
}

// NewDatabase creates an empty database named after prefix with a random
// suffix, so test packages running at once never see each other's tables.
func NewDatabase(ctx context.Context, prefix string) (*Database, error) {
	serverURL, err := acquireServer(ctx)
	if err != nil {
		return nil, err
	}
	return newDatabase(ctx, serverURL, prefix, releaseServer)
}

func newDatabase(ctx context.Context, serverURL, prefix string, release func() error) (*Database, error) {
	d := &Database{serverURL: serverURL, release: release}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	d.name = prefix + "_" + hex.EncodeToString(suffix)
	if err := d.admin(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, errors.Join(fmt.Errorf("creating test database on %s: %w", redact(serverURL), err), release())
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("parsing the server's URL: %w", err), release())
	}
	u.Path = "/" + d.name
	d.URL = u.String()
	return d, nil
}

// Close drops the database, and stops the throwaway server when its last
// database is gone.
func (d *Database) Close(ctx context.Context) error {
	err := d.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
	return errors.Join(err, d.release())
}

// Server is a throwaway PostgreSQL cluster of one test's own
// (hack/postgres.sh), which the test may halt and start again, on the same
// port and with its data, as an outage would.
type Server struct {
	// URL is the connection string of its postgres database.
	URL string
	dir string
}

// StartServer starts a cluster in a new folder of the temporary directory
// (whose parents the postgres user can traverse).
func StartServer(ctx context.Context) (*Server, error) {
	d, err := os.MkdirTemp("", "webmon-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: d}
	out, err := exec.CommandContext(ctx, script(), "start", d).Output()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("starting PostgreSQL (hack/postgres.sh): %w%s", err, stderrOf(err)), s.Close())
	}
	s.URL = strings.TrimSpace(string(out))
	return s, nil
}

// NewDatabase creates an empty database on the server; closing it leaves
// the server running.
func (s *Server) NewDatabase(ctx context.Context, prefix string) (*Database, error) {
	return newDatabase(ctx, s.URL, prefix, func() error { return nil })
}

// Halt stops the server fast, cutting its sessions; Start brings it back.
func (s *Server) Halt(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, script(), "halt", s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("halting PostgreSQL: %w: %s", err, out)
	}
	return nil
}

// Start starts a halted server again, on its port.
func (s *Server) Start(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, script(), "start", s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("starting PostgreSQL again: %w: %s", err, out)
	}
	return nil
}

// Pid is the server's postmaster process id, 0 while it is halted.
func (s *Server) Pid() int {
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	return pid
}

// Close stops the server and removes its folder.
func (s *Server) Close() error {
	if out, err := exec.Command(script(), "stop", s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("stopping PostgreSQL: %w: %s", err, out)
	}
	return nil
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
