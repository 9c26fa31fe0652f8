package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// StartEnvtest starts etcd and kube-apiserver from the cached binaries,
// with webmon's generated CRDs installed, and returns a stop function that
// reports its own failure. On error nothing is left running.
func StartEnvtest() (*envtest.Environment, *rest.Config, func(), error) {
	if err := UseEnvtestAssets(); err != nil {
		return nil, nil, nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		// envtest leaves etcd and kube-apiserver running when a later step
		// of Start, such as installing the CRDs, fails.
		return nil, nil, nil, errors.Join(fmt.Errorf("starting envtest: %w", err), env.Stop())
	}
	stop := func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	return env, cfg, stop, nil
}

// SampleWebsites decodes, strictly, every Website in config/samples, by
// file name: the files users copy first.
func SampleWebsites() (map[string]*monitoringv1alpha1.Website, error) {
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "config", "samples", "monitoring_*.yaml"))
	if err != nil {
		return nil, err
	}
	samples := make(map[string]*monitoringv1alpha1.Website, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ws := &monitoringv1alpha1.Website{}
		if err := yaml.UnmarshalStrict(b, ws); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		samples[strings.TrimSuffix(filepath.Base(f), ".yaml")] = ws
	}
	return samples, nil
}
