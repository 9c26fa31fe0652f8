package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/webmon-dev/webmon/internal/store"
)

func newMigrateCommand() *cobra.Command {
	var db store.Config
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL schema migrations",
		Long: `Apply the migrations of webmon's PostgreSQL schema that are not applied yet,
and create the daily partitions of check_results for today and the next days.
Safe to run again, and from several processes at once (an advisory lock
serialises them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd.Context(), cmd, &db)
		},
	}
	db.AddFlags(cmd.Flags())
	return cmd
}

func runMigrate(ctx context.Context, cmd *cobra.Command, db *store.Config) error {
	applied, err := migrateDatabase(ctx, db)
	if err != nil {
		return err
	}
	report := "the schema is up to date\n"
	if len(applied) > 0 {
		report = "applied " + strings.Join(applied, "\napplied ") + "\n"
	}
	_, err = fmt.Fprint(cmd.OutOrStdout(), report)
	return err
}

// migrateDatabase applies the migrations not applied yet and creates the
// daily partitions ahead; it returns the migrations applied.
func migrateDatabase(ctx context.Context, db *store.Config) ([]string, error) {
	pool, err := db.Pool(ctx, false)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	applied, err := store.Migrate(ctx, pool)
	if err != nil {
		return nil, err
	}
	return applied, store.New(pool).EnsurePartitions(ctx, time.Now(), store.PartitionsAhead)
}
