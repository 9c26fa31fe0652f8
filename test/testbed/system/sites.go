package system

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Sites are the websites webmon checks: a healthy one that counts its
// requests by path, and a broken one that answers 503.
type Sites struct {
	Healthy, Broken *httptest.Server
	mu              sync.Mutex
	hits            map[string]int
}

// StartSites starts the sites; they stop when the test ends.
func StartSites(t *testing.T) *Sites {
	s := &Sites{hits: map[string]int{}}
	s.Healthy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		_, _ = fmt.Fprintln(w, "<!doctype html><title>test shop</title><p>All systems go.</p>")
	}))
	s.Broken = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.Healthy.Close)
	t.Cleanup(s.Broken.Close)
	return s
}

// HitsOf counts the requests the healthy site had for the paths.
func (s *Sites) HitsOf(paths ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range paths {
		n += s.hits[p]
	}
	return n
}

// LogWriter writes each line to the test's log.
type LogWriter struct{ T *testing.T }

func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
