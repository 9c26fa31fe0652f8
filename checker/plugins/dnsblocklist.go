package plugins

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/lru"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// DefaultBlocklistResolver is the filtering resolver dns-blocklist asks
// when neither the checker nor the Website names one: Quad9, which answers
// NXDOMAIN for domains on its threat lists.
const DefaultBlocklistResolver = "9.9.9.9:53"

// How long a verdict is reused for a (resolver, host), and how many are
// kept: the checks of thousands of Websites share a few hosts and one
// resolver, which must not be asked on every check. A resolver that did
// not answer is asked again sooner.
const (
	blocklistCacheSize  = 10000
	blocklistTTL        = 5 * time.Minute
	blocklistFailureTTL = time.Minute
	maxBlocklistTimeout = 10 * time.Second
)

// dnsBlocklist asks a filtering resolver for the URL's host and, when it
// says the name does not exist while the normal resolver finds it, reports
// the host as blocked.
//
// Names a public filtering resolver cannot know (single-label names,
// .local, .internal and the like) get no verdict: it would call every
// cluster-internal service blocked. A host that neither resolver finds is
// OK here: the check itself fails on DNS, which is not a blocklist matter,
// and a stale "blocked" must not stand.
type dnsBlocklist struct {
	defaultResolver string
	normal          *net.Resolver
	now             func() time.Time

	cache   *lru.Cache // "resolver host" -> blocklistVerdict
	flights singleflight.Group
}

type blocklistVerdict struct {
	result  Result
	ok      bool
	expires time.Time
}

type dnsBlocklistConfig struct {
	resolver string
	timeout  time.Duration
}

func newDNSBlocklist(opts Options) Plugin {
	p := &dnsBlocklist{
		defaultResolver: opts.BlocklistResolver,
		normal:          opts.Resolver,
		now:             clockOf(opts),
		cache:           lru.New(blocklistCacheSize),
	}
	if p.defaultResolver == "" {
		p.defaultResolver = DefaultBlocklistResolver
	}
	if p.normal == nil {
		p.normal = net.DefaultResolver
	}
	return p
}

func (*dnsBlocklist) Name() string { return monitoringv1alpha1.PluginDNSBlocklist }

func (p *dnsBlocklist) Validate(config map[string]string) error {
	_, err := p.parse(config)
	return err
}

func (p *dnsBlocklist) parse(config map[string]string) (dnsBlocklistConfig, error) {
	c := dnsBlocklistConfig{resolver: p.defaultResolver, timeout: 2 * time.Second}
	if err := checkKeys(config, "resolver", "timeout"); err != nil {
		return c, err
	}
	if v, ok := config["resolver"]; ok {
		ap, err := netip.ParseAddrPort(v)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return c, fmt.Errorf("resolver %q: want an IP address and port, such as 9.9.9.9:53 or [2620:fe::fe]:53", truncate(v, 64))
		}
		c.resolver = ap.String()
	}
	if v, ok := config["timeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxBlocklistTimeout {
			return c, fmt.Errorf("timeout %q: want a duration above 0 and at most 10s, such as 2s", truncate(v, 64))
		}
		c.timeout = d
	}
	return c, nil
}

func (p *dnsBlocklist) Run(ctx context.Context, in *Input) (Result, bool) {
	cfg, err := p.parse(in.Config)
	if err != nil {
		return Result{Name: p.Name(), Outcome: Error, Message: "invalid config: " + err.Error()}, true
	}
	host := asciiHost(urlHost(in.Task))
	if !publicName(host) {
		return Result{}, false
	}
	key := cfg.resolver + " " + host
	if v, ok := p.cache.Get(key); ok {
		if v := v.(blocklistVerdict); p.now().Before(v.expires) {
			return v.result, v.ok
		}
	}
	// One lookup per key at a time, on a context of its own so that one
	// check giving up does not fail the others waiting for the answer.
	ch := p.flights.DoChan(key, func() (any, error) {
		v := p.lookup(context.WithoutCancel(ctx), cfg, host)
		p.cache.Add(key, v)
		return v, nil
	})
	select {
	case res := <-ch:
		v := res.Val.(blocklistVerdict)
		return v.result, v.ok
	case <-ctx.Done():
		return Result{}, false
	}
}

