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
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// failed is what a check knew when it failed: enough to say where.
type failed struct {
	err       error
	timeout   time.Duration
	scheme    string
	phase     phase
	host      string
	addr      string
	response  bool
	bodyBytes int
	first     string
	// late is true once the check's deadline has passed.
	late bool
}

// classify turns a transport error into a class and a message that says
// what happened, and where, without Go's plumbing.
func classify(ctx context.Context, f failed) (ErrorClass, error) {
	err := f.err
	var (
		dnsErr    *net.DNSError
		redirects errTooManyRedirects
		blocked   *BlockedError
	)
	switch {
	case errors.As(err, &redirects):
		return ClassTooManyRedirects, redirects
	case errors.As(err, &blocked):
		return ClassBlocked, blocked
	case errors.As(err, &dnsErr):
		return ClassDNS, f.dnsMessage(ctx, dnsErr)
	case f.cleartext() && isHTTP2Frame(f.first):
		return ClassProtocol, errors.New("the server answered in HTTP/2 without TLS (h2c with prior knowledge only), which webmon does not speak over http://: serve HTTP/1.1 there too, or check over https://")
	case f.cleartext() && !maybeHTTP(f.first):
		// Whatever net/http made of it (an "unsolicited response" when
		// the server spoke first), what it sent says more.
		return ClassProtocol, fmt.Errorf("not an HTTP server: the first bytes it sent were %q", f.first)
	case f.late || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		// Late: the connection's deadline, which is the check's, may fire
		// before the context does, as an error net/http does not wrap.
		if f.phase == phaseDNS {
			return ClassDNS, fmt.Errorf("resolving %s: no answer from the DNS server within the %s timeout", f.host, f.timeout)
		}
		return ClassTimeout, fmt.Errorf("no complete response within the %s timeout: %s", f.timeout, f.where())
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnectionRefused, errors.New("connection refused")
	case strings.Contains(err.Error(), "server response headers exceeded"):
		// net/http's MaxResponseHeaderBytes, which has no error type.
		return ClassHeadersTooLarge, fmt.Errorf("response headers larger than the %d-byte limit", maxHeaderBytes)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return ClassConnectionReset, errors.New(f.resetMessage())
	}
	if class, msg, ok := tlsMessage(err); ok {
		return class, errors.New(msg)
	}
	if msg, ok := protocolMessage(err); ok {
		return ClassProtocol, errors.New(msg)
	}
	return ClassOther, unwrapURL(err)
}

// cleartext reports whether the check's URL is http://, spoken as HTTP/1.1.
func (f failed) cleartext() bool { return f.scheme == "http" }

// where says how far a check that ran out of time got.
func (f failed) where() string {
	switch f.phase {
	case phaseConnect:
		return fmt.Sprintf("connecting to %s, no answer", f.addr)
	case phaseTLS:
		return fmt.Sprintf("the TLS handshake with %s did not finish", f.addr)
	case phaseSend:
		return "the request could not be sent"
	case phaseWait:
		return "the server took the request and sent nothing back"
	case phaseHeaders:
		return "the response headers did not arrive in full"
	case phaseBody:
		return fmt.Sprintf("the body did not arrive in full (%d bytes read)", f.bodyBytes)
	}
	return "no connection was made"
}

func (f failed) resetMessage() string {
	switch {
	case f.phase == phaseBody:
		return fmt.Sprintf("connection reset or closed in the middle of the body (%d bytes read)", f.bodyBytes)
	case f.response:
		return "connection reset or closed in the middle of the response headers"
	case f.phase == phaseTLS:
		return "connection reset or closed during the TLS handshake"
	case f.cleartext():
		// What a server that speaks only HTTP/2 with prior knowledge
		// (h2c) does to an HTTP/1.1 request.
		return "connection reset or closed before any response (a server that speaks only HTTP/2 without TLS, h2c, does this: webmon checks http:// URLs over HTTP/1.1)"
	}
	return "connection reset or closed before any response"
}

