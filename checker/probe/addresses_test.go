package probe

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAddressPolicy(t *testing.T) {
	var (
		byDefault = AddressPolicy{}
		private   = AddressPolicy{DenyPrivate: true}
		// NodeLocal DNSCache listens on a link-local address.
		nodeLocal = AddressPolicy{DenyPrivate: true, Allow: []netip.Prefix{netip.MustParsePrefix("169.254.20.10/32"), netip.MustParsePrefix("10.1.0.0/16")}}
	)
	tests := map[string]struct {
		policy AddressPolicy
		addr   string
		// want is the denied range, or none.
		want string
	}{
		"metadata":                    {policy: byDefault, addr: "169.254.169.254", want: "169.254.169.254/32"},
		"metadata, IPv4-mapped":       {policy: byDefault, addr: "::ffff:169.254.169.254", want: "169.254.169.254/32"},
		"metadata, NAT64":             {policy: byDefault, addr: "64:ff9b::a9fe:a9fe", want: "169.254.169.254/32"},
		"metadata, AWS IPv6":          {policy: byDefault, addr: "fd00:ec2::254", want: "fd00:ec2::254/128"},
		"metadata, Alibaba":           {policy: byDefault, addr: "100.100.100.200", want: "100.100.100.200/32"},
		"link-local":                  {policy: byDefault, addr: "169.254.1.1", want: "169.254.0.0/16"},
		"link-local IPv6":             {policy: byDefault, addr: "fe80::1", want: "fe80::/10"},
		"link-local IPv6, zoned":      {policy: byDefault, addr: "fe80::1%eth0", want: "fe80::/10"},
		"loopback by default":         {policy: byDefault, addr: "127.0.0.1"},
		"RFC 1918 by default":         {policy: byDefault, addr: "10.0.0.1"},
		"public":                      {policy: private, addr: "93.184.215.14"},
		"public IPv6":                 {policy: private, addr: "2606:4700::6812:1"},
		"loopback":                    {policy: private, addr: "127.0.0.1", want: "127.0.0.0/8"},
		"loopback, IPv4-mapped":       {policy: private, addr: "::ffff:127.0.0.1", want: "127.0.0.0/8"},
		"loopback IPv6":               {policy: private, addr: "::1", want: "::1/128"},
		"unspecified":                 {policy: private, addr: "0.0.0.0", want: "0.0.0.0/8"},
		"unspecified IPv6":            {policy: private, addr: "::", want: "::/128"},
		"10/8":                        {policy: private, addr: "10.200.3.4", want: "10.0.0.0/8"},
		"10/8, IPv4-mapped":           {policy: private, addr: "::ffff:10.200.3.4", want: "10.0.0.0/8"},
		"172.16/12":                   {policy: private, addr: "172.31.255.255", want: "172.16.0.0/12"},
		"172.32 is public":            {policy: private, addr: "172.32.0.1"},
		"192.168/16":                  {policy: private, addr: "192.168.1.1", want: "192.168.0.0/16"},
		"CGNAT":                       {policy: private, addr: "100.64.0.1", want: "100.64.0.0/10"},
		"unique-local":                {policy: private, addr: "fd12:3456::1", want: "fc00::/7"},
		"private, NAT64":              {policy: private, addr: "64:ff9b::a00:1", want: "10.0.0.0/8"},
		"metadata, with the option":   {policy: private, addr: "169.254.169.254", want: "169.254.169.254/32"},
		"allowed link-local":          {policy: nodeLocal, addr: "169.254.20.10"},
		"allowed private":             {policy: nodeLocal, addr: "10.1.2.3"},
		"metadata, beside an allowed": {policy: nodeLocal, addr: "169.254.169.254", want: "169.254.169.254/32"},
		"private, beside an allowed":  {policy: nodeLocal, addr: "10.2.0.1", want: "10.0.0.0/8"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addr := netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 80)
			// The dialer's hook, as it is called: after the socket is
			// made, before it connects.
			err := tc.policy.control(t.Context(), "tcp", addr.String(), nil)
			var blocked *BlockedError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("blocked: %v", err)
			case tc.want == "":
			case !errors.As(err, &blocked):
				t.Fatalf("got %v, want it blocked as in %s", err, tc.want)
			case blocked.Range.String() != tc.want:
				t.Errorf("blocked as in %s, want %s: %v", blocked.Range, tc.want, err)
			}
		})
	}
}

