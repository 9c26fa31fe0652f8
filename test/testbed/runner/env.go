package runner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// localIP is the pod's and the node's IP: every process is on loopback.
const localIP = "127.0.0.1"

// envVars is an environment in the order its variables were first set.
type envVars struct {
	names  []string
	values map[string]string
}

func newEnv() *envVars { return &envVars{values: map[string]string{}} }

func (e *envVars) set(name, value string) {
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
}

func (e *envVars) lookup(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

// with is e overridden by o.
func (e *envVars) with(o *envVars) *envVars {
	out := newEnv()
	for _, env := range []*envVars{e, o} {
		for _, n := range env.names {
			out.set(n, env.values[n])
		}
	}
	return out
}

func (e *envVars) list() []string {
	out := make([]string, 0, len(e.names))
	for _, n := range e.names {
		out = append(out, n+"="+e.values[n])
	}
	return out
}

// expand replaces $(NAME) in s with NAME's value, as Kubernetes expands
// command, args and env values: $$ is a literal $, and a reference to a
// variable that is not defined stays as written.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := lookup(ref[2 : len(ref)-1]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// envFor is the container's own environment, as the kubelet builds it:
// envFrom first, then env, each value expanded against what came before.
func (w *podWorker) envFor(c corev1.Container) (*envVars, error) {
	objs := newObjects(w.r.ctx, w.r.cs, w.pod.Namespace)
	env := newEnv()
	for _, from := range c.EnvFrom {
		data, err := objs.envFrom(from)
		if err != nil {
			return nil, err
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			if name := from.Prefix + k; validEnvName(name) {
				env.set(name, string(data[k]))
			}
		}
	}
	for _, v := range c.Env {
		if v.ValueFrom == nil {
			env.set(v.Name, expand(v.Value, env.lookup))
			continue
		}
		val, ok, err := w.valueFrom(objs, c, v.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", v.Name, err)
		}
		if ok {
			env.set(v.Name, val)
		}
	}
	return env, nil
}

// valueFrom resolves an env var's source; ok is false for an optional key
// that is missing, which leaves the variable unset.
func (w *podWorker) valueFrom(objs *objects, c corev1.Container, src *corev1.EnvVarSource) (val string, ok bool, err error) {
	switch {
	case src.FieldRef != nil:
		val, err = fieldValue(w.pod, src.FieldRef.FieldPath)
		return val, err == nil, err
	case src.ResourceFieldRef != nil:
		val, err = w.resourceValue(c, src.ResourceFieldRef)
		return val, err == nil, err
	case src.SecretKeyRef != nil:
		return objs.key("Secret", src.SecretKeyRef.Name, src.SecretKeyRef.Key, src.SecretKeyRef.Optional)
	case src.ConfigMapKeyRef != nil:
		return objs.key("ConfigMap", src.ConfigMapKeyRef.Name, src.ConfigMapKeyRef.Key, src.ConfigMapKeyRef.Optional)
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

// validEnvName rejects keys that cannot be environment variable names;
// the kubelet skips them too.
func validEnvName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "=\x00")
}

// fieldValue is the downward API's value of a pod field.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs":
		return localIP, nil
	}
	return "", fmt.Errorf("field %q is not supported by the local runner", path)
}

