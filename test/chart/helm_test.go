package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/webmon-dev/webmon/test/testbed"
)

// The release the tests render. The namespace is not kustomize's
// webmon-system, so that a namespaced object that kept it would show.
const (
	release   = "webmon"
	namespace = "monitoring"
	fullname  = "webmon"
)

var (
	chartDir    = filepath.Join(testbed.RepoRoot(), "charts", "webmon")
	allFeatures = []string{"--values", filepath.Join("testdata", "all-features.yaml")}
)

// runHelm runs the test bed's helm and returns its output; an error
// carries what helm printed on stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	tools, err := testbed.LocateTools()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tools.Helm); err != nil {
		t.Fatalf("helm is not built at %s: run `make controlplane-tools`", tools.Helm)
	}
	cmd := exec.CommandContext(t.Context(), tools.Helm, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// manifests are the objects helm template printed, hooks included.
type manifests []*unstructured.Unstructured

// render runs helm template on the chart with extra arguments (--set,
// --values) and decodes what it prints.
func render(t *testing.T, args ...string) manifests {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeManifests(out string) (manifests, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs manifests
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "{}" {
			continue // only comments
		}
		// As the API machinery decodes: integers stay int64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		objs = append(objs, u)
	}
}

// of returns the objects of a kind.
func (m manifests) of(kind string) manifests {
	var objs manifests
	for _, u := range m {
		if u.GetKind() == kind {
			objs = append(objs, u)
		}
	}
	return objs
}

// find returns the object of a kind, namespace and name, or nil.
func (m manifests) find(kind, ns, name string) *unstructured.Unstructured {
	for _, u := range m.of(kind) {
		if u.GetNamespace() == ns && u.GetName() == name {
			return u
		}
	}
	return nil
}

// get decodes the object of a kind and name in the release namespace (ns
// "" for cluster-scoped kinds) into a typed object, and fails without it.
func get[T any](t *testing.T, m manifests, kind, ns, name string) *T {
	t.Helper()
	u := m.find(kind, ns, name)
	if u == nil {
		t.Fatalf("no %s %s/%s rendered", kind, ns, name)
	}
	return convert[T](t, u)
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	obj := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return obj
}

// podTemplates are the pod templates of the rendered Deployments and Jobs,
// by "Kind/name".
func (m manifests) podTemplates(t *testing.T) map[string]corev1.PodTemplateSpec {
	t.Helper()
	pods := map[string]corev1.PodTemplateSpec{}
	for _, u := range m.of("Deployment") {
		pods["Deployment/"+u.GetName()] = convert[appsv1.Deployment](t, u).Spec.Template
	}
	for _, u := range m.of("Job") {
		pods["Job/"+u.GetName()] = convert[batchv1.Job](t, u).Spec.Template
	}
	return pods
}

// flagValues are a container's --name=value arguments, by name.
func flagValues(args []string) map[string][]string {
	flags := map[string][]string{}
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if strings.HasPrefix(a, "--") {
			flags[name] = append(flags[name], value)
		}
	}
	return flags
}
