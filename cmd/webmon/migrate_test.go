package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/test/testbed/postgres"
)

func TestMigrateCommand(t *testing.T) {
	db, err := postgres.NewDatabase(t.Context(), "migrate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })

	t.Setenv(store.URLEnv, "")
	if _, err := run(t.Context(), "migrate"); err == nil || !strings.Contains(err.Error(), "database URL: none given") {
		t.Errorf("without a database URL: %v", err)
	}
	t.Setenv(store.URLEnv, "postgres://webmon:hunter2@[::1")
	if _, err := run(t.Context(), "migrate"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a malformed URL: %v (it must fail without quoting the password)", err)
	}

	// From a file, as a mounted Secret.
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte(db.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t.Context(), "migrate", "--database-url-file", file)
	if err != nil || !strings.Contains(out, "applied 00001_check_results.sql") {
		t.Fatalf("first migrate: %q, %v", out, err)
	}
	t.Setenv(store.URLEnv, db.URL)
	out, err = run(t.Context(), "migrate")
	if err != nil || !strings.Contains(out, "the schema is up to date") {
		t.Errorf("second migrate: %q, %v", out, err)
	}
}
