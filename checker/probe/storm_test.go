package probe_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/webmon-dev/webmon/checker/expect"
	"github.com/webmon-dev/webmon/checker/probe"
	"github.com/webmon-dev/webmon/internal/task"
)

// TestServerErrorStorm: many checks at once, through one Prober as the
// checker makes them, of a server answering 500 and 503 at once: each is
// Down as unexpected_status, and none leaves a goroutine behind.
func TestServerErrorStorm(t *testing.T) {
	const checks, concurrency = 2000, 64
	ignore := goleak.IgnoreCurrent()
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if served.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	p := probe.NewProber(probe.Options{BodyLimit: 1 << 20, UserAgent: "webmon/test"})
	req := probe.Request{Method: http.MethodGet, URL: srv.URL, Timeout: 5 * time.Second}

	start := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		classes = map[probe.ErrorClass]int{}
		work    = make(chan struct{})
	)
	for range concurrency {
		wg.Go(func() {
			for range work {
				v := expect.Judge(&task.Expectations{}, p.Do(t.Context(), req))
				mu.Lock()
				classes[v.Class]++
				mu.Unlock()
			}
		})
	}
	for range checks {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	p.Close()
	srv.Close()
	t.Logf("%d checks, %d at once, in %s: %v", checks, concurrency, took.Round(time.Millisecond), classes)

	if classes[expect.ClassUnexpectedStatus] != checks {
		t.Errorf("classes %v: want all %d unexpected_status", classes, checks)
	}
	goleak.VerifyNone(t, ignore)
}
