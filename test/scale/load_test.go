package scale

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/store"
	"github.com/webmon-dev/webmon/scheduler"
)

// urlsPerWebsite is the API's most URLs a Website takes: the fewest
// Websites for the URLs.
const urlsPerWebsite = 100

// loadNamespace holds the load's Websites.
const loadNamespace = "default"

// loadURL is a URL of the load with its Website's UID.
type loadURL struct {
	uid, url string
}

// load is the Websites the run creates: urls URLs every interval, spread
// round-robin over the target servers.
type load struct {
	interval time.Duration
	names    []string
	urls     []loadURL
}

// loadWebsite is the i-th Website, with urls URLs.
func loadWebsite(i, urls int, interval time.Duration, targets []string) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: fmt.Sprintf("scale-%05d", i)}}
	for j := range urls {
		target := targets[(i*urlsPerWebsite+j)%len(targets)]
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(fmt.Sprintf("http://%s/site-%05d/page-%03d", target, i, j)))
	}
	ws.Spec.Interval = metav1.Duration{Duration: interval}
	ws.Spec.Timeout = metav1.Duration{Duration: interval / 2}
	return ws
}

// createLoad creates the Websites for urls URLs, a few at once.
func createLoad(ctx context.Context, c client.Client, urls int, interval time.Duration, targets []string) (*load, error) {
	l := &load{interval: interval}
	var sites []*monitoringv1alpha1.Website
	for i := 0; i*urlsPerWebsite < urls; i++ {
		sites = append(sites, loadWebsite(i, min(urlsPerWebsite, urls-i*urlsPerWebsite), interval, targets))
	}
	err := forEach(ctx, len(sites), func(i int) error { return c.Create(ctx, sites[i]) })
	if err != nil {
		return nil, err
	}
	for _, ws := range sites {
		l.names = append(l.names, ws.Name)
		for _, u := range ws.Spec.URLs {
			l.urls = append(l.urls, loadURL{uid: string(ws.UID), url: string(u)})
		}
	}
	return l, nil
}

// suspend suspends every Website of the load: the schedulers stop
// publishing, and what was published drains.
func (l *load) suspend(ctx context.Context, c client.Client) error {
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`))
	return forEach(ctx, len(l.names), func(i int) error {
		ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: l.names[i]}}
		return c.Patch(ctx, ws, patch)
	})
}

// due counts the ticks due in [from, to), as every scheduler computes
// them: what the shards publish when nothing is skipped.
func (l *load) due(from, to time.Time) int {
	n := 0
	for _, u := range l.urls {
		phase := scheduler.Phase(types.UID(u.uid), u.url, l.interval)
		for at := scheduler.NextRun(phase, l.interval, from.Add(-time.Nanosecond)); at.Before(to); at = at.Add(l.interval) {
			n++
		}
	}
	return n
}

// sample is every k-th URL's id, at most n of them.
func (l *load) sample(n int) []int64 {
	step := max(1, len(l.urls)/n)
	var ids []int64
	for i := 0; i < len(l.urls) && len(ids) < n; i += step {
		ids = append(ids, store.URLID(l.urls[i].uid, l.urls[i].url))
	}
	return ids
}

// forEach runs fn for 0..n-1, 16 at a time, and returns the first error.
func forEach(ctx context.Context, n int, fn func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
