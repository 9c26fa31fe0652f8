package main

import (
	"context"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// operatorLeaseName is the operator's leader election Lease.
const operatorLeaseName = "webmon-operator.monitoring.webmon.dev"

// ownedLeaseLock is client-go's Lease lock whose Lease is owned by the
// operator's Deployment, so that uninstalling removes it: the Lease it
// creates carries the owner reference, even one created again while the
// Deployment is being deleted (the garbage collector then removes it at
// once), and a Lease found without it is given it once. client-go's lock
// keeps the metadata of the Lease it updates.
type ownedLeaseLock struct {
	*resourcelock.LeaseLock
	owner   metav1.OwnerReference
	adopted bool
}

var _ resourcelock.Interface = (*ownedLeaseLock)(nil)

// newOwnedLeaseLock builds the lock as controller-runtime would: its own
// client, with a timeout under the renew deadline so that one hung request
// does not cost the lead.
func newOwnedLeaseLock(cfg *rest.Config, namespace, name string, owner metav1.OwnerReference) (*ownedLeaseLock, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	cfg = rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election")
	cfg.Timeout = 5 * time.Second // half controller-runtime's 10 s renew deadline
	c, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	owner.BlockOwnerDeletion = nil // the Lease need not hold the Deployment back
	return &ownedLeaseLock{
		LeaseLock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
			Client:     c,
			LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
		},
		owner: owner,
	}, nil
}

// Get adopts the Lease, once, before reading it.
func (l *ownedLeaseLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	if !l.adopted {
		if err := l.adopt(ctx); err != nil {
			return nil, nil, err
		}
	}
	return l.LeaseLock.Get(ctx)
}

func (l *ownedLeaseLock) adopt(ctx context.Context) error {
	leases := l.Client.Leases(l.LeaseMeta.Namespace)
	lease, err := leases.Get(ctx, l.LeaseMeta.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // Create sets the owner
	}
	if err != nil {
		return err
	}
	for _, ref := range lease.OwnerReferences {
		if ref.UID == l.owner.UID {
			l.adopted = true
			return nil
		}
	}
	lease.OwnerReferences = append(lease.OwnerReferences, l.owner)
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("adopting Lease %s: %w", l.Describe(), err)
	}
	l.adopted = true
	return nil
}

// Create creates the Lease with the owner reference, then reads it back so
// that the next Update starts from it.
func (l *ownedLeaseLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: l.LeaseMeta.Name, Namespace: l.LeaseMeta.Namespace, Labels: l.Labels,
			OwnerReferences: []metav1.OwnerReference{l.owner},
		},
		Spec: resourcelock.LeaderElectionRecordToLeaseSpec(&ler),
	}
	if _, err := l.Client.Leases(lease.Namespace).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		return err
	}
	l.adopted = true
	_, _, err := l.LeaseLock.Get(ctx)
	return err
}

// lockOrNil keeps a nil lock a nil interface: controller-runtime then
// builds its own.
func lockOrNil(l *ownedLeaseLock) resourcelock.Interface {
	if l == nil {
		return nil
	}
	return l
}