// TestBlockedConnections: a check never connects to a denied address,
// whether the URL names it, a redirect leads there, or a name resolves to
// it; the result is Down as blocked, naming the address and why.
func TestBlockedConnections(t *testing.T) {
	local := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
		}
	})
	port := netip.MustParseAddrPort(strings.TrimPrefix(local.URL, "http://")).Port()
	metadata := netip.MustParseAddr("169.254.169.254")
	loopback := netip.MustParseAddr("127.0.0.1")
	tests := map[string]struct {
		url     string
		opts    func(*testing.T, *Options)
		message string // none: Up
	}{
		"metadata":                {url: "http://169.254.169.254/latest/meta-data/", message: "connection to 169.254.169.254:80 blocked: 169.254.169.254 is a cloud metadata address; checks never connect there"},
		"metadata over TLS":       {url: "https://169.254.169.254/", message: "connection to 169.254.169.254:443 blocked"},
		"link-local":              {url: "http://169.254.10.10:8080/", message: "169.254.10.10 is link-local, where cloud metadata services answer (169.254.0.0/16)"},
		"IPv4-mapped metadata":    {url: "http://[::ffff:169.254.169.254]/", message: "connection to 169.254.169.254:80 blocked"},
		"redirect to metadata":    {url: local.URL + "/?to=http://169.254.169.254/latest/meta-data/iam/", message: "connection to 169.254.169.254:80 blocked"},
		"redirect to mapped form": {url: local.URL + "/?to=http://[::ffff:a9fe:a9fe]/", message: "169.254.169.254 is a cloud metadata address"},
		"loopback, by default":    {url: local.URL + "/"},
		"redirect to loopback":    {url: local.URL + "/?to=/", opts: denyPrivate, message: "127.0.0.1 is loopback (127.0.0.0/8); this checker denies private networks"},
		"loopback, allowed": {url: local.URL + "/", opts: func(t *testing.T, o *Options) {
			denyPrivate(t, o)
			o.Addresses.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}},
		"name resolving to metadata": {
			url:     "http://metadata.example.com/computeMetadata/v1/",
			opts:    func(t *testing.T, o *Options) { o.Resolver = serveDNS(t, aRecord, metadata) },
			message: "connection to 169.254.169.254:80 blocked",
		},
		"name resolving to loopback, denied": {
			url:     "http://internal.example.com:" + itoa(port) + "/",
			opts:    func(t *testing.T, o *Options) { denyPrivate(t, o); o.Resolver = serveDNS(t, aRecord, loopback) },
			message: "127.0.0.1 is loopback",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := opts
			if tc.opts != nil {
				tc.opts(t, &o)
			}
			start := time.Now()
			resp := Do(t.Context(), get(tc.url), o)
			switch {
			case tc.message == "" && resp.Failed():
				t.Fatalf("%s: %v; want it checked", resp.ErrorClass, resp.Err)
			case tc.message == "":
			case resp.ErrorClass != ClassBlocked:
				t.Fatalf("class %q (%v), want blocked", resp.ErrorClass, resp.Err)
			case !strings.Contains(resp.Err.Error(), tc.message):
				t.Errorf("message %q, want it to mention %q", resp.Err, tc.message)
			}
			// Refused by the dialer's hook, before connecting: at once.
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("took %s", took)
			}
		})
	}
}

// TestDNSRebinding: a name that resolves to an allowed address, then to a
// denied one, is checked on the first lookup and blocked on the second:
// the policy judges the address connected to, not the one a past lookup
// gave.
func TestDNSRebinding(t *testing.T) {
	local := serveHTTP(t, func(http.ResponseWriter, *http.Request) {})
	port := netip.MustParseAddrPort(strings.TrimPrefix(local.URL, "http://")).Port()
	o := opts
	o.Resolver = serveDNS(t, aRecord, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("169.254.169.254"))
	p := NewProber(o)
	defer p.Close()
	req := get("http://rebind.example.com:" + itoa(port) + "/")
	if resp := p.Do(t.Context(), req); resp.Failed() {
		t.Fatalf("first check, resolving to 127.0.0.1: %s: %v", resp.ErrorClass, resp.Err)
	}
	if resp := p.Do(t.Context(), req); resp.ErrorClass != ClassBlocked {
		t.Errorf("second check, resolving to 169.254.169.254: %s (%v), want blocked", resp.ErrorClass, resp.Err)
	}
}

func denyPrivate(_ *testing.T, o *Options) { o.Addresses.DenyPrivate = true }

func itoa(port uint16) string { return strconv.Itoa(int(port)) }
