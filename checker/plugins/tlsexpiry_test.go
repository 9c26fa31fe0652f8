package plugins

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const day = 24 * time.Hour

func TestTLSExpiry(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	root := newRoot(t, now)
	interCert, interKey := root.sign(t, certSpec{cn: "webmon test intermediate", notBefore: now.Add(-time.Hour), notAfter: now.Add(365 * day), isCA: true})
	inter := &issuer{cert: interCert, key: interKey}
	dns := startDNS(t, map[string]string{"shop.example.com.": "127.0.0.1"}, false)

	leaf := func(iss *issuer, left time.Duration, names ...string) tls.Certificate {
		if len(names) == 0 {
			names = []string{"shop.example.com"}
		}
		c, k := iss.sign(t, certSpec{cn: names[0], dnsNames: names, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, notBefore: now.Add(-30 * day), notAfter: now.Add(left)})
		return chain(c, k)
	}
	withChain := func(left time.Duration) tls.Certificate {
		c, k := inter.sign(t, certSpec{cn: "shop.example.com", dnsNames: []string{"shop.example.com"}, notBefore: now.Add(-day), notAfter: now.Add(left)})
		return chain(c, k, interCert)
	}
	valid90 := leaf(root, 90*day)
	valid10 := leaf(root, 10*day)
	valid2 := leaf(root, 2*day)
	expired := leaf(root, -5*day)
	wrongHost := leaf(root, 90*day, "other.example.com")
	viaInter := leaf(inter, 90*day)
	notYet, notYetKey := root.sign(t, certSpec{dnsNames: []string{"shop.example.com"}, notBefore: now.Add(2 * day), notAfter: now.Add(90 * day)})
	self := selfSigned(t, certSpec{dnsNames: []string{"shop.example.com"}, notBefore: now.Add(-day), notAfter: now.Add(90 * day)})

	date := func(left time.Duration) string { return now.Add(left).Format(time.DateOnly) }
	tests := map[string]struct {
		cert       tls.Certificate
		host       string // default shop.example.com
		config     []string
		skipVerify bool
		want       Result
	}{
		"90 days left": {
			cert: valid90,
			want: Result{Outcome: OK, Message: "certificate for shop.example.com expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"10 days left is under warnDays": {
			cert: valid10,
			want: Result{Outcome: Warning, Message: "certificate for shop.example.com expires in 10 days (" + date(10*day) + ")", Values: map[string]float64{"daysLeft": 10}},
		},
		"2 days left is under criticalDays": {
			cert: valid2,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com expires in 2 days (" + date(2*day) + ")", Values: map[string]float64{"daysLeft": 2}},
		},
		"warnDays 100 makes 90 days a warning": {
			cert: valid90, config: []string{"warnDays", "100"},
			want: Result{Outcome: Warning, Message: "certificate for shop.example.com expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"criticalDays 0 makes 2 days a warning": {
			cert: valid2, config: []string{"criticalDays", "0"},
			want: Result{Outcome: Warning, Message: "certificate for shop.example.com expires in 2 days (" + date(2*day) + ")", Values: map[string]float64{"daysLeft": 2}},
		},
		"expired, seen with tlsSkipVerify": {
			cert: expired, skipVerify: true,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com expired 5 days ago (" + date(-5*day) + ")", Values: map[string]float64{"daysLeft": -5}},
		},
		"wrong host": {
			cert: wrongHost, skipVerify: true,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com is not trusted: not valid for shop.example.com (valid for other.example.com, 127.0.0.1); it expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"self-signed": {
			cert: self, skipVerify: true,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com is not trusted: signed by an unknown authority; it expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"not yet valid": {
			cert: chain(notYet, notYetKey), skipVerify: true,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com is not trusted: not valid before " + date(2*day) + "; it expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"chain through an intermediate the server sends": {
			cert: withChain(60 * day),
			want: Result{Outcome: OK, Message: "certificate for shop.example.com expires in 60 days (" + date(60*day) + ")", Values: map[string]float64{"daysLeft": 60}},
		},
		"intermediate missing from the chain": {
			cert: viaInter, skipVerify: true,
			want: Result{Outcome: Error, Message: "certificate for shop.example.com is not trusted: signed by an unknown authority; it expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
		"IP address URL": {
			cert: valid90, host: "127.0.0.1",
			want: Result{Outcome: OK, Message: "certificate for 127.0.0.1 expires in 90 days (" + date(90*day) + ")", Values: map[string]float64{"daysLeft": 90}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := serveTLS(t, tc.cert)
			host := tc.host
			if host == "" {
				host = "shop.example.com"
			}
			target := "https://" + net.JoinHostPort(host, strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)) + "/"
			c := newCheck(t, target).Config(tc.config...).Roots(pool(root.cert)).Resolver(resolverAt(dns.addr))
			if tc.skipVerify {
				c.SkipVerify()
			}
			in := c.input()
			p := newTLSExpiry(Options{RootCAs: pool(root.cert), Now: func() time.Time { return now }})
			got, ok := p.Run(t.Context(), in)
			if !ok {
				t.Fatalf("Run gave no verdict; probe: %v", in.Response.Err)
			}
			tc.want.Name = "tls-expiry"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Run (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTLSExpiryNothingToJudge: without a certificate there is no verdict,
// and with one, even a failed check is judged.
func TestTLSExpiryNothingToJudge(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	root := newRoot(t, now)
	c, k := root.sign(t, certSpec{ips: []net.IP{net.IPv4(127, 0, 0, 1)}, notBefore: now.Add(-day), notAfter: now.Add(30 * day)})
	srv := serveTLS(t, chain(c, k))
	p := newTLSExpiry(Options{RootCAs: pool(root.cert), Now: func() time.Time { return now }})

	plain := serve(t, "text/html", "<html></html>")
	if got, ok := p.Run(t.Context(), newCheck(t, plain.URL).input()); ok {
		t.Errorf("http:// URL: got %+v, want no verdict", got)
	}
	// Without the root, the handshake fails: the check reports it.
	in := newCheck(t, srv.URL).input()
	if got, ok := p.Run(t.Context(), in); ok || !in.Response.Failed() {
		t.Errorf("failed handshake (%v): got %+v, want no verdict", in.Response.Err, got)
	}
	// A body over the limit fails the check, after the handshake.
	in = newCheck(t, srv.URL).Roots(pool(root.cert)).BodyLimit(4).input()
	got, ok := p.Run(t.Context(), in)
	if !in.Response.Failed() || !ok || got.Outcome != OK {
		t.Errorf("body too large (%v): got %+v, %v; want an OK verdict on the certificate", in.Response.Err, got, ok)
	}
}

// TestTLSExpiryRedirectToHTTPS: an http:// URL redirected to HTTPS is
// judged on the HTTPS server's certificate, for the host it redirected to.
func TestTLSExpiryRedirectToHTTPS(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	root := newRoot(t, now)
	c, k := root.sign(t, certSpec{dnsNames: []string{"www.example.com"}, notBefore: now.Add(-day), notAfter: now.Add(7 * day)})
	tlsSrv := serveTLS(t, chain(c, k))
	port := tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	plain := httptest.NewServer(http.RedirectHandler(fmt.Sprintf("https://www.example.com:%d/", port), http.StatusFound))
	t.Cleanup(plain.Close)
	dns := startDNS(t, map[string]string{"shop.example.com.": "127.0.0.1", "www.example.com.": "127.0.0.1"}, false)
	u, _ := url.Parse(plain.URL)
	target := "http://shop.example.com:" + u.Port() + "/"

	in := newCheck(t, target).Roots(pool(root.cert)).Resolver(resolverAt(dns.addr)).input()
	got, ok := newTLSExpiry(Options{RootCAs: pool(root.cert), Now: func() time.Time { return now }}).Run(t.Context(), in)
	want := Result{Name: "tls-expiry", Outcome: Warning, Message: "certificate for www.example.com expires in 7 days (" + now.Add(7*day).Format(time.DateOnly) + ")", Values: map[string]float64{"daysLeft": 7}}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("Run (%v): ok %v (-want +got):\n%s", in.Response.Err, ok, diff)
	}
}
