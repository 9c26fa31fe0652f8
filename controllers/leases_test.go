package controllers

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

func getLease(t testing.TB, ns, name string) (*coordinationv1.Lease, error) {
	t.Helper()
	l := &coordinationv1.Lease{}
	return l, k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, l)
}

// ownedBy reports whether the Lease's controller is the Deployment.
func ownedBy(l *coordinationv1.Lease, d *appsv1.Deployment) bool {
	ref := metav1.GetControllerOf(l)
	return ref != nil && ref.Kind == "Deployment" && ref.Name == d.Name && ref.UID == d.UID
}

func heldSpec(holder string, renewed time.Time) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(holder),
		LeaseDurationSeconds: ptr.To[int32](15),
		AcquireTime:          &metav1.MicroTime{Time: renewed},
		RenewTime:            &metav1.MicroTime{Time: renewed},
	}
}

// TestSchedulerLeasesBelongToTheirDeployments: each shard's Lease is owned
// by its scheduler Deployment, so that the garbage collector removes it with
// the Deployment; the elector keeps that owner; and a Lease a scheduler
// created again after its shard was removed is deleted once released.
func TestSchedulerLeasesBelongToTheirDeployments(t *testing.T) {
	ns := "leases"
	ensureNamespace(t, ns)
	ctx := context.Background()
	// Shard 1's scheduler started before the operator made its Lease
	// (or an older operator made none): it is adopted as it is.
	early := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: SchedulerLeaseName(1)},
		Spec:       heldSpec("scheduler-1-early", time.Now()),
	}
	if err := k8sClient.Create(ctx, early); err != nil {
		t.Fatal(err)
	}

	op := startOperator(t, ns, ShardPolicy{Fixed: 2})
	deps := map[string]appsv1.Deployment{}
	eventually(t, 10*time.Second, "2 scheduler Deployments and their owned Leases", func() (bool, error) {
		deps = schedulerDeployments(t, ns)
		if len(deps) != 2 {
			return false, nil
		}
		for name, d := range deps {
			l, err := getLease(t, ns, name)
			if err != nil || !ownedBy(l, &d) {
				return false, err
			}
		}
		return true, nil
	})
	for shard, name := range []string{SchedulerLeaseName(0), SchedulerLeaseName(1)} {
		l, _ := getLease(t, ns, name)
		if l.Labels[ManagedByLabel] != managedBy || l.Labels[monitoringv1alpha1.ShardLabel] != []string{"0", "1"}[shard] {
			t.Errorf("Lease %s has labels %v, want the operator's and its shard's", name, l.Labels)
		}
		if len(l.OwnerReferences) != 1 {
			t.Errorf("Lease %s has owners %v, want its Deployment only", name, l.OwnerReferences)
		}
	}
	if l, _ := getLease(t, ns, SchedulerLeaseName(1)); ptr.Deref(l.Spec.HolderIdentity, "") != "scheduler-1-early" {
		t.Errorf("adopting Lease 1 changed its holder to %q", ptr.Deref(l.Spec.HolderIdentity, ""))
	}

	// The schedulers' elector (client-go's LeaseLock) takes and renews the
	// operator's Lease without dropping its owner.
	cs, err := kubernetes.NewForConfig(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: SchedulerLeaseName(0)},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "scheduler-0"},
	}
	if _, _, err := lock.Get(ctx); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now())
	for range 2 { // acquire, then renew
		if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "scheduler-0", LeaseDurationSeconds: 15, AcquireTime: now, RenewTime: now}); err != nil {
			t.Fatal(err)
		}
	}
	d0 := deps[SchedulerDeploymentName(0)]
	if l, _ := getLease(t, ns, SchedulerLeaseName(0)); !ownedBy(l, &d0) || ptr.Deref(l.Spec.HolderIdentity, "") != "scheduler-0" {
		t.Errorf("after the elector's updates: owners %v, holder %q; want Deployment %s and scheduler-0",
			l.OwnerReferences, ptr.Deref(l.Spec.HolderIdentity, ""), d0.Name)
	}

	// Down to one shard: shard 1's Deployment goes (it has no Websites).
	// Its Lease would go with it through the garbage collector, which
	// envtest does not run: here it stands for one that shard 1's
	// scheduler re-created while stopping, and still holds.
	op.Stop()
	l1, _ := getLease(t, ns, SchedulerLeaseName(1))
	l1.OwnerReferences = nil
	l1.Spec = heldSpec("scheduler-1-stopping", time.Now())
	if err := k8sClient.Update(ctx, l1); err != nil {
		t.Fatal(err)
	}
	clock := clocktesting.NewFakePassiveClock(time.Now())
	startOperator(t, ns, ShardPolicy{Fixed: 1}, func(s *ShardReconciler, _ *WebsiteReconciler) { s.Clock = clock })
	eventually(t, 10*time.Second, "shard 1's Deployment to be deleted", func() (bool, error) {
		_, ok := schedulerDeployments(t, ns)[SchedulerDeploymentName(1)]
		return !ok, nil
	})
	time.Sleep(time.Second)
	if _, err := getLease(t, ns, SchedulerLeaseName(1)); err != nil {
		t.Fatalf("shard 1's Lease, still held: %v; want it kept until its holder's term ends", err)
	}
	clock.SetTime(time.Now().Add(time.Minute))
	eventually(t, 3*drainRecheck, "shard 1's expired Lease to be deleted", func() (bool, error) {
		_, err := getLease(t, ns, SchedulerLeaseName(1))
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if l, err := getLease(t, ns, SchedulerLeaseName(0)); err != nil || !ownedBy(l, &d0) {
		t.Errorf("shard 0's Lease: %v, %v; want it kept, owned by %s", err, l.OwnerReferences, d0.Name)
	}
}

func TestLeaseHeld(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	r := &ShardReconciler{Clock: clocktesting.NewFakePassiveClock(now)}
	released := heldSpec("", now)
	released.LeaseDurationSeconds = ptr.To[int32](1)
	for name, tc := range map[string]struct {
		spec coordinationv1.LeaseSpec
		want bool
	}{
		"made by the operator, never taken": {spec: coordinationv1.LeaseSpec{}, want: false},
		"renewed just now":                  {spec: heldSpec("s", now.Add(-time.Second)), want: true},
		"renewed 14s ago, 15s term":         {spec: heldSpec("s", now.Add(-14*time.Second)), want: true},
		"renewed 16s ago, 15s term":         {spec: heldSpec("s", now.Add(-16*time.Second)), want: false},
		"released by a stopping scheduler":  {spec: released, want: false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := r.leaseHeld(&coordinationv1.Lease{Spec: tc.spec}); got != tc.want {
				t.Errorf("leaseHeld = %v, want %v", got, tc.want)
			}
		})
	}
}
