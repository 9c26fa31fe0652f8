package main

import (
	"flag"
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// The endpoints every component serves, unless told otherwise.
const (
	defaultMetricsAddr = ":8080"
	defaultProbeAddr   = ":8081"
)

// managerOptions are what the components built on a controller-runtime
// manager (operator, scheduler) share: leader election, endpoints, the
// client's rate against the API server, and logging.
type managerOptions struct {
	leaderElect  bool
	metricsAddr  string
	probeAddr    string
	pprofAddr    string
	kubeAPIQPS   float32
	kubeAPIBurst int
	zap          zap.Options
}

// addFlags registers the flags; --leader-elect only with its help text,
// for the components that elect a leader.
func (m *managerOptions) addFlags(fs *pflag.FlagSet, leaderElectHelp string) {
	if leaderElectHelp != "" {
		fs.BoolVar(&m.leaderElect, "leader-elect", m.leaderElect, leaderElectHelp)
	}
	fs.StringVar(&m.metricsAddr, "metrics-bind-address", m.metricsAddr, "address of the metrics endpoint; 0 disables it")
	fs.StringVar(&m.probeAddr, "health-probe-bind-address", m.probeAddr, "address of the health probes; 0 disables them")
	fs.StringVar(&m.pprofAddr, "pprof-bind-address", "", "address of Go's profiling endpoints (/debug/pprof/), for diagnosis; off unless set")
	fs.Float32Var(&m.kubeAPIQPS, "kube-api-qps", m.kubeAPIQPS, "queries per second to the Kubernetes API, a shared resource")
	fs.IntVar(&m.kubeAPIBurst, "kube-api-burst", m.kubeAPIBurst, "burst of queries to the Kubernetes API")
	zapFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	m.zap.BindFlags(zapFlags)
	fs.AddGoFlagSet(zapFlags)
}

// setUp installs the logger and returns webmon's scheme and the kubeconfig
// with the configured rate.
func (m *managerOptions) setUp() (*runtime.Scheme, *rest.Config, error) {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&m.zap)))
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = m.kubeAPIQPS, m.kubeAPIBurst
	return scheme, cfg, nil
}