// lookup asks the filtering resolver, and the normal one only when the
// filtering one says the name does not exist.
func (p *dnsBlocklist) lookup(ctx context.Context, cfg dnsBlocklistConfig, host string) blocklistVerdict {
	filtering := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer // UDP, or TCP when the answer was truncated
			return d.DialContext(ctx, network, cfg.resolver)
		},
	}
	// The trailing dot keeps the search domains of resolv.conf out: the
	// filtering resolver is asked for the host itself, and only once.
	filterErr := lookupWithin(ctx, filtering, host+".", cfg.timeout)
	v := blocklistVerdict{result: Result{Name: p.Name(), Outcome: OK}, ok: true, expires: p.now().Add(blocklistTTL)}
	switch {
	case filterErr == nil:
		v.result.Message = fmt.Sprintf("%s is not blocked by the filtering resolver %s", host, cfg.resolver)
		return v
	case !isNotFound(filterErr):
		v.result.Outcome = Warning
		v.result.Message = fmt.Sprintf("cannot tell whether %s is blocked: the filtering resolver %s %s", host, cfg.resolver, failure(filterErr, cfg.timeout))
		v.expires = p.now().Add(blocklistFailureTTL)
		return v
	}
	switch normalErr := lookupWithin(ctx, p.normal, host, cfg.timeout); {
	case normalErr == nil:
		v.result.Outcome = Error
		v.result.Message = fmt.Sprintf("%s is blocked by the filtering resolver %s (NXDOMAIN): listed as malicious", host, cfg.resolver)
	case isNotFound(normalErr):
		v.result.Message = fmt.Sprintf("%s does not exist (NXDOMAIN from both the filtering and the normal resolver): nothing to block", host)
	default:
		// The normal resolver failing fails the check itself; there is
		// nothing to compare with.
		v.result, v.ok = Result{}, false
		v.expires = p.now().Add(blocklistFailureTTL)
	}
	return v
}

// asciiHost is host in lower case, without a trailing dot, and an
// internationalised name as the probe dials it; empty when it is not a
// valid name.
func asciiHost(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.IndexFunc(host, func(r rune) bool { return r >= utf8.RuneSelf }) < 0 {
		return host
	}
	ascii, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return ""
	}
	return ascii
}

func lookupWithin(ctx context.Context, r *net.Resolver, host string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := r.LookupHost(ctx, host)
	return err
}

func isNotFound(err error) bool {
	dnsErr, ok := errors.AsType[*net.DNSError](err)
	return ok && dnsErr.IsNotFound
}

// failure says how a resolver failed, without Go's plumbing.
func failure(err error, timeout time.Duration) string {
	dnsErr, ok := errors.AsType[*net.DNSError](err)
	switch {
	case !ok:
		return "failed"
	case dnsErr.IsTimeout || errors.Is(err, context.DeadlineExceeded):
		return "did not answer within " + timeout.String()
	case strings.Contains(dnsErr.Err, "connection refused"):
		return "refused the connection"
	case strings.Contains(dnsErr.Err, "server misbehaving"):
		return "answered with a server failure"
	}
	return "failed (" + truncate(dnsErr.Err, 80) + ")"
}

// internalSuffixes are names only a local or cluster resolver knows.
var internalSuffixes = []string{"localhost", "local", "internal", "home.arpa", "lan", "svc", "test", "invalid"}

// publicName reports whether host is a name a public filtering resolver
// could know: not an IP address, not a single label, not a special-use or
// cluster-internal domain, and a valid DNS name.
func publicName(host string) bool {
	if host == "" || len(host) > 253 || !strings.Contains(host, ".") {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	for _, s := range internalSuffixes {
		if host == s || strings.HasSuffix(host, "."+s) {
			return false
		}
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || strings.IndexFunc(label, notHostChar) >= 0 {
			return false
		}
	}
	return true
}

func notHostChar(r rune) bool {
	return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_'
}
