package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// Each shard's leader election Lease belongs to the shard's scheduler
// Deployment: the operator creates it with an owner reference, so that the
// garbage collector removes it with the Deployment, on a scale down as on
// uninstall. The schedulers' elector keeps the metadata of the Lease it
// finds and writes only its spec, so the reference outlives every renewal.
//
// A scheduler that renews in the moment between its Lease's collection and
// its own stop creates the Lease again, without the reference; the shard
// reconciler deletes such a Lease of a shard beyond the plan once no
// scheduler holds it.

// SchedulerLeaseName is the name of shard n's leader election Lease, the
// scheduler's --leader-election-id; it is its Deployment's name.
func SchedulerLeaseName(shard int32) string {
	return SchedulerDeploymentName(shard)
}

// schedulerLeases are the scheduler Leases in the namespace, by shard.
func (r *ShardReconciler) schedulerLeases(ctx context.Context) (map[int32]*coordinationv1.Lease, error) {
	var list coordinationv1.LeaseList
	if err := r.List(ctx, &list, client.InNamespace(r.Scheduler.Namespace)); err != nil {
		return nil, fmt.Errorf("listing Leases: %w", err)
	}
	byShard := map[int32]*coordinationv1.Lease{}
	for i := range list.Items {
		l := &list.Items[i]
		n, ok := strings.CutPrefix(l.Name, schedulerNamePrefix)
		if !ok {
			continue
		}
		if shard, err := strconv.ParseInt(n, 10, 32); err == nil && SchedulerLeaseName(int32(shard)) == l.Name {
			byShard[int32(shard)] = l
		}
	}
	return byShard, nil
}

// ensureLease creates the Lease of d's shard, owned by d, or makes d the
// owner of a Lease that a scheduler created first or that an older
// Deployment of the shard owned. It reports a Lease created meanwhile as
// a conflict.
func (r *ShardReconciler) ensureLease(ctx context.Context, lease *coordinationv1.Lease, d *appsv1.Deployment, shard int32) error {
	owner := metav1.OwnerReference{
		APIVersion: appsv1.SchemeGroupVersion.String(), Kind: "Deployment", Name: d.Name, UID: d.UID,
		Controller: ptr.To(true),
	}
	if lease == nil {
		lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			Name:            SchedulerLeaseName(shard),
			Namespace:       d.Namespace,
			Labels:          leaseLabels(shard),
			OwnerReferences: []metav1.OwnerReference{owner},
		}}
		if err := r.Create(ctx, lease); err != nil {
			return fmt.Errorf("creating Lease %s: %w", lease.Name, err)
		}
		return nil
	}
	refs := []metav1.OwnerReference{owner}
	for _, ref := range lease.OwnerReferences {
		switch {
		case ref.UID == d.UID:
			return nil
		case ref.Kind != "Deployment" || ref.Name != d.Name:
			refs = append(refs, ref)
		}
	}
	updated := lease.DeepCopy()
	updated.OwnerReferences = refs
	updated.Labels = mergeMaps(updated.Labels, leaseLabels(shard))
	// The optimistic lock keeps a concurrent renewal's spec: the scheduler
	// retries a renewal that conflicts, from the updated Lease.
	if err := r.Patch(ctx, updated, client.MergeFromWithOptions(lease, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adopting Lease %s: %w", lease.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("scheduler Lease adopted", "lease", lease.Name, "deployment", d.Name)
	return nil
}

func leaseLabels(shard int32) map[string]string {
	return map[string]string{
		ManagedByLabel:                managedBy,
		ComponentLabel:                componentScheduler,
		monitoringv1alpha1.ShardLabel: strconv.Itoa(int(shard)),
	}
}

// deleteOrphanLeases deletes the Leases of shards beyond the plan whose
// Deployment was already gone when this reconcile began, once no
// scheduler holds them. It reports whether one is still held.
func (r *ShardReconciler) deleteOrphanLeases(ctx context.Context, leases map[int32]*coordinationv1.Lease, deployments map[int32]*appsv1.Deployment, shards int32) (bool, error) {
	held := false
	for shard, l := range leases {
		if shard < shards || deployments[shard] != nil {
			continue
		}
		if r.leaseHeld(l) {
			held = true
			continue
		}
		err := r.Delete(ctx, l, client.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion})
		switch {
		case apierrors.IsNotFound(err):
		case apierrors.IsConflict(err):
			held = true // renewed meanwhile: look again
		case err != nil:
			return false, fmt.Errorf("deleting Lease %s: %w", l.Name, err)
		default:
			ctrl.LoggerFrom(ctx).Info("deleted the Lease of a removed shard", "lease", l.Name)
		}
	}
	return held, nil
}

// leaseHeld reports whether a holder's term on the Lease has not run out.
// A scheduler that stops releases its Lease: no holder, one second.
func (r *ShardReconciler) leaseHeld(l *coordinationv1.Lease) bool {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return false
	}
	expiry := s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
	return r.clock().Now().Before(expiry)
}
