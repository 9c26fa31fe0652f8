package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/webmon-dev/webmon/internal/store"
)

type historyOptions struct {
	db    store.Config
	since time.Duration
	limit int
}

func newHistoryCommand() *cobra.Command {
	o := &historyOptions{since: 24 * time.Hour, limit: 10}
	cmd := &cobra.Command{
		Use:   "history <namespace>/<name>",
		Short: "Print a Website's recent checks and hourly uptime and latency from PostgreSQL",
		Long: `Print what PostgreSQL holds of a Website: each URL's state, its latest
checks (newest first), and per hour its checks, uptime, mean and p95
latency, with the uptime over --since and over the last 30 days.

Hourly figures come from the rollups, which the checkers update every few
seconds; the latest checks are read from the results themselves.`,
		Example: `  webmon history default/shop
  webmon history shop/storefront --since 72h --limit 30`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHistory(cmd.Context(), cmd.OutOrStdout(), o, args[0])
		},
	}
	fs := cmd.Flags()
	o.db.AddFlags(fs)
	fs.DurationVar(&o.since, "since", o.since, "how far back to read")
	fs.IntVar(&o.limit, "limit", o.limit, "latest checks printed per URL")
	return cmd
}

func runHistory(ctx context.Context, out io.Writer, o *historyOptions, website string) error {
	namespace, name, ok := strings.Cut(website, "/")
	if !ok || namespace == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("website %q: want <namespace>/<name>", website)
	}
	if o.since <= 0 {
		return fmt.Errorf("--since %s: want a positive duration", o.since)
	}
	if o.limit < 0 {
		return fmt.Errorf("--limit %d: want 0 or more", o.limit)
	}
	pool, err := o.db.Pool(ctx, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	h, err := store.New(pool).History(ctx, namespace, name, time.Now(), o.since, o.limit)
	if errors.Is(err, store.ErrNoWebsite) {
		return fmt.Errorf("%w (is it checked yet, and are the namespace and name right?)", err)
	}
	if err != nil {
		return err
	}
	return printHistory(out, h, o.since)
}

func printHistory(out io.Writer, h *store.History, since time.Duration) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { _, _ = fmt.Fprintf(w, format, a...) }
	p("Website %s/%s (uid %s)\n\n", h.Namespace, h.Name, h.WebsiteUID)
	p("URL\tSTATE\tSINCE\tUPTIME %s\tP95 %s\tUPTIME 30d\n", shortDuration(since), shortDuration(since))
	for _, u := range h.URLs {
		p("%s\t%s\t%s\t%s\t%s\t%s\n", u.URL, u.State, timestamp(u.Since), uptime(u.Window), latency(u.Window), uptime(u.Month))
	}
	for _, u := range h.URLs {
		p("\nLatest checks of %s\n", u.URL)
		if len(u.Recent) == 0 {
			p("  none in the last %s\n", shortDuration(since))
		} else {
			p("SCHEDULED\tOUTCOME\tSTATUS\tLATENCY\tBYTES\tERROR\n")
			for _, r := range u.Recent {
				status := "-"
				if r.StatusCode != 0 {
					status = fmt.Sprint(r.StatusCode)
				}
				reason := r.ErrorMessage
				if r.ErrorClass != "" {
					reason = r.ErrorClass + ": " + reason
				}
				p("%s\t%s\t%s\t%s\t%d\t%s\n", timestamp(r.ScheduledAt), r.Outcome, status, r.Total.Round(time.Millisecond), r.BodyBytes, oneLine(reason, 100))
			}
		}
		if len(u.Hours) > 0 {
			p("\nHOUR (UTC)\tCHECKS\tUP\tMISSED\tUPTIME\tMEAN\tP95\n")
			for _, r := range u.Hours {
				p("%s\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Hour.UTC().Format("2006-01-02 15:04"), r.Checks, r.Up, r.Missed, uptime(r.Uptime), r.Mean.Round(time.Millisecond), latency(r.Uptime))
			}
		}
	}
	return w.Flush()
}

func uptime(u store.Uptime) string {
	r, ok := u.Ratio()
	if !ok {
		return "-"
	}
	// Never rounded up to 100% while a check failed.
	return fmt.Sprintf("%.2f%%", float64(int64(r*10000))/100)
}

func latency(u store.Uptime) string {
	if u.Checks == 0 {
		return "-"
	}
	return u.P95.Round(time.Millisecond).String()
}

func timestamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}

// shortDuration drops a Duration's zero tail: 24h, 10m, 1h30m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func oneLine(s string, n int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return string(r)
}
