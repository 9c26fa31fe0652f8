package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/webmon-dev/webmon/test/testbed"
)

// TestRenderedManifestsDryRun: a real kube-apiserver accepts every object
// the chart renders, with the defaults and with every feature on, in a
// server-side dry run with strict field validation; and helm installs the
// chart, prints its notes, and uninstalls it leaving none of its objects.
func TestRenderedManifestsDryRun(t *testing.T) {
	env, cfg, stop, err := testbed.StartEnvtest()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	// The chart's own CRDs (the same as the generated ones the test bed
	// installs: applying them is an update that changes nothing), and
	// stand-ins for the Prometheus Operator's and KEDA's.
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(chartDir, "crds"), filepath.Join("testdata", "stand-in-crds.yaml")},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, ns := range []string{namespace, "shop", "billing"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, args...)
			accepted := 0
			for _, obj := range objs {
				if err := c.Create(ctx, obj, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
					t.Errorf("%s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
					continue
				}
				accepted++
			}
			t.Logf("%d of %d objects accepted", accepted, len(objs))
		})
	}

	t.Run("install and uninstall", func(t *testing.T) {
		admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		kubeconfig, err := admin.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		kubeconfigFile := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
		// envtest runs no controllers: the migrate Job would never finish.
		helmArgs := append([]string{"--kubeconfig", kubeconfigFile, "--namespace", namespace}, allFeatures...)
		out, err := runHelm(t, append([]string{"install", release, chartDir, "--no-hooks"}, helmArgs...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"kubectl apply -f -", "kind: Website,", "kubectl get websites", "/webmon history default/example", "shop, billing"} {
			if !strings.Contains(out, want) {
				t.Errorf("the notes do not say %q:\n%s", want, out)
			}
		}
		// The notes' example Website is one the API accepts.
		example := regexp.MustCompile(`echo '([^']+)'`).FindStringSubmatch(out)
		if example == nil {
			t.Fatalf("no example Website in the notes:\n%s", out)
		}
		ws := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(example[1]), &ws.Object); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, ws, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
			t.Errorf("the notes' example Website: %v", err)
		}
		objs := render(t, allFeatures...)
		for _, obj := range objs {
			if _, hook := obj.GetAnnotations()["helm.sh/hook"]; hook {
				continue
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopy()); err != nil {
				t.Errorf("after install, %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
		if _, err := runHelm(t, "uninstall", release, "--kubeconfig", kubeconfigFile, "--namespace", namespace, "--wait"); err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); !apierrors.IsNotFound(err) {
				t.Errorf("after uninstall, %s %s/%s: %v, want it gone", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
	})
}
