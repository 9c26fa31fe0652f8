package checker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Secret lookups are cached for a minute, so that a Website checked every
// few seconds costs one read a minute and a rotated Secret is picked up
// within one; failed lookups for ten seconds. See docs/design/secrets.md.
const (
	secretTTL       = time.Minute
	secretFailedTTL = 10 * time.Second
)

// secretValues reads header values from Secrets with get, one Secret at a
// time, never list or watch: the checker cannot enumerate Secrets, and
// keeps in memory only those that Websites reference.
type secretValues struct {
	reader client.Reader
	clock  clock.PassiveClock

	mu      sync.Mutex
	entries map[types.NamespacedName]secretEntry
	group   singleflight.Group
}

type secretEntry struct {
	data    map[string][]byte
	err     error
	expires time.Time
}

func newSecretValues(reader client.Reader, clk clock.PassiveClock) *secretValues {
	return &secretValues{reader: reader, clock: clk, entries: map[types.NamespacedName]secretEntry{}}
}

// value is the value of key in the Secret; its errors name the Secret and
// key, never a value.
func (s *secretValues) value(ctx context.Context, namespace, name, key string) (string, error) {
	ref := types.NamespacedName{Namespace: namespace, Name: name}
	now := s.clock.Now()
	s.mu.Lock()
	e, ok := s.entries[ref]
	s.mu.Unlock()
	if !ok || now.After(e.expires) {
		v, _, _ := s.group.Do(ref.String(), func() (any, error) {
			return s.fetch(ctx, ref), nil
		})
		e = v.(secretEntry)
	}
	if e.err != nil {
		return "", e.err
	}
	v, ok := e.data[key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ref, key)
	}
	return string(v), nil
}

func (s *secretValues) fetch(ctx context.Context, ref types.NamespacedName) secretEntry {
	var secret corev1.Secret
	err := s.reader.Get(ctx, ref, &secret)
	e := secretEntry{data: secret.Data, expires: s.clock.Now().Add(secretTTL)}
	if err != nil {
		e.data, e.expires = nil, s.clock.Now().Add(secretFailedTTL)
		switch {
		case apierrors.IsNotFound(err):
			e.err = fmt.Errorf("secret %s not found", ref)
		case apierrors.IsForbidden(err):
			e.err = fmt.Errorf("the checker may not read Secrets in namespace %s: add it to the checker's secret namespaces (Helm value checker.secretNamespaces)", ref.Namespace)
		default:
			e.err = fmt.Errorf("reading secret %s: %w", ref, err)
		}
	}
	s.mu.Lock()
	s.entries[ref] = e
	// Forget expired entries now and then, so that Secrets no longer
	// referenced do not stay in memory.
	if len(s.entries) > 64 {
		now := s.clock.Now()
		for k, v := range s.entries {
			if now.After(v.expires) {
				delete(s.entries, k)
			}
		}
	}
	s.mu.Unlock()
	return e
}
