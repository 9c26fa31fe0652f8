// Package probe performs one HTTP check and says what happened: status,
// phase timings, the body up to a limit, the TLS state, or why it failed,
// as an error class and a message a user can act on. It judges nothing:
// expectations and plugins look at its Response.
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
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// ErrorClass names why a check failed, for results, metrics and status.
type ErrorClass string

// The error classes of a failed probe.
const (
	ClassTimeout           ErrorClass = "timeout"
	ClassDNS               ErrorClass = "dns"
	ClassConnectionRefused ErrorClass = "connection_refused"
	ClassConnectionReset   ErrorClass = "connection_reset"
	ClassTLS               ErrorClass = "tls"
	ClassTooManyRedirects  ErrorClass = "too_many_redirects"
	ClassBodyTooLarge      ErrorClass = "body_too_large"
	ClassHeadersTooLarge   ErrorClass = "headers_too_large"
	// ClassBlocked is a connection the AddressPolicy refused.
	ClassBlocked ErrorClass = "blocked"
	// ClassProtocol is an answer that is not HTTP webmon speaks.
	ClassProtocol ErrorClass = "protocol"
	ClassRequest  ErrorClass = "request"
	ClassOther    ErrorClass = "other"
)

// maxHeaderBytes bounds a response's headers: a server that sends them
// without end fails as headers_too_large.
const maxHeaderBytes = 64 << 10

// Request is one check to make.
type Request struct {
	Method string
	URL    string
	Header http.Header
	// Host, when set, is sent as the Host header (a virtual host other
	// than the URL's).
	Host    string
	Body    string
	Timeout time.Duration
	// FollowRedirects and MaxRedirects bound redirects; not following
	// means the first response is the answer.
	FollowRedirects bool
	MaxRedirects    int
	TLSSkipVerify   bool
}

// Options are the checker's settings for every probe.
type Options struct {
	// BodyLimit is the most of a body read; a longer body fails the check
	// as body_too_large.
	BodyLimit int64
	UserAgent string
	// Resolver resolves host names; nil is the system's.
	Resolver *net.Resolver
	// RootCAs verifies servers; nil is the system's roots.
	RootCAs *x509.CertPool
	// ReuseConnections keeps connections open between checks of a host.
	// By default every check opens its own connection, so that DNS,
	// connect and TLS are measured every time, as a first visitor sees
	// them; reusing them is cheaper for checker and target, and measures
	// what a returning visitor sees.
	ReuseConnections bool
	// Addresses are where checks may connect; the zero value keeps them
	// away from cloud metadata services only.
	Addresses AddressPolicy
}

// Timings are how long each phase took; zero when it did not happen (a
// reused connection, or a failure before it).
type Timings struct {
	DNS, Connect, TLS, TTFB, Total time.Duration
}

// Response is what a probe saw.
type Response struct {
	StatusCode int
	// Proto is the protocol of the response, such as "HTTP/2.0".
	Proto  string
	Header http.Header
	// Body is the body, up to the limit.
	Body []byte
	// BodyBytes is the length of Body, or the limit plus one when the body
	// was longer.
	BodyBytes int
	TLS       *tls.ConnectionState
	Timings   Timings
	// Redirects is how many redirects were followed.
	Redirects int
	// buf is the pooled buffer Body was read into, for Release.
	buf *[]byte

	// ErrorClass and Err are set when no full response arrived. Err's
	// message is valid UTF-8 and bounded, whatever the server sent.
	ErrorClass ErrorClass
	Err        error
}

// Failed reports whether the probe got no full response.
func (r *Response) Failed() bool { return r.Err != nil }

// Prober makes checks. Its connections are set up by Options; it is safe
// for concurrent use, and cheap to share between all checks.
type Prober struct {
	opts Options
	// verifying and skipping are the transports for Websites that verify
	// TLS and for those that set tlsSkipVerify.
	verifying, skipping *http.Transport
}

// NewProber makes a Prober with the checker's options.
func NewProber(opts Options) *Prober {
	return &Prober{opts: opts, verifying: newTransport(opts, false), skipping: newTransport(opts, true)}
}

// Do makes one check with a Prober of its own.
func Do(ctx context.Context, req Request, opts Options) *Response {
	p := NewProber(opts)
	defer p.Close()
	return p.Do(ctx, req)
}

// Close closes the connections kept for reuse.
func (p *Prober) Close() {
	p.verifying.CloseIdleConnections()
	p.skipping.CloseIdleConnections()
}

