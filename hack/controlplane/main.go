// Command controlplane runs a full local Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok with one fake
// node) in the foreground until interrupted, then stops it in order. Once
// it is ready it prints `export KUBECONFIG=...` on stdout.
//
//	go run ./hack/controlplane --dir /tmp/webmon-cp
//	export KUBECONFIG=/tmp/webmon-cp/kubeconfig
//
// With --local-pods, kwok leaves the selected pods to a local runner
// (hack/runner), which runs them as processes: the demo passes
// app.kubernetes.io/name=webmon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/webmon-dev/webmon/test/testbed/controlplane"
)

func main() {
	dir := flag.String("dir", filepath.Join(os.TempDir(), "webmon-controlplane"), "folder for state, logs and the kubeconfig")
	localPods := flag.String("local-pods", "", "label selector of the pods a local runner runs (hack/runner); kwok plays the others. Empty: kwok plays every pod")
	flag.Parse()
	if err := run(*dir, *localPods); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(dir, localPods string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := freshDir(dir); err != nil {
		return err
	}
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir, Log: os.Stderr, LocalPods: localPods})
	if err != nil {
		return err
	}
	fmt.Printf("export KUBECONFIG=%s\n", cp.Kubeconfig)
	fmt.Fprintln(os.Stderr, "control plane running; logs in", filepath.Join(dir, "logs"), "- Ctrl-C stops it")
	<-ctx.Done()
	return cp.Stop()
}

// marker names the file that says a folder is this command's own.
const marker = ".webmon-controlplane"

// freshDir empties dir for a new run: etcd data from an earlier run would
// carry objects signed by that run's keys. It only ever empties a folder
// that is missing, empty, or made by an earlier run of this command.
func freshDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("--dir %s is not empty and was not made by this command: choose another folder", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), nil, 0o600)
}