func (f failed) dnsMessage(ctx context.Context, e *net.DNSError) error {
	switch {
	case e.IsNotFound:
		return fmt.Errorf("host %s not found (NXDOMAIN)", e.Name)
	case e.IsTimeout && (f.late || ctx.Err() != nil):
		return fmt.Errorf("resolving %s: no answer from the DNS server within the %s timeout", e.Name, f.timeout)
	case e.IsTimeout:
		return fmt.Errorf("resolving %s: no answer from the DNS server (it timed out)", e.Name)
	}
	return fmt.Errorf("resolving %s: %s", e.Name, e.Err)
}

// tlsMessage says what is wrong with a certificate, or which TLS error
// ended the handshake.
func tlsMessage(err error) (ErrorClass, string, bool) {
	var (
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		hostErr   x509.HostnameError
		authErr   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c := invalid.Cert
		if time.Now().Before(c.NotBefore) {
			return ClassTLS, fmt.Sprintf("TLS certificate of %s is not valid yet: valid from %s", certName(c), c.NotBefore.UTC().Format(time.RFC3339)), true
		}
		return ClassTLS, fmt.Sprintf("TLS certificate of %s expired on %s", certName(c), c.NotAfter.UTC().Format(time.RFC3339)), true
	case errors.As(err, &hostErr):
		return ClassTLS, "TLS certificate: " + strings.TrimPrefix(hostErr.Error(), "x509: "), true
	case errors.As(err, &authErr) && authErr.Cert != nil:
		c := authErr.Cert
		if bytes.Equal(c.RawIssuer, c.RawSubject) {
			return ClassTLS, fmt.Sprintf("TLS certificate of %s is self-signed, and not trusted", certName(c)), true
		}
		return ClassTLS, fmt.Sprintf("TLS certificate of %s is signed by an unknown authority, %q (a private CA, or a missing intermediate)", certName(c), c.Issuer.String()), true
	case errors.As(err, &certErr), errors.As(err, &invalid):
		return ClassTLS, "TLS certificate: " + plainTLS(err), true
	case errors.As(err, &recordErr), errors.As(err, &alertErr), strings.Contains(err.Error(), "tls:"):
		return ClassTLS, "TLS: " + plainTLS(err), true
	}
	return "", "", false
}

// plainTLS is a TLS error without the packages' prefixes.
func plainTLS(err error) string {
	msg := unwrapURL(err).Error()
	for _, prefix := range []string{"tls: failed to verify certificate: ", "tls: ", "x509: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

// certName is what a certificate is for: its first DNS name or IP
// address, else its common name.
func certName(c *x509.Certificate) string {
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	}
	return "the server"
}

// protocolMessage recognises an answer that is not HTTP/1.x.
func protocolMessage(err error) (string, bool) {
	msg := unwrapURL(err).Error()
	if !strings.Contains(msg, "malformed HTTP") && !strings.Contains(msg, "malformed MIME header") {
		return "", false
	}
	return "not a valid HTTP response: " + strings.TrimPrefix(msg, "net/http: HTTP/1.x transport connection broken: "), true
}

// isHTTP2Frame reports whether a server's first bytes are an HTTP/2
// SETTINGS or GOAWAY frame on the connection's stream 0: how a server that
// speaks only h2c answers a request it cannot read.
func isHTTP2Frame(b string) bool {
	const settings, goaway = 0x4, 0x7
	return len(b) >= 9 && b[0] == 0 && (b[3] == settings || b[3] == goaway) &&
		b[5]&0x7f == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0
}

// maybeHTTP reports whether a server's first bytes may start an HTTP/1.x
// response (or are none).
func maybeHTTP(b string) bool {
	const start = "HTTP/"
	return strings.HasPrefix(b, start) || strings.HasPrefix(start, b)
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

// maxMessage bounds a failure's message: a server's bytes quoted in it
// must not flood a status.
const maxMessage = 512

// cleanError is an error whose message is valid UTF-8 and at most
// maxMessage bytes, whatever a server sent, with the error it reports
// kept for errors.Is and errors.As.
type cleanError struct {
	msg string
	err error
}

func clean(err error) error {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return &cleanError{msg: msg, err: err}
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }
