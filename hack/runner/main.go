// Command runner plays the kubelet of the local control plane's kwok node
// for webmon's own pods: it runs them as local processes of the webmon
// binary until interrupted, then stops them all (see test/testbed/runner).
// The control plane must leave those pods to it: start it with
// controlplane.Options.LocalPods set to the same selector.
//
//	go build -o bin/webmon ./cmd/webmon && go build -o bin/runner ./hack/runner
//	bin/runner --kubeconfig /tmp/webmon-controlplane/kubeconfig --binary bin/webmon --dir /tmp/webmon-runner
//
// Each container's log is in <dir>/logs/<namespace>_<pod>_<container>.log.
// Run the built binary rather than `go run`, which does not pass SIGTERM on.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/webmon-dev/webmon/test/testbed/controlplane"
	"github.com/webmon-dev/webmon/test/testbed/runner"
)

func main() {
	// A flag set of its own: a dependency registers --kubeconfig globally.
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig of the control plane (default $KUBECONFIG)")
	binary := fs.String("binary", "bin/webmon", "the local webmon binary every container runs")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "webmon-runner"), "folder for the containers' logs and the pods' volumes")
	selector := fs.String("selector", runner.DefaultSelector, "label selector of the pods to run")
	node := fs.String("node", controlplane.NodeName, "node whose pods to run")
	grace := fs.Duration("max-grace-period", 30*time.Second, "cap on a pod's termination grace period")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := run(*kubeconfig, *binary, *dir, *selector, *node, *grace, zapOpts); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, binary, dir, selector, node string, grace time.Duration, zapOpts zap.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if kubeconfig == "" {
		return fmt.Errorf("--kubeconfig: none given and $KUBECONFIG is empty")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("--binary %s is not an executable: build it with `go build -o %s ./cmd/webmon`", binary, binary)
	}
	r, err := runner.Start(ctx, runner.Options{
		Config: cfg, Binary: bin, Dir: dir, Selector: selector, Node: node,
		MaxGracePeriod: grace, Log: zap.New(zap.UseFlagOptions(&zapOpts)),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "runner: running pods of node %s matching %s; logs in %s\n", node, selector, filepath.Join(dir, "logs"))
	<-ctx.Done()
	return r.Stop()
}
