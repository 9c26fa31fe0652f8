package plugins

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// blocklistWorld is a filtering resolver that blocks evil.example.com, a
// normal one that knows it, a resolver that never answers, and a port
// where none listens.
type blocklistWorld struct {
	filtering, normal, silent *dnsServer
	closed                    string
}

func newBlocklistWorld(t *testing.T) *blocklistWorld {
	t.Helper()
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	_ = closed.Close()
	return &blocklistWorld{
		filtering: startDNS(t, map[string]string{"shop.example.com.": "192.0.2.1"}, false),
		normal:    startDNS(t, map[string]string{"shop.example.com.": "192.0.2.1", "evil.example.com.": "192.0.2.66"}, false),
		silent:    startDNS(t, nil, true),
		closed:    closedAddr,
	}
}

func (w *blocklistWorld) plugin(clock *fakeClock) Plugin {
	return newDNSBlocklist(Options{Resolver: resolverAt(w.normal.addr), BlocklistResolver: w.filtering.addr, Now: clock.Now})
}

func blocklistInput(url string, config ...string) *Input {
	in := &Input{Task: &task.Task{URL: url}, Response: &probe.Response{StatusCode: 200}, Config: map[string]string{}}
	for i := 0; i+1 < len(config); i += 2 {
		in.Config[config[i]] = config[i+1]
	}
	return in
}

func TestDNSBlocklist(t *testing.T) {
	w := newBlocklistWorld(t)
	tests := map[string]struct {
		url    string
		config []string
		want   Result
		wantOK bool
	}{
		"answered": {
			url:  "https://shop.example.com/cart",
			want: Result{Outcome: OK, Message: "shop.example.com is not blocked by the filtering resolver " + w.filtering.addr}, wantOK: true,
		},
		"blocked": {
			url:  "https://Evil.Example.com./login",
			want: Result{Outcome: Error, Message: "evil.example.com is blocked by the filtering resolver " + w.filtering.addr + " (NXDOMAIN): listed as malicious"}, wantOK: true,
		},
		"no such domain anywhere": {
			url:  "https://gone.example.com/",
			want: Result{Outcome: OK, Message: "gone.example.com does not exist (NXDOMAIN from both the filtering and the normal resolver): nothing to block"}, wantOK: true,
		},
		"filtering resolver never answers": {
			url: "https://shop.example.com/", config: []string{"resolver", w.silent.addr, "timeout", "300ms"},
			want: Result{Outcome: Warning, Message: "cannot tell whether shop.example.com is blocked: the filtering resolver " + w.silent.addr + " did not answer within 300ms"}, wantOK: true,
		},
		"filtering resolver unreachable": {
			url: "https://shop.example.com/", config: []string{"resolver", w.closed, "timeout", "1s"},
			want: Result{Outcome: Warning, Message: "cannot tell whether shop.example.com is blocked: the filtering resolver " + w.closed + " refused the connection"}, wantOK: true,
		},
		"resolver in the config overrides the checker's": {
			url: "https://evil.example.com/", config: []string{"resolver", w.normal.addr},
			want: Result{Outcome: OK, Message: "evil.example.com is not blocked by the filtering resolver " + w.normal.addr}, wantOK: true,
		},
		"IP address":            {url: "https://192.0.2.1:8443/"},
		"IPv6 address":          {url: "https://[2001:db8::1]/"},
		"single label":          {url: "http://intranet/"},
		"cluster-internal name": {url: "http://shop.default.svc.cluster.local/"},
		"not a URL":             {url: "::"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, ok := w.plugin(newFakeClock(time.Now())).Run(t.Context(), blocklistInput(tc.url, tc.config...))
			if tc.wantOK {
				tc.want.Name = "dns-blocklist"
			}
			if diff := cmp.Diff(tc.want, got); ok != tc.wantOK || diff != "" {
				t.Errorf("Run: ok %v, want %v (-want +got):\n%s", ok, tc.wantOK, diff)
			}
		})
	}
}

// TestDNSBlocklistCache: a verdict is reused for its host and resolver
// until it expires, and concurrent checks of a host ask once.
func TestDNSBlocklistCache(t *testing.T) {
	w := newBlocklistWorld(t)
	clock := newFakeClock(time.Now())
	p := w.plugin(clock)
	run := func(url string) Result {
		t.Helper()
		got, ok := p.Run(t.Context(), blocklistInput(url))
		if !ok {
			t.Fatalf("%s: no verdict", url)
		}
		return got
	}

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { run("https://evil.example.com/") })
	}
	wg.Wait()
	filtering, normal := w.filtering.queries.Load(), w.normal.queries.Load()
	if filtering == 0 || filtering > 4 || normal == 0 || normal > 4 {
		t.Fatalf("20 concurrent checks: %d queries to the filtering resolver, %d to the normal one; want one lookup (A and AAAA)", filtering, normal)
	}

	clock.Step(4 * time.Minute)
	if got := run("https://evil.example.com/other"); got.Outcome != Error {
		t.Errorf("cached verdict: %+v", got)
	}
	if n := w.filtering.queries.Load(); n != filtering {
		t.Errorf("within the TTL: %d queries, want %d", n, filtering)
	}

	run("https://shop.example.com/") // another host is asked
	if n := w.filtering.queries.Load(); n == filtering {
		t.Error("another host was not asked")
	}

	clock.Step(2 * time.Minute)
	before := w.filtering.queries.Load()
	run("https://evil.example.com/")
	if n := w.filtering.queries.Load(); n == before {
		t.Error("after the TTL the resolver was not asked again")
	}
}

func TestDNSBlocklistCancelled(t *testing.T) {
	w := newBlocklistWorld(t)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, ok := w.plugin(newFakeClock(time.Now())).Run(ctx, blocklistInput("https://shop.example.com/", "resolver", w.silent.addr, "timeout", "5s"))
	if ok || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled check: got %+v, %v after %s; want no verdict, promptly", got, ok, time.Since(start))
	}
}
