package plugins

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// tlsExpiry reports the days left on the server's certificate and whether
// its chain is valid for the URL's host.
//
// It judges whatever certificate the final response came over: an
// http:// URL that redirects to HTTPS is judged on the HTTPS server's
// certificate. A response without TLS (plain HTTP all the way, or no
// handshake completed) gives no verdict rather than a Warning, because
// plugins apply to every URL of a Website and a plain-HTTP URL, often
// there to check the redirect to HTTPS, must not make it Degraded. A
// handshake that failed verification fails the check itself, with the
// reason, so the plugin has nothing to add.
type tlsExpiry struct {
	roots *x509.CertPool
	now   func() time.Time
}

type tlsExpiryConfig struct {
	warnDays, criticalDays int
}

func newTLSExpiry(opts Options) Plugin {
	return &tlsExpiry{roots: opts.RootCAs, now: clockOf(opts)}
}

func (*tlsExpiry) Name() string { return monitoringv1alpha1.PluginTLSExpiry }

func (*tlsExpiry) Validate(config map[string]string) error {
	_, err := parseTLSExpiry(config)
	return err
}

func parseTLSExpiry(config map[string]string) (tlsExpiryConfig, error) {
	c := tlsExpiryConfig{warnDays: 14, criticalDays: 3}
	if err := checkKeys(config, "warnDays", "criticalDays"); err != nil {
		return c, err
	}
	for _, f := range []struct {
		key string
		dst *int
	}{{"warnDays", &c.warnDays}, {"criticalDays", &c.criticalDays}} {
		key, dst := f.key, f.dst
		v, ok := config[key]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 3650 {
			return c, fmt.Errorf("%s %q: want a whole number of days from 0 to 3650", key, truncate(v, 64))
		}
		*dst = n
	}
	if c.criticalDays > c.warnDays {
		return c, fmt.Errorf("criticalDays %d is more than warnDays %d: want criticalDays at most warnDays (warnDays defaults to 14)", c.criticalDays, c.warnDays)
	}
	return c, nil
}

func (p *tlsExpiry) Run(ctx context.Context, in *Input) (Result, bool) {
	cfg, err := parseTLSExpiry(in.Config)
	if err != nil {
		return Result{Name: p.Name(), Outcome: Error, Message: "invalid config: " + err.Error()}, true
	}
	state := in.Response.TLS
	if state == nil || len(state.PeerCertificates) == 0 || ctx.Err() != nil {
		return Result{}, false
	}
	// The host verified is the one the client asked for in SNI, which is
	// the final one after redirects; an IP address is not sent in SNI, so
	// it comes from the URL.
	host := state.ServerName
	if host == "" {
		host = urlHost(in.Task)
	}
	now := p.now()
	leaf := state.PeerCertificates[0]
	daysLeft := leaf.NotAfter.Sub(now).Hours() / 24
	r := Result{
		Name:    p.Name(),
		Outcome: OK,
		Message: fmt.Sprintf("certificate for %s %s", host, expiresIn(leaf.NotAfter, now)),
		Values:  map[string]float64{"daysLeft": math.Round(daysLeft*100) / 100},
	}
	switch {
	case daysLeft <= 0 || daysLeft < float64(cfg.criticalDays):
		r.Outcome = Error
	case daysLeft < float64(cfg.warnDays):
		r.Outcome = Warning
	}
	if reason := p.verify(state.PeerCertificates, host, now); reason != "" {
		r.Outcome = Error
		r.Message = fmt.Sprintf("certificate for %s is not trusted: %s; it %s", host, reason, expiresIn(leaf.NotAfter, now))
	}
	return r, true
}

// verify checks the chain the server sent, as the handshake would have,
// which it did not when the Website sets tlsSkipVerify. It returns why the
// chain is invalid, or "" when it is valid. An expired leaf is left to the
// expiry verdict.
func (p *tlsExpiry) verify(certs []*x509.Certificate, host string, now time.Time) string {
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         p.roots,
		Intermediates: intermediates,
		DNSName:       host,
		CurrentTime:   now,
	})
	if err == nil {
		return ""
	}
	var (
		authErr    x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &authErr):
		return "signed by an unknown authority"
	case errors.As(err, &hostErr):
		return fmt.Sprintf("not valid for %s (valid for %s)", host, validNames(certs[0]))
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		if now.After(certs[0].NotAfter) {
			return "" // the leaf expired: the expiry verdict says so
		}
		if now.Before(certs[0].NotBefore) {
			return "not valid before " + certs[0].NotBefore.UTC().Format(time.DateOnly)
		}
		return "a certificate of the chain has expired or is not yet valid"
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// validNames lists the names a certificate is valid for, briefly.
func validNames(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	switch {
	case len(names) == 0:
		return "no host name"
	case len(names) > 3:
		return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return strings.Join(names, ", ")
}

// expiresIn says when notAfter is, from now, in days, or hours on the last
// day: "expires in 9 days (2026-12-01)", "expired 2 days ago (…)".
func expiresIn(notAfter, now time.Time) string {
	date := notAfter.UTC().Format(time.DateOnly)
	left := notAfter.Sub(now)
	if left <= 0 {
		return fmt.Sprintf("expired %s ago (%s)", span(-left), date)
	}
	return fmt.Sprintf("expires in %s (%s)", span(left), date)
}

func span(d time.Duration) string {
	days, hours := int(d/(24*time.Hour)), int(d/time.Hour)
	switch {
	case days > 1:
		return fmt.Sprintf("%d days", days)
	case days == 1:
		return "1 day"
	case hours > 1:
		return fmt.Sprintf("%d hours", hours)
	case hours == 1:
		return "1 hour"
	}
	return "less than an hour"
}
