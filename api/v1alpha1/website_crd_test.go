package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
)

// k8sClient talks straight to a real kube-apiserver (envtest) on which the
// generated CRD is installed: what it accepts is what users' clusters accept.
var k8sClient client.Client

func TestMain(m *testing.M) {
	os.Exit(runWithEnvtest(m))
}

func runWithEnvtest(m *testing.M) int {
	if err := testbed.UseEnvtestAssets(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(testbed.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// Stop even when Start fails: envtest leaves etcd and kube-apiserver
	// running if, say, installing the CRDs fails.
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	scheme := runtime.NewScheme()
	if err := monitoringv1alpha1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func newWebsite(name string, urls ...monitoringv1alpha1.WebsiteURL) *monitoringv1alpha1.Website {
	return &monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       monitoringv1alpha1.WebsiteSpec{URLs: urls},
	}
}

func TestCreateAndReadBack(t *testing.T) {
	ctx := t.Context()
	ws := newWebsite("shop", "https://shop.example.com/", "https://shop.example.com/health")
	ws.Spec.Interval = metav1.Duration{Duration: 30 * time.Second}
	if err := k8sClient.Create(ctx, ws); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), ws) })

	got := &monitoringv1alpha1.Website{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(ws), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ws.Spec, got.Spec); diff != "" {
		t.Errorf("spec read back differs (-want +got):\n%s", diff)
	}

	// The status subresource is separate from the spec.
	got.Status.State = monitoringv1alpha1.WebsiteStateUp
	got.Status.ObservedGeneration = got.Generation
	if err := k8sClient.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	again := &monitoringv1alpha1.Website{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(ws), again); err != nil {
		t.Fatal(err)
	}
	if again.Status.State != monitoringv1alpha1.WebsiteStateUp || again.Generation != got.Generation {
		t.Errorf("after a status update: state=%q generation=%d, want Up and generation %d unchanged",
			again.Status.State, again.Generation, got.Generation)
	}
}

func TestIntervalDefaultsTo60s(t *testing.T) {
	ctx := t.Context()
	ws := newWebsite("defaults", "http://example.com/")
	if err := k8sClient.Create(ctx, ws); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), ws) })
	if ws.Spec.Interval.Duration != time.Minute {
		t.Errorf("interval = %v, want the 60s default", ws.Spec.Interval.Duration)
	}
}

// TestSamplesAreAccepted creates every sample in config/samples, the files
// users copy first.
func TestSamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testbed.RepoRoot(), "config", "samples", "monitoring_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found in config/samples (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ws := &monitoringv1alpha1.Website{}
			if err := yaml.UnmarshalStrict(b, ws); err != nil {
				t.Fatal(err)
			}
			ws.Name = "sample-" + ws.Name
			ws.Namespace = "default"
			if err := k8sClient.Create(t.Context(), ws); err != nil {
				t.Fatal(err)
			}
			_ = k8sClient.Delete(context.Background(), ws)
		})
	}
}

// TestAdmissionRejectsInvalidWebsites checks that the apiserver itself turns
// bad Websites away, with a message that names the problem.
func TestAdmissionRejectsInvalidWebsites(t *testing.T) {
	tests := map[string]struct {
		website *monitoringv1alpha1.Website
		want    string
	}{
		"no URLs": {
			website: newWebsite("no-urls"),
			want:    "spec.urls",
		},
		"not http": {
			website: newWebsite("ftp", "ftp://files.example.com/"),
			want:    "must be an absolute http:// or https:// URL",
		},
		"relative URL": {
			website: newWebsite("relative", "/health/check"),
			want:    "must be an absolute http:// or https:// URL",
		},
		"duplicate URL": {
			website: newWebsite("dup", "https://a.example.com/", "https://a.example.com/"),
			want:    "Duplicate value",
		},
		"interval too short": {
			website: func() *monitoringv1alpha1.Website {
				ws := newWebsite("fast", "https://a.example.com/")
				ws.Spec.Interval = metav1.Duration{Duration: time.Second}
				return ws
			}(),
			want: "interval must be at least 5s",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := k8sClient.Create(t.Context(), tc.website)
			if err == nil {
				_ = k8sClient.Delete(context.Background(), tc.website)
				t.Fatalf("created; want rejection mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rejected with %q; want a message mentioning %q", err, tc.want)
			}
		})
	}
}
