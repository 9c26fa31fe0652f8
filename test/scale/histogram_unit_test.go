package scale

import (
	"math"
	"testing"
	"time"
)

func TestBucketQuantile(t *testing.T) {
	// 100 observations: 50 at most 10 ms, 40 more at most 100 ms, 10 more
	// above 1 s.
	b := bucketCounts{}
	b.addBuckets(map[string]float64{
		`x_bucket{le="0.01"}`: 50,
		`x_bucket{le="0.1"}`:  90,
		`x_bucket{le="1"}`:    90,
		`x_bucket{le="+Inf"}`: 100,
	})
	tests := map[string]struct {
		q, want float64
	}{
		"median at the first bucket's bound": {q: 0.5, want: 0.01},
		"within the second bucket":           {q: 0.7, want: 0.01 + 0.09*20/40},
		"in +Inf: the highest finite bound":  {q: 0.99, want: 1},
	}
	for name, tc := range tests {
		if got := b.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: quantile(%v) = %v, want %v", name, tc.q, got, tc.want)
		}
	}
	if got := b.minus(b).quantile(0.5); got != 0 {
		t.Errorf("empty histogram: quantile = %v, want 0", got)
	}
}

func TestQuantileNearestRank(t *testing.T) {
	sorted := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := quantile(sorted, 0.5); got != 5 {
		t.Errorf("p50 = %v, want 5", got)
	}
	if got := quantile(sorted, 0.99); got != 10 {
		t.Errorf("p99 = %v, want 10", got)
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}
