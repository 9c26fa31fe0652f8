package controllers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

const (
	// conflictRetry is how soon a Website whose status write conflicted
	// is reconciled again.
	conflictRetry = 100 * time.Millisecond
	// unscheduledRecheck is about how often a Website waiting for its
	// scheduler is looked at again (jittered up to twice as long).
	unscheduledRecheck = 5 * time.Minute
	// awaitingShardGrace is how long after the operator starts a Website
	// waits silently for the first shard plan.
	awaitingShardGrace = 30 * time.Second
	// shardHandoffDelay is how long after a move its schedulers hand a
	// Website over: the old shard stops at that time on its own, and the
	// new one should have seen the move by then, or its first ticks go
	// out late.
	shardHandoffDelay = 2 * time.Second
)

// Event reasons of the WebsiteReconciler.
const (
	eventShardMoved  = "ShardMoved"
	eventInvalidSpec = "InvalidSpec"
	eventScheduled   = "Scheduled"
)

// WebsiteReconciler assigns each Website its shard and reports, in its
// conditions, whether it can be checked and is being scheduled. It never
// writes check results: those are the checkers'.
type WebsiteReconciler struct {
	client.Client
	Plan *ShardPlan
	// SchedulerNamespace is where the scheduler Deployments run.
	SchedulerNamespace string
	Recorder           events.EventRecorder
	Clock              clock.PassiveClock
	// MaxConcurrentReconciles defaults to 1.
	MaxConcurrentReconciles int

	started time.Time
}

var _ reconcile.Reconciler = (*WebsiteReconciler)(nil)

// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites/status,verbs=get;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Website's shard label and operator status up to date.
func (r *WebsiteReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	ws := &monitoringv1alpha1.Website{}
	if err := r.Get(ctx, req.NamespacedName, ws); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ws.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	shards := r.Plan.Shards()
	if shards == 0 {
		return r.awaitPlan(ctx, ws)
	}
	shard := ShardFor(ws.UID, shards)
	if err := r.ensureShardLabel(ctx, ws, shard); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	scheduler, err := r.schedulerOf(ctx, shard)
	if err != nil {
		return ctrl.Result{}, err
	}

	before := ws.DeepCopy()
	now := metav1.NewTime(r.Clock.Now())
	setOperatorStatus(ws, shard, now)
	setSpecValidCondition(ws, validateSpec(&ws.Spec), now)
	setScheduledCondition(ws, shard, scheduler, now)
	if result, err := r.updateStatusIfChanged(ctx, before, ws); err != nil || !result.IsZero() {
		return result, err
	}
	if !ws.Spec.Suspend && !meta.IsStatusConditionTrue(ws.Status.Conditions, monitoringv1alpha1.ConditionScheduled) {
		// The scheduler's Deployment events bring us back; this is the
		// safety net, spread out so that many waiting Websites do not
		// come back at once.
		return ctrl.Result{RequeueAfter: wait.Jitter(unscheduledRecheck, 1)}, nil
	}
	return ctrl.Result{}, nil
}

// awaitPlan handles a Website before the first shard plan. Right after the
// operator starts, that is a moment: the plan's first change wakes every
// Website, so nothing is written (a restart must not rewrite every status).
// If planning is still stuck after a grace period, the Website says so.
func (r *WebsiteReconciler) awaitPlan(ctx context.Context, ws *monitoringv1alpha1.Website) (ctrl.Result, error) {
	if waited := r.Clock.Since(r.started); waited < awaitingShardGrace {
		return ctrl.Result{RequeueAfter: awaitingShardGrace - waited}, nil
	}
	before := ws.DeepCopy()
	now := metav1.NewTime(r.Clock.Now())
	setSpecValidCondition(ws, validateSpec(&ws.Spec), now)
	meta.SetStatusCondition(&ws.Status.Conditions, metav1.Condition{
		Type:               monitoringv1alpha1.ConditionScheduled,
		Status:             metav1.ConditionFalse,
		Reason:             monitoringv1alpha1.ReasonAwaitingShard,
		Message:            "the operator has not planned its scheduler shards yet; its log says why",
		ObservedGeneration: ws.Generation,
		LastTransitionTime: now,
	})
	return r.updateStatusIfChanged(ctx, before, ws)
}

// ensureShardLabel labels the Website with its shard, so that its
// scheduler's informer selects it.
func (r *WebsiteReconciler) ensureShardLabel(ctx context.Context, ws *monitoringv1alpha1.Website, shard int32) error {
	value := strconv.Itoa(int(shard))
	previous, had := ws.Labels[monitoringv1alpha1.ShardLabel]
	if previous == value {
		return nil
	}
	if had {
		// The two schedulers see the move moments apart, and the old one
		// sees it as a deletion of what it knew: it is told first, on its
		// own watch, when to hand the Website over. It publishes the ticks
		// due before then, the new one those due from then on.
		patch := client.MergeFrom(ws.DeepCopy())
		metav1.SetMetaDataAnnotation(&ws.ObjectMeta, monitoringv1alpha1.ShardHandoffAnnotation,
			value+"@"+r.Clock.Now().Add(shardHandoffDelay).UTC().Format(time.RFC3339Nano))
		if err := r.Patch(ctx, ws, patch); err != nil {
			return fmt.Errorf("announcing the move to shard %d: %w", shard, err)
		}
	}
	patch := client.MergeFrom(ws.DeepCopy())
	if ws.Labels == nil {
		ws.Labels = map[string]string{}
	}
	ws.Labels[monitoringv1alpha1.ShardLabel] = value
	if err := r.Patch(ctx, ws, patch); err != nil {
		return fmt.Errorf("labelling with shard %d: %w", shard, err)
	}
	// A first assignment shows in the label and status.shard; an Event
	// each would double the apiserver's work for a mass import. A move,
	// after the shard count changed, is worth telling.
	if had {
		r.Recorder.Eventf(ws, nil, corev1.EventTypeNormal, eventShardMoved, "Reassign", "moved from shard %s to shard %d", previous, shard)
	}
	return nil
}

// schedulerOf is shard n's scheduler Deployment, nil if it does not exist.
func (r *WebsiteReconciler) schedulerOf(ctx context.Context, shard int32) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	key := types.NamespacedName{Namespace: r.SchedulerNamespace, Name: SchedulerDeploymentName(shard)}
	if err := r.Get(ctx, key, d); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting scheduler Deployment %s: %w", key.Name, err)
	}
	return d, nil
}

// updateStatusIfChanged writes the status once, only if it changed, and
// records Events for the transitions a user can act on. A conflict means
// our cached copy was stale or a checker wrote meanwhile: the Website is
// reconciled again from the fresh object, without logging an error.
func (r *WebsiteReconciler) updateStatusIfChanged(ctx context.Context, before, ws *monitoringv1alpha1.Website) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(before.Status, ws.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Update(ctx, ws); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return ctrl.Result{}, nil
		case apierrors.IsConflict(err):
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, fmt.Errorf("updating status: %w", err)
	}
	r.recordTransitions(before, ws)
	return ctrl.Result{}, nil
}

func (r *WebsiteReconciler) recordTransitions(before, after *monitoringv1alpha1.Website) {
	was := meta.FindStatusCondition(before.Status.Conditions, monitoringv1alpha1.ConditionSpecValid)
	now := meta.FindStatusCondition(after.Status.Conditions, monitoringv1alpha1.ConditionSpecValid)
	if now.Status == metav1.ConditionFalse && (was == nil || was.Status != now.Status || was.Message != now.Message) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, eventInvalidSpec, "Validate", "%s", now.Message)
	}
	was = meta.FindStatusCondition(before.Status.Conditions, monitoringv1alpha1.ConditionScheduled)
	now = meta.FindStatusCondition(after.Status.Conditions, monitoringv1alpha1.ConditionScheduled)
	if now.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, eventScheduled, "Schedule", "%s", now.Message)
	}
}

// SetupWithManager watches Websites (spec and label changes, not the
// checkers' status writes), the scheduler Deployments, and the shard plan.
func (r *WebsiteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.started = r.Clock.Now()
	return ctrl.NewControllerManagedBy(mgr).
		For(&monitoringv1alpha1.Website{},
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, shardLabelWrong(r.Plan)))).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.websitesOfScheduler),
			builder.WithPredicates(isSchedulerDeployment(r.SchedulerNamespace))).
		WatchesRawSource(source.Channel(r.Plan.changes, handler.EnqueueRequestsFromMapFunc(r.allWebsites))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(r)
}

// shardLabelWrong passes updates that leave a Website's shard label
// different from its planned shard, such as a label edited by hand, but
// not the operator's own labelling, which would cost a second reconcile
// (and a status write on a stale copy) per Website.
func shardLabelWrong(plan *ShardPlan) predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			shards := plan.Shards()
			if shards == 0 {
				return false
			}
			want := strconv.Itoa(int(ShardFor(e.ObjectNew.GetUID(), shards)))
			return e.ObjectNew.GetLabels()[monitoringv1alpha1.ShardLabel] != want
		},
	}
}

// websitesOfScheduler maps a scheduler Deployment to the Websites of its
// shard: those the plan puts there, found by UID rather than by label,
// since a label just patched may not be in the cache yet, and those still
// labelled for it while it drains.
func (r *WebsiteReconciler) websitesOfScheduler(ctx context.Context, o client.Object) []reconcile.Request {
	label, ok := o.GetLabels()[monitoringv1alpha1.ShardLabel]
	shard, err := strconv.ParseInt(label, 10, 32)
	if !ok || err != nil {
		return nil
	}
	shards := r.Plan.Shards()
	return r.websiteRequests(ctx, func(ws *monitoringv1alpha1.Website) bool {
		return ws.Labels[monitoringv1alpha1.ShardLabel] == label || (shards > 0 && ShardFor(ws.UID, shards) == int32(shard))
	})
}

// allWebsites maps a change of the shard plan to every Website.
func (r *WebsiteReconciler) allWebsites(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.websiteRequests(ctx, func(*monitoringv1alpha1.Website) bool { return true })
}

func (r *WebsiteReconciler) websiteRequests(ctx context.Context, keep func(*monitoringv1alpha1.Website) bool) []reconcile.Request {
	// The typed list reads the informer the controller has already.
	var list monitoringv1alpha1.WebsiteList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing Websites to reconcile")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if ws := &list.Items[i]; keep(ws) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ws.Namespace, Name: ws.Name}})
		}
	}
	return reqs
}
