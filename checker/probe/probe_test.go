package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

var opts = Options{BodyLimit: 1 << 20, UserAgent: "webmon/test"}

func get(url string) Request {
	return Request{Method: http.MethodGet, URL: url, Timeout: 2 * time.Second, FollowRedirects: true, MaxRedirects: 5}
}

func TestHealthyTarget(t *testing.T) {
	var gotUA string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUA = r.Header.Get("User-Agent")
		_, _ = fmt.Fprint(w, "<html>ok</html>")
	}))
	defer srv.Close()
	resp := Do(t.Context(), get(srv.URL), opts)
	if resp.Failed() || resp.StatusCode != 200 || string(resp.Body) != "<html>ok</html>" || gotUA != "webmon/test" {
		t.Fatalf("got %d %q (%s: %v), UA %q", resp.StatusCode, resp.Body, resp.ErrorClass, resp.Err, gotUA)
	}
	if resp.Timings.Connect <= 0 || resp.Timings.TTFB <= 0 || resp.Timings.Total < resp.Timings.TTFB {
		t.Errorf("timings %+v: want connect and time to first byte measured, total the longest", resp.Timings)
	}
}

// TestFreshConnectionPerCheck: two checks of one server open two
// connections, so that each measures connect (and TLS).
func TestFreshConnectionPerCheck(t *testing.T) {
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns++
		}
	}
	srv.StartTLS()
	defer srv.Close()
	o := opts
	o.RootCAs = x509.NewCertPool()
	o.RootCAs.AddCert(srv.Certificate())
	for range 2 {
		if resp := Do(t.Context(), get(srv.URL), o); resp.Failed() || resp.Timings.TLS <= 0 {
			t.Fatalf("TLS check: %v, TLS handshake %s", resp.Err, resp.Timings.TLS)
		}
	}
	if conns != 2 {
		t.Errorf("2 checks opened %d connections", conns)
	}
}

