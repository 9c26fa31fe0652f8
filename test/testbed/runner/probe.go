package runner

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// untilFirstSuccess is how often a readiness probe runs until it first
// succeeds: a process is up in a second or two, and a test should not
// wait a probe period for it.
const untilFirstSuccess = 250 * time.Millisecond

// probeReadiness runs the container's HTTP or TCP readiness probe against
// its rewritten port until done, and sets its readiness. Without such a
// probe (or a port the runner knows), the container is ready once it runs.
func (c *container) probeReadiness(done <-chan struct{}) {
	p := c.spec.ReadinessProbe
	if p == nil || c.init && !c.sidecar {
		return
	}
	check := c.prober(p)
	if check == nil {
		c.w.log.Info("readiness probe not runnable locally: ready once running", "container", c.spec.Name)
		c.setReady(true)
		return
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	wait := time.Duration(p.InitialDelaySeconds) * time.Second
	succeeded := false
	successes, failures := 0, 0
	for {
		select {
		case <-done:
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		ok := check(ctx)
		cancel()
		if ok {
			successes, failures = successes+1, 0
			if successes >= int(max(p.SuccessThreshold, 1)) {
				succeeded = true
				c.setReady(true)
			}
		} else {
			successes, failures = 0, failures+1
			if failures >= int(max(p.FailureThreshold, 1)) {
				c.setReady(false)
			}
		}
		wait = period
		if !succeeded {
			wait = min(period, untilFirstSuccess)
		}
	}
}

// prober is the probe's check, or nil if it cannot run here: exec and
// gRPC probes, and ports the runner did not rewrite.
func (c *container) prober(p *corev1.Probe) func(context.Context) bool {
	switch {
	case p.HTTPGet != nil:
		addr, ok := c.probeAddr(p.HTTPGet.Port)
		if !ok {
			return nil
		}
		scheme := "http"
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		u := url.URL{Scheme: scheme, Host: addr, Path: p.HTTPGet.Path}
		headers := p.HTTPGet.HTTPHeaders
		return func(ctx context.Context) bool { return httpProbe(ctx, u.String(), headers) }
	case p.TCPSocket != nil:
		addr, ok := c.probeAddr(p.TCPSocket.Port)
		if !ok {
			return nil
		}
		return func(ctx context.Context) bool {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err == nil {
				_ = conn.Close()
			}
			return err == nil
		}
	}
	return nil
}

func (c *container) probeAddr(port intstr.IntOrString) (string, bool) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	key := port.StrVal
	if port.Type == intstr.Int {
		key = strconv.Itoa(int(port.IntVal))
	}
	addr, ok := c.addrs[key]
	return addr, ok
}

// probeClient does not follow redirects (a 3xx is a success, as for the
// kubelet) and trusts any certificate, as the kubelet's HTTPS probes do.
var probeClient = &http.Client{
	Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // as the kubelet's probes
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func httpProbe(ctx context.Context, u string, headers []corev1.HTTPHeader) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	for _, h := range headers {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}
