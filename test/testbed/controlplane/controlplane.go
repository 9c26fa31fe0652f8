// Package controlplane runs a full local Kubernetes control plane from the
// binaries that hack/install-controlplane.sh builds: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, and kwok playing one node, so that
// Deployments become ReplicaSets and Pods that are scheduled and reported
// Running, with no kubelet and no container runtime. It is independent of
// webmon; the end-to-end tests and the demo start it.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/pki"
)

const (
	// NodeName is the one fake node's name.
	NodeName = "kwok-node-0"
	// serviceCIDR is the cluster's Service IP range; its first address is
	// the kubernetes Service, which the serving certificate must name.
	serviceCIDR      = "10.96.0.0/16"
	kubernetesSvcIP  = "10.96.0.1"
	startTimeout     = 90 * time.Second
	stopGrace        = 20 * time.Second
	restartGrace     = 5 * time.Second
	kwokNodeSelector = "kwok.x-k8s.io/node"
)

// Options configure a control plane.
type Options struct {
	// Dir holds its state: certificates, etcd data, logs and the kubeconfig.
	Dir string
	// Tools are the binaries; zero means testbed.LocateTools().
	Tools testbed.Tools
	// Log receives a line per step; nil discards them.
	Log io.Writer
	// LocalPods is a label selector of the pods that a local runner
	// (test/testbed/runner) runs as the node's kubelet. kwok leaves them
	// alone: the runner reports their status and deletes them once their
	// processes have stopped. Empty: kwok plays every pod.
	LocalPods string
}

// ControlPlane is a running local control plane.
type ControlPlane struct {
	// Kubeconfig is the path of an admin kubeconfig.
	Kubeconfig string
	// Config is the admin REST config.
	Config *rest.Config
	// Dir is the state folder; its logs/ holds each server's log.
	Dir string

	tools     testbed.Tools
	log       io.Writer
	localPods string
	procs     []*process // in start order
}

// Start starts every server and waits until the fake node is Ready and the
// default namespace can take pods. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.Tools.K8sBin == "" {
		if opts.Tools, err = testbed.LocateTools(); err != nil {
			return nil, err
		}
	}
	if opts.Tools.Kwok == "" {
		return nil, errors.New("kwok is not built: run `make controlplane-tools`")
	}
	cp := &ControlPlane{Dir: opts.Dir, tools: opts.Tools, log: opts.Log, localPods: opts.LocalPods}
	if cp.log == nil {
		cp.log = io.Discard
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	for _, d := range []string{"pki", "logs", "etcd", "kwok"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	files, err := cp.writePKI()
	if err != nil {
		return nil, fmt.Errorf("writing certificates: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	if err := cp.startEtcd(ctx, etcdURL, ports[1]); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx, files, etcdURL, ports[2]); err != nil {
		return nil, err
	}
	if err := cp.startControllers(files, ports[3]); err != nil {
		return nil, err
	}
	if err := cp.waitForNodeAndServiceAccount(ctx); err != nil {
		return nil, err
	}
	cp.step("control plane ready: KUBECONFIG=%s", cp.Kubeconfig)
	return cp, nil
}

// Stop stops the servers in the reverse of their start order, the
// apiserver before etcd so that it does not hang on its storage, and
// reports any that had to be killed.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for i := len(cp.procs) - 1; i >= 0; i-- {
		p := cp.procs[i]
		if p.exited() {
			continue
		}
		cp.step("stopping %s", p.name)
		errs = append(errs, p.stop(stopGrace))
	}
	cp.procs = nil
	return errors.Join(errs...)
}

// Restart stops one server (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler or kwok) as an outage would, keeps it down for `down`, and
// starts it again with the same flags and ports; it returns once the server
// serves again (etcd and kube-apiserver), or once it started (the others).
// The server is asked to stop, and killed after restartGrace: the
// apiserver waits for its clients' watches to end for as long as a minute.
func (cp *ControlPlane) Restart(ctx context.Context, name string, down time.Duration) error {
	i := slices.IndexFunc(cp.procs, func(p *process) bool { return p.name == name })
	if i < 0 {
		return fmt.Errorf("restarting %s: no such server", name)
	}
	cp.step("stopping %s for %s", name, down)
	if err := cp.procs[i].stop(restartGrace); err != nil {
		cp.step("%v", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	cp.step("starting %s again", name)
	p, err := cp.procs[i].restarted()
	if err != nil {
		return fmt.Errorf("starting %s again: %w", name, err)
	}
	cp.procs[i] = p
	if p.ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return waitFor(ctx, p, name+" ready again", p.ready)
}

// Pids are the process ids of the running servers, by name.
func (cp *ControlPlane) Pids() map[string]int {
	pids := map[string]int{}
	for _, p := range cp.procs {
		pids[p.name] = p.cmd.Process.Pid
	}
	return pids
}

// Kubectl runs the cached kubectl against this control plane.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(cp.tools.K8sBin, "kubectl"), append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w: %s", args, err, out)
	}
	return out, nil
}

func (cp *ControlPlane) step(format string, args ...any) {
	_, _ = fmt.Fprintf(cp.log, "controlplane: "+format+"\n", args...)
}