// TestHostileTargets: each way a target can fail, or try to hurt its
// checker, gives a result with its class and a message that says what
// happened, within the timeout, and leaves no goroutine behind; the huge
// bodies cost the checker its body limit and little more.
func TestHostileTargets(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	withCA := func(_ *testing.T, o *Options) { o.RootCAs = ca.pool }
	bomb := gzipBomb(t, 1<<30)
	httpURL := func(h http.HandlerFunc) func(*testing.T) string {
		return func(t *testing.T) string { return serveHTTP(t, h).URL }
	}
	rawURL := func(scheme string, serve func(net.Conn, <-chan struct{})) func(*testing.T) string {
		return func(t *testing.T) string { return scheme + "://" + serveRaw(t, serve) + "/" }
	}
	tlsURL := func(cert func(*testing.T) *tls.Certificate) func(*testing.T) string {
		return func(t *testing.T) string {
			var c *tls.Certificate
			if cert != nil {
				c = cert(t)
			}
			return serveTLS(t, c, func(http.ResponseWriter, *http.Request) {}).URL
		}
	}
	timeout := func(d time.Duration) func(*Request) { return func(r *Request) { r.Timeout = d } }
	redirects := func(n int) func(*Request) { return func(r *Request) { r.MaxRedirects = n } }

	tests := map[string]struct {
		target  func(t *testing.T) string // starts the target, returns its URL
		req     func(*Request)
		opts    func(*testing.T, *Options)
		class   ErrorClass // none: Up
		message string
		memory  bool
		check   func(t *testing.T, resp *Response)
	}{
		"no answer":              {target: httpURL(hang), req: timeout(time.Second), class: ClassTimeout, message: "within the 1s timeout: the server took the request and sent nothing back"},
		"accepts, never answers": {target: rawURL("http", mute), req: timeout(time.Second), class: ClassTimeout, message: "the server took the request and sent nothing back"},
		"slow drip, 1 byte/s":    {target: httpURL(dripBody), req: timeout(1500 * time.Millisecond), class: ClassTimeout, message: "the body did not arrive in full (2 bytes read)"},
		"headers drip, 1 byte/s": {target: rawURL("http", dripHeaders), req: timeout(time.Second), class: ClassTimeout, message: "the response headers did not arrive in full"},
		"endless headers":        {target: rawURL("http", endlessHeaders(false)), class: ClassHeadersTooLarge, message: "response headers larger than the 65536-byte limit"},
		"endless header line":    {target: rawURL("http", endlessHeaders(true)), class: ClassHeadersTooLarge, message: "65536-byte limit"},
		"redirect loop": {
			target: httpURL(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, r.URL.Path, http.StatusFound) }),
			class:  ClassTooManyRedirects, message: "more than 5 redirects",
		},
		"50 redirects, 10 allowed": {
			target: func(t *testing.T) string { return serveHTTP(t, redirectChain).URL + "/50" }, req: redirects(10),
			class: ClassTooManyRedirects, message: "more than 10 redirects",
		},
		"50 redirects, 50 allowed": {
			target: func(t *testing.T) string { return serveHTTP(t, redirectChain).URL + "/50" }, req: redirects(50),
			check: func(t *testing.T, resp *Response) {
				if resp.Redirects != 50 {
					t.Errorf("followed %d redirects, want 50", resp.Redirects)
				}
			},
		},
		"1 GiB body":            {target: httpURL(hugeBody(false)), class: ClassBodyTooLarge, message: "body larger than the 1048576-byte limit", memory: true},
		"1 GiB body, announced": {target: httpURL(hugeBody(true)), class: ClassBodyTooLarge, message: "1048576-byte limit", memory: true},
		"gzip bomb, 1 MiB to 1 GiB": {
			target: httpURL(gzipped(bomb)), class: ClassBodyTooLarge, message: "1048576-byte limit", memory: true,
			check: func(t *testing.T, resp *Response) {
				if len(resp.Body) != 1<<20 || resp.Body[0] != 0 {
					t.Errorf("body of %d bytes, want the limit's worth of what the bomb expands to", len(resp.Body))
				}
			},
		},
		"reset mid-body":             {target: httpURL(resetMidBody), class: ClassConnectionReset, message: "in the middle of the body ("},
		"closed before any response": {target: rawURL("http", hangUp), class: ClassConnectionReset, message: "before any response"},
		"self-signed TLS":            {target: tlsURL(nil), class: ClassTLS, message: "TLS certificate of example.com is self-signed"},
		"expired TLS": {
			target: tlsURL(func(t *testing.T) *tls.Certificate {
				return ca.leaf(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1")
			}),
			opts: withCA, class: ClassTLS, message: "TLS certificate of 127.0.0.1 expired on " + now.Add(-24*time.Hour).UTC().Format("2006-01-02"),
		},
		"wrong-host TLS": {
			target: tlsURL(func(t *testing.T) *tls.Certificate {
				return ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), "10.9.9.9")
			}),
			opts: withCA, class: ClassTLS, message: "TLS certificate: certificate is valid for 10.9.9.9, not 127.0.0.1",
		},
		"TLS handshake stall": {target: rawURL("https", mute), req: timeout(time.Second), class: ClassTimeout, message: "the TLS handshake with 127.0.0.1:"},
		"connection refused":  {target: func(t *testing.T) string { return "http://" + closedPort(t) + "/" }, class: ClassConnectionRefused},
		"NXDOMAIN": {
			target: func(*testing.T) string { return "http://no-such-host.example.com/" },
			opts:   func(t *testing.T, o *Options) { o.Resolver = serveDNS(t, nxdomain) }, class: ClassDNS, message: "host no-such-host.example.com not found (NXDOMAIN)",
		},
		"DNS timeout": {
			target: func(*testing.T) string { return "http://slow-dns.example.com/" }, req: timeout(time.Second),
			opts:  func(t *testing.T, o *Options) { o.Resolver = serveDNS(t, silent) },
			class: ClassDNS, message: "resolving slow-dns.example.com: no answer from the DNS server within the 1s timeout",
		},
		"no DNS server": {
			target: func(*testing.T) string { return "http://no-such-host.example.invalid/" },
			opts: func(_ *testing.T, o *Options) {
				o.Resolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
					return nil, errors.New("no DNS server here")
				}}
			},
			class: ClassDNS, message: "no-such-host.example.invalid",
		},
		"HTTP/2 only, over TLS": {
			target: func(t *testing.T) string {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.ProtoMajor != 2 {
						w.WriteHeader(http.StatusHTTPVersionNotSupported)
					}
				}))
				srv.EnableHTTP2 = true // and only it: httptest offers h2 alone in ALPN
				srv.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.leaf(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")}}
				srv.StartTLS()
				t.Cleanup(srv.Close)
				return srv.URL
			},
			opts: withCA,
			check: func(t *testing.T, resp *Response) {
				if resp.Proto != "HTTP/2.0" {
					t.Errorf("protocol %s, want HTTP/2.0", resp.Proto)
				}
			},
		},
		"h2c only, Go's server": {
			target: func(t *testing.T) string {
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
				srv.Config.Protocols = &p
				srv.Start()
				t.Cleanup(srv.Close)
				return srv.URL
			},
			class: ClassConnectionReset, message: "a server that speaks only HTTP/2 without TLS, h2c",
		},
		"h2c only, answering in frames": {target: rawURL("http", h2cOnly), class: ClassProtocol, message: "the server answered in HTTP/2 without TLS"},
		"not HTTP":                      {target: rawURL("http", banner), class: ClassProtocol, message: `not an HTTP server: the first bytes it sent were "SSH-2.0-OpenSSH_"`},
		"invalid UTF-8 in the headers and body": {
			target: rawURL("http", answer("HTTP/1.1 200 OK\r\nX-Bad: \xff\xfe caf\xe9\r\nContent-Length: 3\r\n\r\n\xff\xfe\x00")),
			check: func(t *testing.T, resp *Response) {
				if string(resp.Body) != "\xff\xfe\x00" || resp.Header.Get("X-Bad") != "\xff\xfe caf\xe9" {
					t.Errorf("body %q, header %q: want them as sent", resp.Body, resp.Header.Get("X-Bad"))
				}
			},
		},
		"invalid UTF-8 in a broken header": {
			target: rawURL("http", answer("HTTP/1.1 200 OK\r\n\xff\xfe\xfd\r\n\r\n")),
			class:  ClassProtocol, message: `malformed MIME header: missing colon: "\xff\xfe\xfd"`,
		},
		"empty body": {
			target: httpURL(func(http.ResponseWriter, *http.Request) {}),
			check: func(t *testing.T, resp *Response) {
				if len(resp.Body) != 0 || resp.BodyBytes != 0 {
					t.Errorf("body %q of %d bytes, want none", resp.Body, resp.BodyBytes)
				}
			},
		},
		"bad URL": {target: func(*testing.T) string { return "http://[::1/" }, class: ClassRequest},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			// Registered first, so run last: after the target is closed.
			t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
			req := get(tc.target(t))
			if tc.req != nil {
				tc.req(&req)
			}
			o := opts
			if tc.opts != nil {
				tc.opts(t, &o)
			}
			var resp *Response
			start := time.Now()
			peak, allocated := heapDuring(func() { resp = Do(t.Context(), req, o) })
			took := time.Since(start)
			t.Logf("%s in %s, heap peak +%d KiB, %d KiB allocated: %v", resp.ErrorClass, took.Round(time.Millisecond), peak>>10, allocated>>10, resp.Err)

			switch {
			case tc.class == "" && resp.Failed():
				t.Fatalf("%s: %v; want a response", resp.ErrorClass, resp.Err)
			case tc.class == "" && resp.StatusCode != http.StatusOK:
				t.Errorf("status %d, want 200", resp.StatusCode)
			case tc.class != "" && resp.ErrorClass != tc.class:
				t.Fatalf("class %q (%v), want %q", resp.ErrorClass, resp.Err, tc.class)
			case tc.class != "":
				msg := resp.Err.Error()
				if !strings.Contains(msg, tc.message) {
					t.Errorf("message %q, want it to mention %q", msg, tc.message)
				}
				if !utf8.ValidString(msg) || len(msg) > maxMessage+len("…") {
					t.Errorf("message %q: want valid UTF-8 of at most %d bytes", msg, maxMessage)
				}
			}
			if took > req.Timeout+500*time.Millisecond {
				t.Errorf("took %s with a timeout of %s", took, req.Timeout)
			}
			if bound := uint64(o.BodyLimit) + 4<<20; tc.memory && (peak > bound || allocated > bound) {
				t.Errorf("heap grew by %d KiB, %d KiB allocated: want at most the body limit and 4 MiB (%d KiB)", peak>>10, allocated>>10, bound>>10)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
}

