package runner

import (
	"context"
	"fmt"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// kubeconfigTokenTTL outlives any test or demo run, so the kubeconfig's
// token is never refreshed.
const kubeconfigTokenTTL = 24 * 60 * 60

// wantsCredentials reports whether any container mounts a ServiceAccount
// token: the apiserver's ServiceAccount admission mounts one in every
// container unless automountServiceAccountToken says not to.
func (w *podWorker) wantsCredentials() bool {
	for _, c := range w.all() {
		if w.mountsToken(c.spec) {
			return true
		}
	}
	return false
}

func (w *podWorker) mountsToken(c corev1.Container) bool {
	for _, m := range c.VolumeMounts {
		for _, v := range w.pod.Spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					return true
				}
			}
		}
	}
	return false
}

// writeKubeconfig writes a kubeconfig that acts as the pod's
// ServiceAccount, with a token bound to the pod: the process uses it in
// place of the in-cluster config, whose fixed paths it cannot see.
func (w *podWorker) writeKubeconfig(ctx context.Context) (string, error) {
	token, err := w.requestToken(ctx, nil, kubeconfigTokenTTL)
	if err != nil {
		return "", err
	}
	cfg := w.r.opts.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: w.r.caData,
		TLSServerName:            cfg.ServerName,
		InsecureSkipTLSVerify:    cfg.Insecure,
	}
	kc.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["pod"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "pod", Namespace: w.pod.Namespace}
	kc.CurrentContext = "pod"
	path := filepath.Join(w.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, nil
}

// writeToken writes a projected ServiceAccount token.
func (w *podWorker) writeToken(ctx context.Context, dir string, p *corev1.ServiceAccountTokenProjection, mode *int32) error {
	var audiences []string
	if p.Audience != "" {
		audiences = []string{p.Audience}
	}
	ttl := int64(60 * 60)
	if p.ExpirationSeconds != nil {
		ttl = *p.ExpirationSeconds
	}
	token, err := w.requestToken(ctx, audiences, ttl)
	if err != nil {
		return err
	}
	return writeFile(dir, p.Path, []byte(token), nil, mode)
}

// requestToken asks the TokenRequest API for a token of the pod's
// ServiceAccount, bound to the pod so that it dies with it.
func (w *podWorker) requestToken(ctx context.Context, audiences []string, ttl int64) (string, error) {
	sa := w.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := w.r.cs.CoreV1().ServiceAccounts(w.pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: ptr.To(ttl),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: w.pod.Name, UID: w.pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token of service account %s/%s: %w", w.pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}
