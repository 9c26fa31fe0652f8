package plugins

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// --- checks ---

// check is a fixture builder for one check of a URL: the probe runs it
// against a test server, and input() hands the response to a plugin.
type check struct {
	t      *testing.T
	url    string
	config map[string]string
	req    probe.Request
	opts   probe.Options
}

func newCheck(t *testing.T, url string) *check {
	t.Helper()
	return &check{
		t:    t,
		url:  url,
		req:  probe.Request{Method: http.MethodGet, URL: url, Timeout: 5 * time.Second, FollowRedirects: true, MaxRedirects: 5},
		opts: probe.Options{BodyLimit: 1 << 20, UserAgent: "webmon/test"},
	}
}

func (c *check) Config(kv ...string) *check {
	c.config = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		c.config[kv[i]] = kv[i+1]
	}
	return c
}

func (c *check) SkipVerify() *check            { c.req.TLSSkipVerify = true; return c }
func (c *check) Roots(p *x509.CertPool) *check { c.opts.RootCAs = p; return c }
func (c *check) Resolver(r *net.Resolver) *check {
	c.opts.Resolver = r
	return c
}
func (c *check) BodyLimit(n int64) *check { c.opts.BodyLimit = n; return c }

// input probes the URL and returns what a plugin gets.
func (c *check) input() *Input {
	c.t.Helper()
	resp := probe.Do(c.t.Context(), c.req, c.opts)
	return &Input{
		Task:     &task.Task{URL: c.url, ScheduledAt: time.Now()},
		Config:   c.config,
		Response: resp,
	}
}

// serve starts a plain HTTP target that answers body with contentType.
func serve(t *testing.T, contentType, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// --- certificates ---

// issuer signs certificates: a root or an intermediate authority.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type certSpec struct {
	cn        string
	dnsNames  []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
}

var serial atomic.Int64

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func certTemplate(s certSpec) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: s.cn},
		DNSNames:     s.dnsNames,
		IPAddresses:  s.ips,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	return tmpl
}

// newRoot makes a self-signed authority valid around now.
func newRoot(t *testing.T, now time.Time) *issuer {
	t.Helper()
	key := newKey(t)
	tmpl := certTemplate(certSpec{cn: "webmon test root", notBefore: now.Add(-time.Hour), notAfter: now.Add(10 * 365 * 24 * time.Hour), isCA: true})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{cert: cert, key: key}
}

// sign issues a certificate for s, returning it and its key.
func (is *issuer) sign(t *testing.T, s certSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, certTemplate(s), is.cert, key.Public(), is.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// selfSigned makes a leaf signed by its own key.
func selfSigned(t *testing.T, s certSpec) tls.Certificate {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, certTemplate(s), certTemplate(s), key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// chain is what a server presents: a leaf, its key, and intermediates.
func chain(leaf *x509.Certificate, key crypto.Signer, intermediates ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}
	for _, i := range intermediates {
		c.Certificate = append(c.Certificate, i.Raw)
	}
	return c
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// serveTLS starts an HTTPS target presenting cert.
func serveTLS(t *testing.T, cert tls.Certificate) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<html><body>hello</body></html>"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// --- DNS ---

// dnsServer is a resolver on 127.0.0.1 over UDP that answers the A
// records of its zone, NOERROR without records for other types of a name
// it has, and NXDOMAIN for any other name; or, when silent, nothing.
type dnsServer struct {
	addr    string
	queries atomic.Int64
}

func startDNS(t *testing.T, zone map[string]string, silent bool) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s := &dnsServer{addr: conn.LocalAddr().String()}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			s.queries.Add(1)
			if silent {
				continue
			}
			if answer, ok := answerDNS(buf[:n], zone); ok {
				_, _ = conn.WriteTo(answer, from)
			}
		}
	}()
	return s
}

func answerDNS(query []byte, zone map[string]string) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	ip, known := zone[name]
	rcode := dnsmessage.RCodeSuccess
	if !known {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode,
	})
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	if known && q.Type == dnsmessage.TypeA {
		a := netip.MustParseAddr(ip).As4()
		if b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a}) != nil {
			return nil, false
		}
	}
	msg, err := b.Finish()
	return msg, err == nil
}

// resolverAt is a resolver that asks only addr.
func resolverAt(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// --- clock ---

// fakeClock is a clock the test moves.
type fakeClock struct{ now atomic.Pointer[time.Time] }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	return c
}

func (c *fakeClock) Now() time.Time       { return *c.now.Load() }
func (c *fakeClock) Set(t time.Time)      { c.now.Store(&t) }
func (c *fakeClock) Step(d time.Duration) { c.Set(c.Now().Add(d)) }
