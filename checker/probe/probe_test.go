package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// TestHostileTargets: each way a target can fail gives a result with its
// class, within the timeout.
func TestHostileTargets(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/drip", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100 && r.Context().Err() == nil; i++ {
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("a", 64<<10))
		for i := 0; i < 1<<14 && r.Context().Err() == nil; i++ { // up to 1 GiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("partial"))
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
		_ = conn.Close()
	})
	mux.HandleFunc("/redirected", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusMovedPermanently) })
	mux.HandleFunc("/ok", func(http.ResponseWriter, *http.Request) {})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux) // its certificate is signed by nobody we trust
	defer tlsSrv.Close()
	closed := closedPort(t)

	// A resolver whose server answers nothing: DNS fails fast and surely.
	deadDNS := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, errors.New("no DNS server here")
	}}

	tests := map[string]struct {
		req     Request
		opts    Options
		class   ErrorClass
		message string
	}{
		"no answer":          {req: get(srv.URL + "/slow"), class: ClassTimeout, message: "within the timeout"},
		"slow drip":          {req: get(srv.URL + "/drip"), class: ClassTimeout},
		"redirect loop":      {req: get(srv.URL + "/loop"), class: ClassTooManyRedirects, message: "more than 5 redirects"},
		"1 GiB body":         {req: get(srv.URL + "/huge"), class: ClassBodyTooLarge, message: "1048576-byte limit"},
		"reset mid-body":     {req: get(srv.URL + "/reset"), class: ClassConnectionReset},
		"untrusted TLS":      {req: get(tlsSrv.URL + "/ok"), class: ClassTLS, message: "certificate"},
		"connection refused": {req: get("http://" + closed + "/"), class: ClassConnectionRefused},
		"DNS failure":        {req: get("http://no-such-host.example.invalid/"), opts: Options{Resolver: deadDNS}, class: ClassDNS, message: "no-such-host.example.invalid"},
		"bad URL":            {req: get("http://[::1/"), class: ClassRequest},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := opts
			if tc.opts.Resolver != nil {
				o.Resolver = tc.opts.Resolver
			}
			start := time.Now()
			resp := Do(t.Context(), tc.req, o)
			if resp.ErrorClass != tc.class || !resp.Failed() {
				t.Fatalf("class %q (%v), want %q", resp.ErrorClass, resp.Err, tc.class)
			}
			if !strings.Contains(resp.Err.Error(), tc.message) {
				t.Errorf("message %q, want it to mention %q", resp.Err, tc.message)
			}
			if took := time.Since(start); took > tc.req.Timeout+time.Second {
				t.Errorf("took %s with a timeout of %s", took, tc.req.Timeout)
			}
		})
	}

	// Not following redirects: the redirect is the answer.
	req := get(srv.URL + "/redirected")
	req.FollowRedirects = false
	if resp := Do(t.Context(), req, opts); resp.Failed() || resp.StatusCode != http.StatusMovedPermanently {
		t.Errorf("not following: %d, %v", resp.StatusCode, resp.Err)
	}
	// The Website may skip verification.
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
