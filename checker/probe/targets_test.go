package probe

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"
)

// TestMain fails the package's tests on any goroutine still running at
// the end: a check must leave nothing behind, whatever its target did.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLog keeps the test servers' complaints about hostile clients, and
// the clients' about them, out of the test output.
var quietLog = log.New(io.Discard, "", 0)

// serveHTTP starts a cleartext target, closed when the test ends.
func serveHTTP(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// serveTLS starts an HTTPS target presenting cert (httptest's own, which
// nobody trusts, when nil).
func serveTLS(t *testing.T, cert *tls.Certificate, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	srv.Config.ErrorLog = quietLog // handshakes the client refuses are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// serveRaw starts a TCP target for what is not HTTP enough for httptest:
// serve runs on each connection, until done is closed when the test ends;
// the connections are closed then, and waited for.
func serveRaw(t *testing.T, serve func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serve(c, done) })
		}
	})
	t.Cleanup(func() {
		close(done)
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// readRequest reads what the client sends until the end of its headers.
func readRequest(c net.Conn) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 1024)
	for !bytes.Contains(buf, []byte("\r\n\r\n")) && len(buf) < 64<<10 {
		n, err := c.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
	}
}

// sleep waits d, or less when the test ends.
func sleep(d time.Duration, done <-chan struct{}) bool {
	select {
	case <-time.After(d):
		return true
	case <-done:
		return false
	}
}

func ended(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// gzipBomb is a small gzip body that expands to size bytes of zeros: one
// member of a MiB, repeated (gzip readers read every member).
func gzipBomb(t *testing.T, size int) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if _, err := zw.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = zw.Close()
	return bytes.Repeat(member.Bytes(), size>>20)
}

// --- certificates ---

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webmon test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf is a server certificate for ips, valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time, ips ...string) *tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "target"},
		NotBefore: notBefore, NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// --- DNS ---

// dnsAnswer is how a test DNS server answers every query.
type dnsAnswer int

const (
	nxdomain dnsAnswer = iota // the name does not exist
	silent                    // nothing, ever
	aRecord                   // an A record: the address given
)

// serveDNS starts a DNS server on 127.0.0.1 over UDP and returns a
// resolver that asks only it. A records take turns through addrs, one
// per query, as a name being rebound does.
func serveDNS(t *testing.T, answer dnsAnswer, addrs ...netip.Addr) *net.Resolver {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		queries int
	)
	t.Cleanup(func() { _ = conn.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil || answer == silent {
				continue
			}
			if msg, ok := dnsReply(buf[:n], answer, addrs, &queries); ok {
				_, _ = conn.WriteTo(msg, from)
			}
		}
	})
	addr := conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func dnsReply(query []byte, answer dnsAnswer, addrs []netip.Addr, queries *int) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	rcode := dnsmessage.RCodeSuccess
	if answer == nxdomain {
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true, RCode: rcode})
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	if answer == aRecord && q.Type == dnsmessage.TypeA {
		a := addrs[*queries%len(addrs)]
		*queries++
		if b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a.As4()}) != nil {
			return nil, false
		}
	}
	msg, err := b.Finish()
	return msg, err == nil
}

// --- memory ---

// heapDuring runs f while sampling the heap: the peak of HeapInuse above
// where it started, and the bytes allocated meanwhile.
func heapDuring(f func()) (peak, allocated uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop, high := make(chan struct{}), make(chan uint64)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		top := before.HeapInuse
		for {
			select {
			case <-stop:
				high <- top
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				top = max(top, m.HeapInuse)
			}
		}
	}()
	f()
	close(stop)
	top := <-high
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return max(top, after.HeapInuse) - before.HeapInuse, after.TotalAlloc - before.TotalAlloc
}

// --- hostile targets ---

// hang answers nothing until the client gives up.
func hang(_ http.ResponseWriter, r *http.Request) {
	select {
	case <-time.After(10 * time.Second):
	case <-r.Context().Done():
	}
}

// dripBody sends its body one byte a second.
func dripBody(w http.ResponseWriter, r *http.Request) {
	for r.Context().Err() == nil {
		_, _ = w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	}
}

// redirectChain redirects /n to /n-1, and answers /0.
func redirectChain(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
	if n > 0 {
		http.Redirect(w, r, "/"+strconv.Itoa(n-1), http.StatusFound)
	}
}

// hugeBody sends 1 GiB, announced in Content-Length or not.
func hugeBody(announce bool) http.HandlerFunc {
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	return func(w http.ResponseWriter, r *http.Request) {
		if announce {
			w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		}
		for i := 0; i < 1<<14 && r.Context().Err() == nil; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

// gzipped sends body as it is, declared gzip.
func gzipped(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(body)
	}
}

// resetMidBody announces 1000 bytes, sends 7 and resets the connection.
func resetMidBody(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", "1000")
	_, _ = w.Write([]byte("partial"))
	conn, _, _ := w.(http.Hijacker).Hijack()
	_ = conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
	_ = conn.Close()
}

// mute reads whatever comes and never answers: not even a TLS ServerHello.
func mute(c net.Conn, _ <-chan struct{}) { _, _ = io.Copy(io.Discard, c) }

// hangUp closes the connection as soon as the request is in.
func hangUp(c net.Conn, _ <-chan struct{}) {
	readRequest(c)
	_ = c.Close()
}

// dripHeaders sends a header one byte a second.
func dripHeaders(c net.Conn, done <-chan struct{}) {
	readRequest(c)
	if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Drip: "); err != nil {
		return
	}
	for {
		if _, err := io.WriteString(c, "a"); err != nil || !sleep(time.Second, done) {
			return
		}
	}
}

// endlessHeaders sends header lines without end; one line without end
// when oneLine.
func endlessHeaders(oneLine bool) func(net.Conn, <-chan struct{}) {
	line := "X-Endless: " + strings.Repeat("a", 1000) + "\r\n"
	if oneLine {
		line = strings.Repeat("a", 1000)
	}
	return func(c net.Conn, done <-chan struct{}) {
		readRequest(c)
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Start: "); err != nil {
			return
		}
		for !ended(done) {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	}
}

// h2cOnly answers an HTTP/1.1 request as a server that speaks only h2c
// may: its SETTINGS, then a GOAWAY for a protocol error.
func h2cOnly(c net.Conn, _ <-chan struct{}) {
	readRequest(c)
	settings := []byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}
	goaway := []byte{0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	_, _ = c.Write(append(settings, goaway...))
	_ = c.Close()
}

// answer sends msg to any request, then closes.
func answer(msg string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, _ <-chan struct{}) {
		readRequest(c)
		_, _ = io.WriteString(c, msg)
		_ = c.Close()
	}
}

// banner greets every connection as an SSH server does, then waits.
func banner(c net.Conn, _ <-chan struct{}) {
	_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
	_, _ = io.Copy(io.Discard, c)
}
