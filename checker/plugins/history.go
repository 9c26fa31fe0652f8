package plugins

import (
	"math"
	"time"
)

// History is what a Stateful plugin remembers of one URL: a running
// statistic per measured value. The checker loads it from PostgreSQL and
// stores it back with the results.
type History struct {
	// Stats are the running statistics, by value name.
	Stats map[string]*RunningStat `json:"stats"`
	// LastScheduledAt is the scheduledAt of the newest check counted: an
	// older or equal one (a redelivery) is judged but not counted again.
	LastScheduledAt time.Time `json:"lastScheduledAt"`
}

// RunningStat is Welford's online mean and variance of a series.
type RunningStat struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	// M2 is the sum of squared differences from the mean.
	M2 float64 `json:"m2"`
}

// Add counts x.
func (s *RunningStat) Add(x float64) {
	s.N++
	delta := x - s.Mean
	s.Mean += delta / float64(s.N)
	s.M2 += delta * (x - s.Mean)
}

// StdDev is the sample standard deviation; 0 below two samples.
func (s *RunningStat) StdDev() float64 {
	if s.N < 2 {
		return 0
	}
	return math.Sqrt(s.M2 / float64(s.N-1))
}
