package controllers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/types"
)

func TestShardForIsStableBalancedAndMovesLittle(t *testing.T) {
	const websites = 10_000
	// UIDs from a seeded generator: the same every run, shaped like the
	// apiserver's random v4 UUIDs.
	rng := rand.New(rand.NewPCG(2026, 11))
	uids := make([]string, websites)
	for i := range uids {
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		uids[i] = uuid.Must(uuid.FromBytes(b[:])).String()
	}
	for _, n := range []int32{1, 2, 3, 4, 7, 8, 16, 50} {
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			counts := make([]int, n)
			movedUp, movedDown := 0, 0
			for _, uid := range uids {
				s := ShardFor(types.UID(uid), n)
				if s < 0 || s >= n {
					t.Fatalf("ShardFor(%s, %d) = %d, out of range", uid, n, s)
				}
				if again := ShardFor(types.UID(uid), n); again != s {
					t.Fatalf("ShardFor(%s, %d) gave %d then %d", uid, n, s, again)
				}
				counts[s]++
				// Growing to n+1 shards moves a Website only to the new shard.
				if up := ShardFor(types.UID(uid), n+1); up != s {
					movedUp++
					if up != n {
						t.Fatalf("growing %d->%d moved %s from %d to %d, not to the new shard", n, n+1, uid, s, up)
					}
				}
				// Shrinking to n-1 moves only the Websites of the removed shard.
				if n > 1 {
					if down := ShardFor(types.UID(uid), n-1); down != s {
						movedDown++
						if s != n-1 {
							t.Fatalf("shrinking %d->%d moved %s off shard %d, which stays", n, n-1, uid, s)
						}
					}
				}
			}
			// Within 5 standard deviations of a uniform spread.
			mean := float64(websites) / float64(n)
			for s, c := range counts {
				if math.Abs(float64(c)-mean) > 5*math.Sqrt(mean) {
					t.Errorf("shard %d holds %d Websites, want about %.0f", s, c, mean)
				}
			}
			wantMoved := float64(websites) / float64(n+1)
			if math.Abs(float64(movedUp)-wantMoved) > 5*math.Sqrt(wantMoved) {
				t.Errorf("growing %d->%d moved %d Websites, want about %.0f (1/%d)", n, n+1, movedUp, wantMoved, n+1)
			}
			if n > 1 && movedDown != counts[n-1] {
				t.Errorf("shrinking %d->%d moved %d Websites, want exactly the %d of the removed shard", n, n-1, movedDown, counts[n-1])
			}
		})
	}
}

func TestShardPolicyDesired(t *testing.T) {
	auto := ShardPolicy{ChecksPerShard: 1000, Min: 1, Max: 10}
	tests := map[string]struct {
		policy  ShardPolicy
		load    float64
		current int32
		want    int32
	}{
		"fixed ignores load":              {ShardPolicy{Fixed: 4}, 1e9, 2, 4},
		"no load, one shard":              {auto, 0, 0, 1},
		"just under budget":               {auto, 999, 0, 1},
		"just over budget adds a shard":   {auto, 1001, 1, 2},
		"far over budget":                 {auto, 5500, 2, 6},
		"capped at max":                   {auto, 1e6, 3, 10},
		"raised to min":                   {ShardPolicy{ChecksPerShard: 1000, Min: 3, Max: 10}, 10, 0, 3},
		"hovering under boundary keeps 2": {auto, 950, 2, 2},
		"well under boundary removes one": {auto, 700, 2, 1},
		"load drop shrinks with headroom": {auto, 2000, 8, 3},
		"unknown current, no hysteresis":  {auto, 950, 0, 1},
		"sum of fifths is exactly 3":      {ShardPolicy{ChecksPerShard: 1}, sumOf(15, 0.2), 0, 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.policy.Desired(tc.load, tc.current); got != tc.want {
				t.Errorf("Desired(load=%v, current=%d) = %d, want %d", tc.load, tc.current, got, tc.want)
			}
		})
	}
}

// sumOf adds x n times, as the operator sums Websites' loads.
func sumOf(n int, x float64) float64 {
	sum := 0.0
	for range n {
		sum += x
	}
	return sum
}
