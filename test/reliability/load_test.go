package reliability

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/scheduler"
)

// The load: websites × urlsPerWebsite URLs, half the Websites every
// fastInterval and half every slowInterval, spread over targets local
// servers. 20 × 50 URLs make 1,000 URLs and 150 checks a second.
const (
	targets      = 4
	fastInterval = 5 * time.Second
	slowInterval = 10 * time.Second
	checkTimeout = 2 * time.Second
)

// startTargets starts the local servers the URLs point at: each answers
// every path with a small page at once.
func startTargets(t *testing.T) []*httptest.Server {
	servers := make([]*httptest.Server, targets)
	for i := range servers {
		servers[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = fmt.Fprintln(w, "<!doctype html><title>target</title><p>ok</p>")
		}))
		t.Cleanup(servers[i].Close)
	}
	return servers
}

// loadWebsite is the i-th Website of the load, with urls URLs.
func loadWebsite(i, urls int, servers []*httptest.Server) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("load-%02d", i)}}
	for j := range urls {
		target := servers[(i*urls+j)%len(servers)]
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(fmt.Sprintf("%s/site-%02d/page-%02d", target.URL, i, j)))
	}
	ws.Spec.Interval = metav1.Duration{Duration: fastInterval}
	if i%2 == 1 {
		ws.Spec.Interval = metav1.Duration{Duration: slowInterval}
	}
	ws.Spec.Timeout = metav1.Duration{Duration: checkTimeout}
	return ws
}

// loadURL is a URL of the load, with its Website's UID and interval.
type loadURL struct {
	name     string
	uid      string
	url      string
	interval time.Duration
}

// dueIn lists the ticks a URL is due at in [from, to), as every scheduler
// computes them: what a shard publishes when nothing goes wrong.
func (u loadURL) dueIn(from, to time.Time) []time.Time {
	phase := scheduler.Phase(types.UID(u.uid), u.url, u.interval)
	var due []time.Time
	for at := scheduler.NextRun(phase, u.interval, from.Add(-time.Nanosecond)); at.Before(to); at = at.Add(u.interval) {
		due = append(due, at)
	}
	return due
}