// Do makes the request. It never returns without a Response: a failure
// is a Response with a class.
func (p *Prober) Do(ctx context.Context, req Request) *Response {
	ctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	resp := &Response{}
	tr := newTracer()
	defer func() { resp.Timings = tr.finish() }()
	tr.deadline, _ = ctx.Deadline()
	ctx = context.WithValue(ctx, checkKey{}, tr)

	transport := p.verifying
	if req.TLSSkipVerify {
		transport = p.skipping
	}
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if !req.FollowRedirects {
				return http.ErrUseLastResponse
			}
			if len(via) > req.MaxRedirects {
				return errTooManyRedirects{limit: req.MaxRedirects}
			}
			resp.Redirects = len(via)
			return nil
		},
	}
	var body io.Reader
	if req.Body != "" {
		body = strings.NewReader(req.Body)
	}
	httpReq, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, tr.hooks(p.opts.ReuseConnections)), req.Method, req.URL, body)
	if err != nil {
		resp.fail(ClassRequest, fmt.Errorf("invalid request: %w", err))
		return resp
	}
	httpReq.Header = req.Header.Clone()
	if httpReq.Header == nil {
		httpReq.Header = http.Header{}
	}
	httpReq.Header.Set("User-Agent", p.opts.UserAgent)
	if req.Host != "" {
		httpReq.Host = req.Host
	}
	failure := func(err error, bodyBytes int) (ErrorClass, error) {
		f := tr.failed()
		f.err, f.timeout, f.scheme, f.bodyBytes = err, req.Timeout, httpReq.URL.Scheme, bodyBytes
		return classify(ctx, f)
	}

	httpResp, err := client.Do(httpReq)
	if err != nil {
		resp.fail(failure(err, 0))
		return resp
	}
	defer func() { _ = httpResp.Body.Close() }()
	resp.StatusCode, resp.Proto, resp.Header, resp.TLS = httpResp.StatusCode, httpResp.Proto, httpResp.Header, httpResp.TLS
	tr.setPhase(phaseBody)
	limit := p.opts.BodyLimit
	resp.buf = bodyBuffers.Get().(*[]byte)
	b, over, err := readBody(httpResp.Body, limit, httpResp.ContentLength, *resp.buf)
	resp.Body = b
	resp.BodyBytes = len(resp.Body)
	switch {
	case over:
		resp.BodyBytes++
		resp.fail(ClassBodyTooLarge, fmt.Errorf("body larger than the %d-byte limit", limit))
	case err != nil:
		resp.fail(failure(err, len(resp.Body)))
	}
	return resp
}

// bodyBuffer is the size of the pooled buffers bodies are read into: most
// pages a monitor checks fit, and a buffer allocated per check (and grown
// from 512 bytes when the length is not announced) was a quarter of the
// checker's allocations.
const bodyBuffer = 16 << 10

var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, bodyBuffer); return &b }}

// Release gives the body's buffer back for another check. Neither the
// Response nor its Body may be used after.
func (r *Response) Release() {
	if r.buf != nil {
		bodyBuffers.Put(r.buf)
	}
	r.buf, r.Body = nil, nil
}

// readBody reads r to its end, or to limit bytes; over reports a longer
// body, told by one byte more that is never kept. It reads into spare when
// the body fits, else into a buffer that starts at the announced length
// (when there is one) and doubles as the body grows, never past limit: a
// huge or endless body costs limit bytes, not one doubling more.
func readBody(r io.Reader, limit, announced int64, spare []byte) (body []byte, over bool, err error) {
	size := max(int64(cap(spare)), 512)
	if announced > 0 {
		size = announced
	}
	var buf []byte
	if size <= int64(cap(spare)) {
		buf = spare[:0:min(int64(cap(spare)), limit)]
	} else {
		buf = make([]byte, 0, max(1, min(size, limit)))
	}
	for {
		if len(buf) == cap(buf) {
			// Full: a byte more says whether the body ends here, before a
			// bigger buffer is paid for.
			var one [1]byte
			n, err := r.Read(one[:])
			if n == 1 {
				if int64(len(buf)) >= limit {
					return buf, true, nil
				}
				grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
				copy(grown, buf)
				buf = append(grown, one[0])
			}
			if err != nil {
				return buf, false, endOfBody(err)
			}
			continue
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, false, endOfBody(err)
		}
	}
}

func endOfBody(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (r *Response) fail(class ErrorClass, err error) {
	r.ErrorClass, r.Err = class, clean(err)
}

// checkKey carries a check's tracer to its dials: the transport dials on
// a context the check's cancellation does not reach (so that another
// request may use the connection), which keeps the check's values.
type checkKey struct{}

func newTransport(opts Options, skipVerify bool) *http.Transport {
	policy := opts.Addresses
	dialer := &net.Dialer{Resolver: abandonable(opts.Resolver), ControlContext: policy.control}
	return &http.Transport{
		DialContext:       boundedDial(dialer),
		DisableKeepAlives: !opts.ReuseConnections,
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            opts.RootCAs,
			InsecureSkipVerify: skipVerify, //nolint:gosec // the Website asks for it (expect.tlsSkipVerify)
		},
		MaxResponseHeaderBytes: maxHeaderBytes,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
}

// boundedDial dials within the check's deadline, and gives the connection
// that deadline: the transport's TLS handshake runs on the dial's context,
// so a server that accepts and never answers the ClientHello would
// otherwise hold a goroutine and a socket for as long as it likes. The
// connection keeps the first bytes the server sends, for a failure to tell
// what the server speaks.
func boundedDial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		tr, ok := ctx.Value(checkKey{}).(*tracer)
		if !ok || tr.deadline.IsZero() {
			return d.DialContext(ctx, network, addr)
		}
		ctx, cancel := context.WithDeadline(ctx, tr.deadline)
		defer cancel()
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := conn.SetDeadline(tr.deadline); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return &sniffConn{Conn: conn, tr: tr}, nil
	}
}

// abandonable is r, or the Go resolver, with each DNS connection closed as
// soon as its lookup is abandoned: a read blocked on a UDP socket does not
// see its context, and would hold a goroutine and a socket until the
// resolver's own timeout (5s by default) after the check gave up.
func abandonable(r *net.Resolver) *net.Resolver {
	out := &net.Resolver{PreferGo: true}
	var d net.Dialer
	dial := d.DialContext
	if r != nil {
		out.StrictErrors = r.StrictErrors
		if r.Dial != nil {
			dial = r.Dial
		}
	}
	out.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = conn.Close() })
		return conn, nil
	}
	return out
}

// sniffConn hands the first bytes read to its check's tracer.
type sniffConn struct {
	net.Conn
	tr   *tracer
	seen int
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.seen < sniffLen && n > 0 {
		c.seen += c.tr.sniff(b[:n])
	}
	return n, err
}

type errTooManyRedirects struct{ limit int }

func (e errTooManyRedirects) Error() string {
	return fmt.Sprintf("more than %d redirects", e.limit)
}
