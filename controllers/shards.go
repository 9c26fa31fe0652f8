package controllers

import (
	"math"
	"sync"

	"github.com/cespare/xxhash/v2"
	jump "github.com/dgryski/go-jump"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// ShardFor is the shard of the Website with this UID among n shards. Jump
// consistent hashing moves only the keys that must move when n changes:
// about 1/n of them when a shard is added, and only the removed shard's
// when one is taken away.
func ShardFor(uid types.UID, n int32) int32 {
	if n <= 1 {
		return 0
	}
	return jump.Hash(xxhash.Sum64String(string(uid)), int(n))
}

// Load is a Website's share of the checks, in checks per second; a
// suspended Website has none.
func Load(ws *monitoringv1alpha1.Website) float64 {
	if ws.Spec.Suspend || ws.Spec.Interval.Duration <= 0 {
		return 0
	}
	return float64(len(ws.Spec.URLs)) / ws.Spec.Interval.Seconds()
}

// ShardPolicy decides how many scheduler shards to run.
type ShardPolicy struct {
	// Fixed, when positive, is the shard count whatever the load.
	Fixed int32
	// ChecksPerShard is the budget of checks per second of one scheduler,
	// for the automatic count.
	ChecksPerShard float64
	// Min and Max bound the automatic count; Max 0 means no bound.
	Min, Max int32
}

// scaleDownHeadroom is how far under the budget the load of the remaining
// shards must be before one is removed, so that a load hovering around a
// boundary does not add and remove a shard over and over.
const scaleDownHeadroom = 0.8

// Desired is the shard count for a total load (checks per second), given
// the current count (0 when unknown). A shard is added as soon as the load
// exceeds the budget, and removed only when the load fits in fewer shards
// with headroom.
func (p ShardPolicy) Desired(load float64, current int32) int32 {
	if p.Fixed > 0 {
		return p.Fixed
	}
	needed := int32(1)
	if p.ChecksPerShard > 0 {
		needed = shardsFor(load, p.ChecksPerShard)
	}
	n := needed
	if current > needed && load > float64(current-1)*p.ChecksPerShard*scaleDownHeadroom {
		// Shrinking by one would leave too little headroom: keep the
		// current count.
		n = current
	} else if current > needed {
		// Shrink to the smallest count that still leaves headroom.
		n = max(needed, shardsFor(load, p.ChecksPerShard*scaleDownHeadroom))
	}
	n = max(n, p.Min, 1)
	if p.Max > 0 {
		n = min(n, p.Max)
	}
	return n
}

// shardsFor is how many shards of the given budget the load needs. The
// load is a sum of fractions (URLs / interval): a tolerance keeps a load of
// exactly n budgets, summed as n plus rounding error, at n shards.
func shardsFor(load, budget float64) int32 {
	return int32(math.Max(1, math.Ceil(load/budget-1e-9)))
}

// ShardPlan is the shard count the operator works to, shared by its
// reconcilers: the ShardReconciler sets it, the WebsiteReconciler assigns
// Websites with it. Zero means not planned yet.
type ShardPlan struct {
	mu     sync.RWMutex
	shards int32
	// changes carries one event per change of the count; its receiver
	// re-reconciles every Website, so a pending event is enough.
	changes chan event.GenericEvent
}

// NewShardPlan returns an empty plan.
func NewShardPlan() *ShardPlan {
	return &ShardPlan{changes: make(chan event.GenericEvent, 1)}
}

// Shards is the planned shard count, 0 before the first plan.
func (p *ShardPlan) Shards() int32 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.shards
}

// set records a new count and reports whether it changed.
func (p *ShardPlan) set(n int32) bool {
	p.mu.Lock()
	changed := p.shards != n
	p.shards = n
	p.mu.Unlock()
	if changed {
		select {
		case p.changes <- event.GenericEvent{Object: &monitoringv1alpha1.Website{}}:
		default: // one is pending already
		}
	}
	return changed
}
