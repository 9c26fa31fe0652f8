package system

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Samples reads every sample of a pod's metrics endpoint whose line starts
// with prefix (a metric name, or a name and the start of its labels), by
// the sample's name and labels: what a histogram's buckets need.
func (s *System) Samples(pod types.NamespacedName, prefix string) (map[string]float64, error) {
	addr, ok := s.Runner.Addr(pod, "metrics")
	if !ok {
		return nil, fmt.Errorf("no metrics address for %s", pod)
	}
	ctx, cancel := context.WithTimeout(s.T.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q of %s: %w", line, pod, err)
		}
		samples[line[:i]] = v
	}
	return samples, sc.Err()
}
