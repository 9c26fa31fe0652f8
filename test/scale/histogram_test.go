package scale

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// bucketCounts are a Prometheus histogram's cumulative buckets, by upper
// bound, summed over processes.
type bucketCounts map[float64]float64

// addBuckets adds a scrape's `<name>_bucket{le="…"}` samples.
func (b bucketCounts) addBuckets(samples map[string]float64) {
	for name, v := range samples {
		_, le, ok := strings.Cut(name, `le="`)
		if !ok {
			continue
		}
		le = strings.TrimSuffix(le, `"}`)
		bound, err := strconv.ParseFloat(le, 64)
		if le == "+Inf" {
			bound, err = math.Inf(1), nil
		}
		if err == nil {
			b[bound] += v
		}
	}
}

// minus is what was counted after start.
func (b bucketCounts) minus(start bucketCounts) bucketCounts {
	d := bucketCounts{}
	for le, v := range b {
		d[le] = v - start[le]
	}
	return d
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linear within the bucket that holds the rank; the highest finite
// bound when it falls in +Inf.
func (b bucketCounts) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(b))
	for le := range b {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || b[bounds[len(bounds)-1]] == 0 {
		return 0
	}
	rank := q * b[bounds[len(bounds)-1]]
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := b[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}
