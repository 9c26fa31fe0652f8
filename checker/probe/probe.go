// Package probe performs one HTTP check and says what happened: status,
// phase timings, the body up to a limit, the TLS state, or why it failed,
// as an error class and a message a user can act on. It judges nothing:
// expectations and plugins look at its Response.
package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"syscall"
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
	ClassRequest           ErrorClass = "request"
	ClassOther             ErrorClass = "other"
)

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
}

// Timings are how long each phase took; zero when it did not happen (a
// reused connection, or a failure before it).
type Timings struct {
	DNS, Connect, TLS, TTFB, Total time.Duration
}

// Response is what a probe saw.
type Response struct {
	StatusCode int
	Header     http.Header
	// Body is the body, up to the limit.
	Body      []byte
	BodyBytes int
	TLS       *tls.ConnectionState
	Timings   Timings
	// Redirects is how many redirects were followed.
	Redirects int

	// ErrorClass and Err are set when no full response arrived.
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
	start := time.Now()
	defer func() { resp.Timings.Total = time.Since(start) }()

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
	httpReq, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, resp.trace(start)), req.Method, req.URL, body)
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

	httpResp, err := client.Do(httpReq)
	if err != nil {
		resp.fail(classify(ctx, err))
		return resp
	}
	defer func() { _ = httpResp.Body.Close() }()
	resp.StatusCode, resp.Header, resp.TLS = httpResp.StatusCode, httpResp.Header, httpResp.TLS
	limit := p.opts.BodyLimit
	var buf bytes.Buffer
	if n := httpResp.ContentLength; n > 0 && n <= limit {
		// One allocation for a body of announced length, rather than
		// doubling up to it; +1 for io.Copy's EOF read.
		buf.Grow(int(n) + 1)
	}
	n, err := io.Copy(&buf, io.LimitReader(httpResp.Body, limit+1))
	resp.BodyBytes = int(n)
	switch {
	case n > limit:
		resp.Body = buf.Bytes()[:limit]
		resp.fail(ClassBodyTooLarge, fmt.Errorf("body larger than the %d-byte limit", limit))
	case err != nil:
		resp.Body = buf.Bytes()
		resp.fail(classify(ctx, err))
	default:
		resp.Body = buf.Bytes()
	}
	return resp
}

func (r *Response) fail(class ErrorClass, err error) {
	r.ErrorClass, r.Err = class, err
}

// trace records the phase timings of the (last) connection.
func (r *Response) trace(start time.Time) *httptrace.ClientTrace {
	var dnsStart, connectStart, tlsStart time.Time
	return &httptrace.ClientTrace{
		DNSStart:             func(httptrace.DNSStartInfo) { dnsStart = time.Now() },
		DNSDone:              func(httptrace.DNSDoneInfo) { r.Timings.DNS = time.Since(dnsStart) },
		ConnectStart:         func(string, string) { connectStart = time.Now() },
		ConnectDone:          func(string, string, error) { r.Timings.Connect = time.Since(connectStart) },
		TLSHandshakeStart:    func() { tlsStart = time.Now() },
		TLSHandshakeDone:     func(tls.ConnectionState, error) { r.Timings.TLS = time.Since(tlsStart) },
		GotFirstResponseByte: func() { r.Timings.TTFB = time.Since(start) },
	}
}

func newTransport(opts Options, skipVerify bool) *http.Transport {
	dialer := &net.Dialer{Resolver: opts.Resolver}
	return &http.Transport{
		DialContext:       dialer.DialContext,
		DisableKeepAlives: !opts.ReuseConnections,
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            opts.RootCAs,
			InsecureSkipVerify: skipVerify, //nolint:gosec // the Website asks for it (expect.tlsSkipVerify)
		},
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
	}
}

type errTooManyRedirects struct{ limit int }

func (e errTooManyRedirects) Error() string {
	return fmt.Sprintf("more than %d redirects", e.limit)
}

// classify turns a transport error into a class and a message that says
// what happened without Go's plumbing.
func classify(ctx context.Context, err error) (ErrorClass, error) {
	var (
		dnsErr    *net.DNSError
		redirects errTooManyRedirects
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		hostErr   x509.HostnameError
		authErr   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &redirects):
		return ClassTooManyRedirects, redirects
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || isTimeout(err):
		return ClassTimeout, errors.New("no complete response within the timeout")
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return ClassDNS, fmt.Errorf("host %s not found (NXDOMAIN)", dnsErr.Name)
		}
		return ClassDNS, fmt.Errorf("resolving %s: %s", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnectionRefused, errors.New("connection refused")
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return ClassConnectionReset, errors.New("connection reset or closed before the response was complete")
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &authErr), errors.As(err, &invalid):
		return ClassTLS, fmt.Errorf("TLS certificate: %w", unwrapURL(err))
	case errors.As(err, &recordErr), errors.As(err, &alertErr), strings.Contains(err.Error(), "tls:"):
		return ClassTLS, fmt.Errorf("TLS: %w", unwrapURL(err))
	}
	return ClassOther, unwrapURL(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unwrapURL drops net/url's "Get \"…\":" wrapper: the URL is in the
// result already.
func unwrapURL(err error) error {
	if urlErr, ok := errors.AsType[*url.Error](err); ok {
		return urlErr.Err
	}
	return err
}
