package controllers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/metrics"
)

// shardsRequest is the one key the ShardReconciler works on: the shard
// plan is a property of all Websites together.
var shardsRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "shards"}}

// drainRecheck is how soon a shard that still has Websites is looked at again.
const drainRecheck = 5 * time.Second

// handoffMargin is how long after a handoff a drained shard's scheduler
// is kept: it publishes each tick due before the handoff at its due time,
// give or take its lateness.
const handoffMargin = time.Second

// ShardReconciler plans the shard count from the Websites' load and runs
// one scheduler Deployment per shard, each with its leader election Lease.
type ShardReconciler struct {
	client.Client
	Policy    ShardPolicy
	Scheduler SchedulerOptions
	Plan      *ShardPlan
	// Clock tells when a Lease's holder has run out of time; the real
	// clock if nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*ShardReconciler)(nil)

// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,namespace=webmon-system,resources=deployments,verbs=get;list;watch;create;update;delete
// Setting blockOwnerDeletion on the schedulers' owner reference needs this
// where the OwnerReferencesPermissionEnforcement admission plugin runs.
// +kubebuilder:rbac:groups=apps,namespace=webmon-system,resources=deployments/finalizers,verbs=update
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=webmon-system,resources=leases,verbs=get;list;watch;create;patch;delete

// Reconcile plans the shard count, then makes the scheduler Deployments match it.
func (r *ShardReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)

	// Read-only: skip copying every cached Website, on every run.
	var websites monitoringv1alpha1.WebsiteList
	if err := r.List(ctx, &websites, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing Websites: %w", err)
	}
	deployments, err := r.schedulerDeployments(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	leases, err := r.schedulerLeases(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}

	load := 0.0
	for i := range websites.Items {
		load += Load(&websites.Items[i])
	}
	current := r.Plan.Shards()
	if current == 0 {
		current = shardCountOf(deployments)
	}
	shards := r.Policy.Desired(load, current)
	// Deployments first, then the plan: Websites assigned to a new shard
	// find its scheduler already there.
	for shard := range shards {
		d, err := r.ensureDeployment(ctx, deployments[shard], shard, shards)
		if err == nil && d != nil {
			err = r.ensureLease(ctx, leases[shard], d, shard)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// A stale cached Deployment or Lease: plan again from fresh ones.
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		if err != nil {
			return ctrl.Result{}, err
		}
	}
	metrics.Shards.Set(float64(shards))
	metrics.PlannedChecksPerSecond.Set(load)
	metrics.Websites.Set(float64(len(websites.Items)))
	if r.Plan.set(shards) {
		log.Info("shard plan", "shards", shards, "previous", current, "checksPerSecond", load, "websites", len(websites.Items))
	}
	draining, err := r.deleteDrainedShards(ctx, deployments, shards, &websites)
	if err != nil {
		return ctrl.Result{}, err
	}
	leaseHeld, err := r.deleteOrphanLeases(ctx, leases, deployments, shards)
	if err != nil {
		return ctrl.Result{}, err
	}
	if draining || leaseHeld {
		return ctrl.Result{RequeueAfter: drainRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// schedulerDeployments are the operator's scheduler Deployments by shard.
func (r *ShardReconciler) schedulerDeployments(ctx context.Context) (map[int32]*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := r.List(ctx, &list, client.InNamespace(r.Scheduler.Namespace),
		client.MatchingLabels{ManagedByLabel: managedBy, ComponentLabel: componentScheduler}); err != nil {
		return nil, fmt.Errorf("listing scheduler Deployments: %w", err)
	}
	byShard := make(map[int32]*appsv1.Deployment, len(list.Items))
	for i := range list.Items {
		d := &list.Items[i]
		if shard, err := strconv.ParseInt(d.Labels[monitoringv1alpha1.ShardLabel], 10, 32); err == nil {
			byShard[int32(shard)] = d
		}
	}
	return byShard, nil
}

// shardCountOf recovers the count the Deployments were built for, after a
// restart of the operator; 0 if there are none.
func shardCountOf(deployments map[int32]*appsv1.Deployment) int32 {
	var n int32
	for _, d := range deployments {
		if c, err := strconv.ParseInt(d.Labels[ShardCountLabel], 10, 32); err == nil {
			n = max(n, int32(c))
		}
	}
	return n
}

// ensureDeployment creates shard n's Deployment, or updates it when its
// inputs changed; equal inputs cost no write. It returns the Deployment,
// or nil if one appeared that the cache does not show yet.
func (r *ShardReconciler) ensureDeployment(ctx context.Context, existing *appsv1.Deployment, shard, shards int32) (*appsv1.Deployment, error) {
	desired := r.Scheduler.SchedulerDeployment(shard, shards)
	if existing == nil {
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("creating %s: %w", desired.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("created scheduler Deployment", "deployment", desired.Name)
		return desired, nil
	}
	if existing.Annotations[InputsHashAnnotation] == desired.Annotations[InputsHashAnnotation] {
		return existing, nil
	}
	updated := existing.DeepCopy()
	updated.Labels = desired.Labels
	updated.Annotations = mergeMaps(updated.Annotations, desired.Annotations)
	updated.OwnerReferences = desired.OwnerReferences
	updated.Spec = desired.Spec
	if err := r.Update(ctx, updated); err != nil {
		return nil, fmt.Errorf("updating %s: %w", desired.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("updated scheduler Deployment", "deployment", desired.Name)
	return updated, nil
}

// deleteDrainedShards deletes the Deployments of shards beyond the plan
// once no Website is labelled for them any more and every move's handoff
// is past: until then the old scheduler keeps publishing the ticks due
// before it. It reports whether any shard is still draining.
func (r *ShardReconciler) deleteDrainedShards(ctx context.Context, deployments map[int32]*appsv1.Deployment, shards int32, websites *monitoringv1alpha1.WebsiteList) (bool, error) {
	populated := map[string]bool{}
	handingOver := false
	for i := range websites.Items {
		ws := &websites.Items[i]
		populated[ws.Labels[monitoringv1alpha1.ShardLabel]] = true
		if _, at, ok := ws.ShardHandoff(); ok && r.clock().Now().Before(at.Add(handoffMargin)) {
			handingOver = true
		}
	}
	draining := false
	for shard, d := range deployments {
		if shard < shards {
			continue
		}
		if populated[strconv.Itoa(int(shard))] || handingOver {
			draining = true
			continue
		}
		if err := r.Delete(ctx, d); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("deleting %s: %w", d.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("deleted drained scheduler Deployment", "deployment", d.Name)
	}
	return draining, nil
}

func (r *ShardReconciler) clock() clock.PassiveClock {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

func mergeMaps(into, from map[string]string) map[string]string {
	if into == nil {
		into = make(map[string]string, len(from))
	}
	for k, v := range from {
		into[k] = v
	}
	return into
}

// planDelay batches the Website events that wake the planner: a mass
// import of n Websites costs one plan a second, not n plans of n Websites.
const planDelay = time.Second

// SetupWithManager runs the reconciler after changes to the Websites' load
// or shard labels, batched, and on changes to the scheduler Deployments.
func (r *ShardReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toShards := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{shardsRequest}
	})
	// The delaying queue keeps one pending entry per key, however many
	// events arrive before it is due.
	toShardsBatched := handler.Funcs{
		CreateFunc: func(_ context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(shardsRequest, planDelay)
		},
		UpdateFunc: func(_ context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(shardsRequest, planDelay)
		},
		DeleteFunc: func(_ context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(shardsRequest, planDelay)
		},
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("shards").
		WatchesRawSource(planAtStart).
		Watches(&monitoringv1alpha1.Website{}, toShardsBatched,
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&appsv1.Deployment{}, toShards, builder.WithPredicates(isSchedulerDeployment(r.Scheduler.Namespace))).
		Complete(r)
}

// isSchedulerDeployment keeps the events of the operator's scheduler Deployments.
func isSchedulerDeployment(namespace string) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		l := o.GetLabels()
		return o.GetNamespace() == namespace && l[ManagedByLabel] == managedBy && l[ComponentLabel] == componentScheduler
	})
}

// planAtStart enqueues the shards request once when the controller starts,
// so that a new install gets its first scheduler before any Website exists.
var planAtStart = source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	q.Add(shardsRequest)
	return nil
})
