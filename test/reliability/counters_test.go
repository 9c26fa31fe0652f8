package reliability

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
	// unanswered are the last scrapes a live process did not answer.
	unanswered []string
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

// scrape reads every live scheduler's samples, and returns the processes
// that did not answer.
func (c *counters) scrape() []string {
	var unanswered []string
	for pod, pid := range c.s.Processes(schedulerPrefix, "scheduler") {
		for _, name := range c.samples {
			v, err := c.s.Metric(types.NamespacedName{Namespace: sys.Namespace, Name: pod}, name)
			if err != nil {
				unanswered = append(unanswered, fmt.Sprintf("%s (pid %d) at %s: %v", pod, pid, time.Now().Format(time.StampMilli), err))
				break
			}
			c.mu.Lock()
			c.last[name][pid] = v
			c.mu.Unlock()
		}
	}
	if len(unanswered) > 0 {
		c.mu.Lock()
		c.unanswered = append(c.unanswered, unanswered...)
		c.unanswered = c.unanswered[max(0, len(c.unanswered)-10):]
		c.mu.Unlock()
	}
	return unanswered
}

// now scrapes, and returns every process's last value of a sample. A
// process that does not answer is asked again for a while: its last value
// may be stale, and a window's count with it.
func (c *counters) now(sample string) map[int]float64 {
	for range 10 {
		if len(c.scrape()) == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.last[sample])
}

// misses are the last scrapes that a live process did not answer.
func (c *counters) misses() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.unanswered)
}
