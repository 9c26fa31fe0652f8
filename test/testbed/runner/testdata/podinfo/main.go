// Command podinfo stands in for a webmon component in the runner's tests:
// it reports what its pod gave it (args, environment, the files named by
// --file, and what the API server says of its credentials) as JSON in
// --report, then serves /readyz on --metrics-bind-address until SIGTERM, or
// exits at once with --exit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

// Report is what podinfo found.
type Report struct {
	Args  []string          `json:"args"`
	Env   map[string]string `json:"env"`
	Files map[string]string `json:"files"`
	// User is the name the API server authenticated the process as.
	User string `json:"user"`
	// ConfigMap is the data of --configmap, read with those credentials.
	ConfigMap map[string]string `json:"configMap"`
	// ListSecrets is the error listing Secrets, which RBAC should forbid.
	ListSecrets string   `json:"listSecrets"`
	Errors      []string `json:"errors,omitempty"`
}

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var paths files
	report := flag.String("report", "", "where to write the report")
	flag.Var(&paths, "file", "a file whose content to report (repeatable)")
	configMap := flag.String("configmap", "", "a ConfigMap of the pod's namespace to read")
	listen := flag.String("metrics-bind-address", "", "address to serve /readyz on")
	exit := flag.Int("exit", -1, "exit with this code after reporting instead of serving")
	flag.String("greeting", "", "only reported")
	flag.Parse()

	r := Report{Args: os.Args[1:], Env: map[string]string{}, Files: map[string]string{}}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		r.Env[k] = v
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			r.Errors = append(r.Errors, err.Error())
		}
		r.Files[p] = string(b)
	}
	if err := r.askAPIServer(*configMap); err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	if err := write(*report, r); err != nil {
		fmt.Fprintln(os.Stderr, "podinfo:", err)
		os.Exit(2)
	}
	if *exit >= 0 {
		fmt.Printf("podinfo: exiting with %d\n", *exit)
		os.Exit(*exit)
	}
	serve(*listen)
}

func (r *Report) askAPIServer(configMap string) error {
	cfg, err := config.GetConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	r.User = review.Status.UserInfo.Username
	ns := r.Env["POD_NAMESPACE"]
	if configMap != "" {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, configMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		r.ConfigMap = cm.Data
	}
	if _, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		r.ListSecrets = err.Error()
	}
	return nil
}

// write writes the report whole, so that a reader never sees half of it.
func write(path string, r Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), ".report.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serve(addr string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "podinfo:", err)
			os.Exit(2)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(os.Stderr, "podinfo:", err)
			}
		}()
		fmt.Printf("podinfo: serving on %s\n", l.Addr())
	}
	<-ctx.Done()
	fmt.Println("podinfo: got SIGTERM")
}
