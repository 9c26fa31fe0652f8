package reliability

import (
	"context"
	"maps"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

// counters scrapes the schedulers' counters every second and keeps each
// process's last value, so that what a process counted is not lost when it
// is killed or replaced: a window's count is the sum, over every process,
// of what it counted within the window.
type counters struct {
	s       *sys.System
	samples []string

	mu   sync.Mutex
	last map[string]map[int]float64 // by sample, by process id
}

func startCounters(ctx context.Context, s *sys.System, samples ...string) *counters {
	c := &counters{s: s, samples: samples, last: map[string]map[int]float64{}}
	for _, name := range samples {
		c.last[name] = map[int]float64{}
	}
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				c.scrape()
			}
		}
	}()
	return c
}

func (c *counters) scrape() {
	for pod, pid := range c.s.Processes(schedulerPrefix, "scheduler") {
		for _, name := range c.samples {
			v, err := c.s.Metric(types.NamespacedName{Namespace: sys.Namespace, Name: pod}, name)
			if err != nil {
				continue
			}
			c.mu.Lock()
			c.last[name][pid] = v
			c.mu.Unlock()
		}
	}
}

// now scrapes, and returns every process's last value of a sample.
func (c *counters) now(sample string) map[int]float64 {
	c.scrape()
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.last[sample])
}
