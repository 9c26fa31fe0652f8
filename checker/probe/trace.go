package probe

import (
	"crypto/tls"
	"net"
	"net/http/httptrace"
	"sync"
	"time"
)

// phase is how far a check got, for a failure to say where it stopped.
type phase int

const (
	phaseStart phase = iota
	phaseDNS
	phaseConnect
	phaseTLS
	phaseSend
	phaseWait
	phaseHeaders
	phaseBody
)

// tracer records the phase timings of the (last) connection, and the last
// phase reached. The transport dials on goroutines of its own, which may
// outlive the check: hooks lock, and do nothing once the check is over.
type tracer struct {
	start, deadline time.Time

	mu                               sync.Mutex
	done                             bool
	dnsStart, connectStart, tlsStart time.Time
	timings                          Timings
	phase                            phase
	host, addr                       string
	gotResponse                      bool
	// first are the first bytes the server sent.
	first []byte
}

// sniffLen is how much of what a server sends first is kept.
const sniffLen = 16

func newTracer() *tracer { return &tracer{start: time.Now()} }

// sniff keeps the start of what the server sent, and says how much it took.
func (t *tracer) sniff(b []byte) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := min(len(b), sniffLen-len(t.first))
	t.first = append(t.first, b[:n]...)
	return n
}

// at runs f under the lock, unless the check is over.
func (t *tracer) at(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		f()
	}
}

func (t *tracer) setPhase(p phase) { t.at(func() { t.phase = p }) }

// failed is where the check is, for its failure.
func (t *tracer) failed() failed {
	t.mu.Lock()
	defer t.mu.Unlock()
	return failed{phase: t.phase, host: t.host, addr: t.addr, response: t.gotResponse, first: string(t.first),
		late: !t.deadline.IsZero() && !time.Now().Before(t.deadline)}
}

// finish ends the check: later hooks are ignored.
func (t *tracer) finish() Timings {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	t.timings.Total = time.Since(t.start)
	return t.timings
}

// hooks are the trace of one check. reuse clears the deadline a dial put
// on a connection once a check has it: a kept connection outlives the
// check that dialed it, and the next check's context bounds it instead.
func (t *tracer) hooks(reuse bool) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(i httptrace.DNSStartInfo) {
			t.at(func() { t.dnsStart, t.phase, t.host = time.Now(), phaseDNS, i.Host })
		},
		DNSDone: func(httptrace.DNSDoneInfo) { t.at(func() { t.timings.DNS = time.Since(t.dnsStart) }) },
		ConnectStart: func(_, addr string) {
			t.at(func() { t.connectStart, t.phase, t.addr = time.Now(), phaseConnect, addr })
		},
		ConnectDone: func(string, string, error) { t.at(func() { t.timings.Connect = time.Since(t.connectStart) }) },
		TLSHandshakeStart: func() {
			t.at(func() { t.tlsStart, t.phase = time.Now(), phaseTLS })
		},
		TLSHandshakeDone: func(tls.ConnectionState, error) { t.at(func() { t.timings.TLS = time.Since(t.tlsStart) }) },
		GotConn: func(i httptrace.GotConnInfo) {
			if reuse {
				_ = i.Conn.SetDeadline(time.Time{})
			}
			t.at(func() {
				t.phase = phaseSend
				if t.addr == "" {
					t.addr = remote(i.Conn)
				}
			})
		},
		WroteRequest: func(httptrace.WroteRequestInfo) { t.setPhase(phaseWait) },
		GotFirstResponseByte: func() {
			t.at(func() { t.timings.TTFB, t.phase, t.gotResponse = time.Since(t.start), phaseHeaders, true })
		},
	}
}

func remote(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
