// Package testbed finds the real servers webmon's tests run against: the
// cached control plane binaries built by hack/install-controlplane.sh and
// the hack/ scripts that start PostgreSQL. Nothing here is a mock.
package testbed

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// RepoRoot is the root of the webmon repository this package was built from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Tools are the paths of the local control plane's binaries.
type Tools struct {
	// K8sBin holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kubectl; it is envtest's KUBEBUILDER_ASSETS.
	K8sBin string
	// Helm is the helm binary.
	Helm string
	// Kwok is the kwok binary and KwokStages the folder of its stage files.
	Kwok, KwokStages string
}

var (
	toolsOnce sync.Once
	tools     Tools
	toolsErr  error
)

// LocateTools returns where the control plane's binaries are: from the
// environment `make` sets, else from hack/install-controlplane.sh, the one
// place that knows the pinned versions. It checks they were built and says
// how to build them if not.
func LocateTools() (Tools, error) {
	toolsOnce.Do(func() {
		env := map[string]string{}
		for _, k := range []string{"WEBMON_K8S_BIN", "WEBMON_HELM", "WEBMON_KWOK", "WEBMON_KWOK_STAGES"} {
			env[k] = os.Getenv(k)
		}
		if env["WEBMON_K8S_BIN"] == "" {
			out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "install-controlplane.sh"), "--print-env").Output()
			if err != nil {
				toolsErr = fmt.Errorf("locating the control plane binaries: %w", err)
				return
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					env[k] = v
				}
			}
		}
		tools = Tools{K8sBin: env["WEBMON_K8S_BIN"], Helm: env["WEBMON_HELM"], Kwok: env["WEBMON_KWOK"], KwokStages: env["WEBMON_KWOK_STAGES"]}
		for _, bin := range []string{"etcd", "kube-apiserver"} {
			if _, err := os.Stat(filepath.Join(tools.K8sBin, bin)); err != nil {
				toolsErr = fmt.Errorf("%s is not built in %s: run `make controlplane-tools` (or hack/install-controlplane.sh)", bin, tools.K8sBin)
				return
			}
		}
	})
	return tools, toolsErr
}

// UseEnvtestAssets points envtest at the cached etcd and kube-apiserver
// unless KUBEBUILDER_ASSETS already says where they are.
func UseEnvtestAssets() error {
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		return nil
	}
	t, err := LocateTools()
	if err != nil {
		return err
	}
	return os.Setenv("KUBEBUILDER_ASSETS", t.K8sBin)
}