// TestRedirectsAndSkipVerify: not following redirects makes the redirect
// the answer, and a Website may skip TLS verification.
func TestRedirectsAndSkipVerify(t *testing.T) {
	srv := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusMovedPermanently) })
	req := get(srv.URL + "/redirected")
	req.FollowRedirects = false
	if resp := Do(t.Context(), req, opts); resp.Failed() || resp.StatusCode != http.StatusMovedPermanently {
		t.Errorf("not following: %d, %v", resp.StatusCode, resp.Err)
	}
	tlsSrv := serveTLS(t, nil, func(http.ResponseWriter, *http.Request) {})
	req = get(tlsSrv.URL + "/ok")
	req.TLSSkipVerify = true
	if resp := Do(t.Context(), req, opts); resp.Failed() || resp.TLS == nil {
		t.Errorf("tlsSkipVerify: %v", resp.Err)
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestBodyBuffers: bodies read into recycled buffers keep to the body
// limit, announced or not, and a released buffer lends nothing of its
// last body to the next check.
func TestBodyBuffers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length
		}
		_, _ = io.WriteString(w, strings.Repeat(r.URL.Query().Get("c"), n))
	}))
	defer srv.Close()
	p := NewProber(Options{BodyLimit: 100, UserAgent: "webmon/test"})
	defer p.Close()
	for _, tc := range []struct {
		query string
		want  string
		over  bool
	}{
		{"n=100&c=a", strings.Repeat("a", 100), false},
		{"n=101&c=a&chunked", "", true},
		{"n=101&c=a", "", true},
		{"n=3&c=b&chunked", "bbb", false},
		{"n=0&c=c", "", false},
		{"n=50000&c=d&chunked", "", true},
		{"n=2&c=e", "ee", false},
	} {
		resp := p.Do(t.Context(), get(srv.URL+"/?"+tc.query))
		switch {
		case tc.over && (resp.ErrorClass != ClassBodyTooLarge || resp.BodyBytes != 101):
			t.Errorf("%s: %s, %d bytes; want body_too_large at 101", tc.query, resp.ErrorClass, resp.BodyBytes)
		case !tc.over && (resp.Failed() || string(resp.Body) != tc.want):
			t.Errorf("%s: %q (%v), want %q", tc.query, resp.Body, resp.Err, tc.want)
		}
		resp.Release()
	}
}
