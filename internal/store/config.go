package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"
)

// URLEnv carries the PostgreSQL connection string when it is not read from
// a file. There is deliberately no flag for it: it usually holds a password.
const URLEnv = "WEBMON_DATABASE_URL"

// Config is how a component reaches PostgreSQL.
type Config struct {
	// URLFile holds the connection string (a mounted Secret key); when
	// empty it comes from $WEBMON_DATABASE_URL.
	URLFile string
}

// AddFlags registers the PostgreSQL flags on fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.URLFile, "database-url-file", c.URLFile, "file holding the PostgreSQL connection string (default: $"+URLEnv+")")
}

// URL reads the connection string.
func (c *Config) URL() (string, error) {
	if c.URLFile != "" {
		b, err := os.ReadFile(c.URLFile)
		if err != nil {
			return "", fmt.Errorf("database URL file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if u := os.Getenv(URLEnv); u != "" {
		return u, nil
	}
	return "", errors.New("database URL: none given ($" + URLEnv + " or --database-url-file)")
}

// Pool connects to PostgreSQL with connections set up for Write
// (see Configure); the schema must be migrated first.
func (c *Config) Pool(ctx context.Context, forWrites bool) (*pgxpool.Pool, error) {
	u, err := c.URL()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, errors.New("database URL: not a valid PostgreSQL connection string")
	}
	if forWrites {
		Configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reaching PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}