// start runs a Kubernetes server from the cached binaries, or bin if given.
func (cp *ControlPlane) start(name, bin string, args ...string) (*process, error) {
	if bin == "" {
		bin = filepath.Join(cp.tools.K8sBin, name)
	}
	cp.step("starting %s", name)
	p, err := startProcess(name, filepath.Join(cp.Dir, "logs"), bin, args...)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

type pkiFiles struct {
	caCert, servingCert, servingKey, saKey, saPub, tokens string
	token                                                 string
}

func (cp *ControlPlane) writePKI() (pkiFiles, error) {
	dir := filepath.Join(cp.Dir, "pki")
	f := pkiFiles{
		caCert: filepath.Join(dir, "ca.crt"),
		saKey:  filepath.Join(dir, "sa.key"),
		saPub:  filepath.Join(dir, "sa.pub"),
		tokens: filepath.Join(dir, "tokens.csv"),
	}
	ca, err := pki.NewCA("webmon-local-ca")
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.caCert, ca.CertPEM, 0o600); err != nil {
		return f, err
	}
	serving, err := ca.Server("kube-apiserver", "127.0.0.1", "localhost", kubernetesSvcIP,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
	if err != nil {
		return f, err
	}
	if f.servingCert, f.servingKey, err = serving.Write(dir, "apiserver"); err != nil {
		return f, err
	}

	// Service account tokens are signed with an RSA key.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return f, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return f, err
	}

	token := make([]byte, 24)
	_, _ = rand.Read(token)
	f.token = hex.EncodeToString(token)
	err = os.WriteFile(f.tokens, []byte(f.token+`,admin,admin,"system:masters"`+"\n"), 0o600)
	return f, err
}

func (cp *ControlPlane) startEtcd(ctx context.Context, clientURL string, peerPort int) error {
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	p, err := cp.start("etcd", "",
		"--name", "local",
		"--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "local="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return err
	}
	p.ready = func(ctx context.Context) (bool, error) { return httpOK(ctx, clientURL+"/health") }
	return waitFor(ctx, p, "etcd healthy", p.ready)
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, f pkiFiles, etcdURL string, port int) error {
	server := "https://127.0.0.1:" + strconv.Itoa(port)
	p, err := cp.start("kube-apiserver", "",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		"--tls-cert-file", f.servingCert, "--tls-private-key-file", f.servingKey,
		"--client-ca-file", f.caCert,
		"--token-auth-file", f.tokens,
		"--authorization-mode", "Node,RBAC",
		"--service-cluster-ip-range", serviceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", f.saPub,
		"--service-account-signing-key-file", f.saKey,
		"--cert-dir", filepath.Join(cp.Dir, "pki"),
		"--allow-privileged=true",
		"--v=0")
	if err != nil {
		return err
	}

	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: f.caCert}
	kubeconfig.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: f.token}
	kubeconfig.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin", Namespace: "default"}
	kubeconfig.CurrentContext = "local"
	cp.Kubeconfig = filepath.Join(cp.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfig, cp.Kubeconfig); err != nil {
		return err
	}
	if cp.Config, err = clientcmd.BuildConfigFromFlags("", cp.Kubeconfig); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	p.ready = func(ctx context.Context) (bool, error) {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}
	return waitFor(ctx, p, "kube-apiserver ready", p.ready)
}

func (cp *ControlPlane) startControllers(f pkiFiles, kwokPort int) error {
	if _, err := cp.start("kube-controller-manager", "",
		"--kubeconfig", cp.Kubeconfig,
		"--controllers", "*",
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file", f.saKey,
		"--root-ca-file", f.caCert,
		"--use-service-account-credentials=false"); err != nil {
		return err
	}
	if _, err := cp.start("kube-scheduler", "",
		"--kubeconfig", cp.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0"); err != nil {
		return err
	}
	args := []string{
		"--kubeconfig", cp.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", kwokNodeSelector + "=fake",
		"--server-address", "127.0.0.1:" + strconv.Itoa(kwokPort),
		"--node-ip", "127.0.0.1",
	}
	stages, err := cp.kwokStages()
	if err != nil {
		return err
	}
	for _, stage := range stages {
		args = append(args, "--config", stage)
	}
	_, err = cp.start("kwok", cp.tools.Kwok, args...)
	return err
}

func (cp *ControlPlane) waitForNodeAndServiceAccount(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{kwokNodeSelector: "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "type": "kwok"},
		},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", NodeName, err)
	}
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := cp.checkAlive(); err != nil {
			return false, err
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil || !nodeReady(n) {
			return false, nil
		}
		// The service account controller has run once the default
		// namespace has its ServiceAccount; pods need it.
		_, err = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for node %s to be Ready and the default ServiceAccount: %w", NodeName, err)
	}
	return nil
}

// checkAlive reports a server that exited on its own, with its log.
func (cp *ControlPlane) checkAlive() error {
	for _, p := range cp.procs {
		if p.exited() {
			return fmt.Errorf("%s exited (%w); its log ends:\n%s", p.name, p.err, p.logTail())
		}
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitFor polls cond until it holds, the process dies, or ctx ends.
func waitFor(ctx context.Context, p *process, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("%s exited (%w); its log ends:\n%s", p.name, p.err, p.logTail())
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// httpOK reports whether GET url answers 200; a connection error means "not yet".
func httpOK(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, nil
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// freePorts finds n distinct free loopback ports. Another process could
// take one before we use it; on this single-user machine that has not been
// seen, and a start that fails reports which server could not bind.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer func() { _ = l.Close() }()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