// subscript parses metadata.labels['key'].
func subscript(path, field string) (string, bool) {
	rest, ok := strings.CutPrefix(path, field+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap writes labels or annotations as the downward API does, one
// key="value" a line.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(m[k]))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// resourceValue is a container's request or limit in units of the
// divisor, rounded up; a limit that is not set is the node's allocatable,
// as with the kubelet.
func (w *podWorker) resourceValue(self corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	c := self
	if ref.ContainerName != "" && ref.ContainerName != self.Name {
		found := false
		for _, other := range append(append([]corev1.Container(nil), w.pod.Spec.InitContainers...), w.pod.Spec.Containers...) {
			if other.Name == ref.ContainerName {
				c, found = other, true
			}
		}
		if !found {
			return "", fmt.Errorf("no container %q", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resource %q is not supported", ref.Resource)
	}
	q := c.Resources.Requests[corev1.ResourceName(name)]
	if kind == "limits" {
		var set bool
		if q, set = c.Resources.Limits[corev1.ResourceName(name)]; !set {
			var err error
			if q, err = w.r.allocatable(corev1.ResourceName(name)); err != nil {
				return "", err
			}
		}
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// allocatable is the node's allocatable amount of a resource.
func (r *Runner) allocatable(name corev1.ResourceName) (resource.Quantity, error) {
	node, err := r.cs.CoreV1().Nodes().Get(r.ctx, r.opts.Node, metav1.GetOptions{})
	if err != nil {
		return resource.Quantity{}, fmt.Errorf("reading node %s: %w", r.opts.Node, err)
	}
	return node.Status.Allocatable[name], nil
}

// baseEnvLocked is what every process gets besides its pod's environment:
// PATH and TMPDIR from the runner, a HOME of its own (the runner's might
// hold an admin kubeconfig), HOSTNAME, and KUBECONFIG if the container
// mounts its ServiceAccount's token.
func (w *podWorker) baseEnvLocked(c *container) *envVars {
	env := newEnv()
	for _, k := range []string{"PATH", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env.set(k, v)
		}
	}
	env.set("HOME", filepath.Join(w.dir, "home"))
	hostname := w.pod.Name
	if w.pod.Spec.Hostname != "" {
		hostname = w.pod.Spec.Hostname
	}
	env.set("HOSTNAME", hostname)
	if w.kubeconfig != "" && w.mountsToken(c.spec) {
		env.set("KUBECONFIG", w.kubeconfig)
	}
	return env
}

// objects reads the Secrets and ConfigMaps of a namespace, each once.
type objects struct {
	ctx  context.Context
	cs   kubernetes.Interface
	ns   string
	seen map[string]map[string][]byte // kind/name -> data; nil if missing
}

func newObjects(ctx context.Context, cs kubernetes.Interface, ns string) *objects {
	return &objects{ctx: ctx, cs: cs, ns: ns, seen: map[string]map[string][]byte{}}
}

// data is a Secret's or ConfigMap's keys; found is false if it does not exist.
func (o *objects) data(kind, name string) (data map[string][]byte, found bool, err error) {
	id := kind + "/" + name
	if d, ok := o.seen[id]; ok {
		return d, d != nil, nil
	}
	switch kind {
	case "Secret":
		var s *corev1.Secret
		if s, err = o.cs.CoreV1().Secrets(o.ns).Get(o.ctx, name, metav1.GetOptions{}); err == nil {
			data = s.Data
			if data == nil {
				data = map[string][]byte{}
			}
		}
	case "ConfigMap":
		var cm *corev1.ConfigMap
		if cm, err = o.cs.CoreV1().ConfigMaps(o.ns).Get(o.ctx, name, metav1.GetOptions{}); err == nil {
			data = map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
			maps.Copy(data, cm.BinaryData)
		}
	}
	if apierrors.IsNotFound(err) {
		o.seen[id] = nil
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s %s/%s: %w", kind, o.ns, name, err)
	}
	o.seen[id] = data
	return data, true, nil
}

// object is data that must exist unless optional.
func (o *objects) object(kind, name string, optional *bool) (map[string][]byte, error) {
	data, found, err := o.data(kind, name)
	if err != nil || found || (optional != nil && *optional) {
		return data, err
	}
	return nil, fmt.Errorf("%s %q not found", strings.ToLower(kind), name)
}

func (o *objects) key(kind, name, key string, optional *bool) (string, bool, error) {
	data, err := o.object(kind, name, optional)
	if err != nil {
		return "", false, err
	}
	v, ok := data[key]
	if !ok && (optional == nil || !*optional) {
		return "", false, fmt.Errorf("key %q not found in %s %q", key, strings.ToLower(kind), name)
	}
	return string(v), ok, nil
}

func (o *objects) envFrom(from corev1.EnvFromSource) (map[string][]byte, error) {
	switch {
	case from.SecretRef != nil:
		return o.object("Secret", from.SecretRef.Name, from.SecretRef.Optional)
	case from.ConfigMapRef != nil:
		return o.object("ConfigMap", from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
	}
	return nil, nil
}
