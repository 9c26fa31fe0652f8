package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/pki"
)

// TestDatabaseVerifyFull: webmon reaches a PostgreSQL that serves TLS with
// sslmode=verify-full (a CA made here, a certificate for localhost), and
// refuses one whose certificate another CA signed or that names another
// host.
func TestDatabaseVerifyFull(t *testing.T) {
	certs := t.TempDir()
	ca, err := pki.NewCA("webmon-test-db-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Server("localhost", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := serving.Write(certs, "server"); err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	trust := map[string]string{"ours": filepath.Join(certs, "ca.crt"), "theirs": filepath.Join(certs, "other-ca.crt")}
	for name, pem := range map[string][]byte{trust["ours"]: ca.CertPEM, trust["theirs"]: other.CertPEM} {
		if err := os.WriteFile(name, pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	port := startTLSPostgres(t, certs)
	dsn := func(host, rootCert string) string {
		return fmt.Sprintf("postgres://postgres@%s:%s/postgres?sslmode=verify-full&sslrootcert=%s", host, port, url.QueryEscape(rootCert))
	}

	t.Setenv(store.URLEnv, dsn("localhost", trust["ours"]))
	if out, err := run(t.Context(), "migrate"); err != nil {
		t.Fatalf("migrate over verify-full: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(t.Context(), dsn("localhost", trust["ours"]))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var ssl bool
	if err := conn.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("the connection uses TLS: %v, %v", ssl, err)
	}

	for name, u := range map[string]string{
		"a certificate of another CA":    dsn("localhost", trust["theirs"]),
		"a certificate for another host": dsn("127.0.0.1", trust["ours"]),
	} {
		t.Setenv(store.URLEnv, u)
		if _, err := run(t.Context(), "migrate"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
	}
}

// startTLSPostgres starts a throwaway cluster serving TLS with
// certs/server.{crt,key}, and returns its port.
func startTLSPostgres(t *testing.T, certs string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "webmon-pg-tls-")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testbed.RepoRoot(), "hack", "postgres.sh")
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stopping PostgreSQL: %v\n%s", err, out)
		}
	})
	cmd := exec.CommandContext(t.Context(), script, "start", dir)
	cmd.Env = append(os.Environ(), "WEBMON_PG_TLS_DIR="+certs)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting PostgreSQL with TLS: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}
