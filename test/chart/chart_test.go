package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/webmon-dev/webmon/controllers"
	"github.com/webmon-dev/webmon/test/testbed"
)

// TestChartCRDsAreGenerated: the chart installs exactly the CRDs
// controller-gen generates (`make chart-crds` copies them).
func TestChartCRDsAreGenerated(t *testing.T) {
	generated := readDir(t, filepath.Join(testbed.RepoRoot(), "config", "crd", "bases"))
	inChart := readDir(t, filepath.Join(chartDir, "crds"))
	if diff := cmp.Diff(generated, inChart); diff != "" {
		t.Errorf("charts/webmon/crds differ from config/crd/bases (-generated +chart); run `make chart-crds`:\n%s", diff)
	}
}

// TestChartRBACIsGenerated: the chart renders its roles from copies of the
// generated role files (`make chart-rbac`), and the roles it renders carry
// exactly the generated rules, the namespaced ones in the release namespace.
func TestChartRBACIsGenerated(t *testing.T) {
	root := testbed.RepoRoot()
	copies := map[string]string{
		"operator-role.yaml":        "config/rbac/role.yaml",
		"scheduler-role.yaml":       "config/rbac/scheduler/role.yaml",
		"checker-role.yaml":         "config/rbac/checker/role.yaml",
		"checker-secrets-role.yaml": "config/rbac/checker/secret_reader_role.yaml",
	}
	for chartFile, generatedFile := range copies {
		inChart, err := os.ReadFile(filepath.Join(chartDir, "files", "rbac", chartFile))
		if err != nil {
			t.Fatal(err)
		}
		generated, err := os.ReadFile(filepath.Join(root, generatedFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(inChart, generated) {
			t.Errorf("charts/webmon/files/rbac/%s differs from %s: run `make chart-rbac`", chartFile, generatedFile)
		}
	}

	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			checked := 0
			for _, file := range []string{"config/rbac/role.yaml", "config/rbac/scheduler/role.yaml", "config/rbac/checker/role.yaml"} {
				component := map[string]string{"rbac": "operator", "scheduler": "scheduler", "checker": "checker"}[filepath.Base(filepath.Dir(file))]
				for _, want := range generatedRoles(t, filepath.Join(root, file)) {
					ns := ""
					if want.GetKind() == "Role" {
						ns = namespace
					}
					got := m.find(want.GetKind(), ns, fullname+"-"+component)
					if got == nil {
						t.Errorf("%s: no %s %s/%s-%s rendered", file, want.GetKind(), ns, fullname, component)
						continue
					}
					if diff := cmp.Diff(want.Object["rules"], got.Object["rules"]); diff != "" {
						t.Errorf("%s %s: rules differ from %s (-generated +chart):\n%s", got.GetKind(), got.GetName(), file, diff)
					}
					checkBinding(t, m, got.GetKind()+"Binding", ns, got.GetName(), got.GetKind(), component)
					checked++
				}
			}
			if checked != 5 {
				t.Errorf("checked %d generated roles, want 5 (operator and scheduler: ClusterRole and Role; checker: ClusterRole)", checked)
			}
			secrets := get[rbacv1.ClusterRole](t, m, "ClusterRole", "", fullname+"-checker-secrets")
			want := generatedRoles(t, filepath.Join(root, "config/rbac/checker/secret_reader_role.yaml"))[0]
			if diff := cmp.Diff(want.Object["rules"], m.find("ClusterRole", "", secrets.Name).Object["rules"]); diff != "" {
				t.Errorf("checker-secrets rules differ (-generated +chart):\n%s", diff)
			}
			// Namespaced roles follow the release, never kustomize's namespace.
			for _, kind := range []string{"Role", "RoleBinding"} {
				for _, u := range m.of(kind) {
					if u.GetNamespace() == "webmon-system" {
						t.Errorf("%s %s kept the generated namespace webmon-system", kind, u.GetName())
					}
				}
			}
		})
	}
}

// checkBinding: a role is bound to its component's ServiceAccount, which
// the chart creates in the release namespace.
func checkBinding(t *testing.T, m manifests, kind, ns, name, roleKind, component string) {
	t.Helper()
	u := m.find(kind, ns, name)
	if u == nil {
		t.Errorf("no %s %s/%s", kind, ns, name)
		return
	}
	b := convert[rbacv1.RoleBinding](t, u) // a ClusterRoleBinding has the same fields
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: fullname + "-" + component, Namespace: namespace}}
	if diff := cmp.Diff(wantSubjects, b.Subjects); diff != "" {
		t.Errorf("%s %s subjects (-want +got):\n%s", kind, name, diff)
	}
	if b.RoleRef.Kind != roleKind || b.RoleRef.Name != name {
		t.Errorf("%s %s binds %s %s, want %s %s", kind, name, b.RoleRef.Kind, b.RoleRef.Name, roleKind, name)
	}
	if m.find("ServiceAccount", namespace, fullname+"-"+component) == nil {
		t.Errorf("%s %s binds ServiceAccount %s-%s, which is not rendered", kind, name, fullname, component)
	}
}

func TestHelmLint(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			if out, err := runHelm(t, append([]string{"lint", "--strict", chartDir, "--namespace", namespace}, args...)...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// TestRenderedPodsAreRestricted: every pod of the chart, with the defaults
// and with every feature on, runs under the restricted Pod Security
// Standard, and every long-running container serves metrics and probes on
// the addresses it is given explicitly.
func TestRenderedPodsAreRestricted(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			pods := render(t, args...).podTemplates(t)
			if len(pods) != 3 {
				t.Errorf("pod templates %v, want the operator, the checker and the migrate Job", keys(pods))
			}
			for name, pod := range pods {
				checkRestricted(t, name, pod.Spec)
				if strings.HasPrefix(name, "Job/") {
					continue
				}
				for _, c := range pod.Spec.Containers {
					checkEndpoints(t, name, c)
				}
			}
		})
	}
}

func checkRestricted(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod security context %+v, want runAsNonRoot, runAsUser 65532 and seccomp RuntimeDefault", name, psc)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s shares a host namespace", name)
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
			ptr.Deref(sc.AllowPrivilegeEscalation, true) || ptr.Deref(sc.Privileged, false) ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s container %s: security context %+v, want runAsNonRoot, a read-only root filesystem, no privilege escalation and every capability dropped", name, c.Name, sc)
		}
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s mounts host path %s", name, v.HostPath.Path)
		}
	}
}

// checkEndpoints: the addresses are explicit, so that a local runner can
// rewrite them, and the probes are where they say.
func checkEndpoints(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	for _, arg := range []string{"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("%s container %s: args %v lack %s", name, c.Name, c.Args, arg)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 8080 || ports["health"] != 8081 {
		t.Errorf("%s container %s: ports %v, want metrics 8080 and health 8081", name, c.Name, ports)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "health" {
			t.Errorf("%s container %s: want an HTTP probe on health %s, got %+v", name, c.Name, path, probe)
		}
	}
}

// TestRenderedLabels: every object carries the recommended labels, and the
// component ones the component they belong to.
func TestRenderedLabels(t *testing.T) {
	components := []string{"operator", "scheduler", "checker", "migrate"}
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			for _, u := range m {
				l := u.GetLabels()
				for k, v := range map[string]string{
					"app.kubernetes.io/name":       "webmon",
					"app.kubernetes.io/instance":   release,
					"app.kubernetes.io/part-of":    "webmon",
					"app.kubernetes.io/managed-by": "Helm",
				} {
					if l[k] != v {
						t.Errorf("%s %s: label %s=%q, want %q", u.GetKind(), u.GetName(), k, l[k], v)
					}
				}
				component, ok := l["app.kubernetes.io/component"]
				releaseWide := u.GetKind() == "ServiceMonitor" || u.GetKind() == "NetworkPolicy"
				if (!ok && !releaseWide) || (ok && !slices.Contains(components, component)) {
					t.Errorf("%s %s: component %q, want one of %v", u.GetKind(), u.GetName(), component, components)
				}
			}
			for name, pod := range m.podTemplates(t) {
				if pod.Labels["app.kubernetes.io/component"] == "" || pod.Labels["app.kubernetes.io/part-of"] != "webmon" {
					t.Errorf("%s: pod labels %v lack the component or part-of", name, pod.Labels)
				}
			}
		})
	}
}

// TestNoSecretValues: the chart creates no Secret and takes credentials only
// by reference, and values.yaml has no place for one.
func TestNoSecretValues(t *testing.T) {
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			m := render(t, args...)
			if s := m.of("Secret"); len(s) > 0 {
				t.Errorf("the chart renders %d Secrets", len(s))
			}
			credential := regexp.MustCompile(`(?i)password|username|database_url|token`)
			for name, pod := range m.podTemplates(t) {
				for _, c := range pod.Spec.Containers {
					for _, e := range c.Env {
						if credential.MatchString(e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
							t.Errorf("%s container %s: $%s is not taken from a Secret", name, c.Name, e.Name)
						}
					}
					for _, a := range c.Args {
						if regexp.MustCompile(`(?i)password=|postgres(ql)?://`).MatchString(a) {
							t.Errorf("%s container %s: argument %q carries a credential", name, c.Name, a)
						}
					}
				}
			}
		})
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	walkKeys(values, "", func(path string) {
		if regexp.MustCompile(`(?i)(password|token|dsn|credential)[^.]*$`).MatchString(path) {
			t.Errorf("values.yaml has %s: credentials come only from Secret references", path)
		}
	})
}

func walkKeys(v any, prefix string, visit func(path string)) {
	if m, ok := v.(map[string]any); ok {
		for k, child := range m {
			visit(prefix + k)
			walkKeys(child, prefix+k+".", visit)
		}
	}
}

// TestOperatorGetsSchedulerSettings: the operator is given, as flags,
// everything the scheduler Deployments it creates need, and itself as
// their owner so that uninstalling removes them.
func TestOperatorGetsSchedulerSettings(t *testing.T) {
	tests := map[string]struct {
		args    []string
		want    map[string][]string
		without []string
	}{
		"defaults": {
			want: map[string][]string{
				"leader-elect":                {"true"},
				"owner-deployment":            {fullname + "-operator"},
				"checks-per-shard":            {"5000"},
				"scheduler-image":             {"ghcr.io/webmon-dev/webmon:0.1.0"},
				"scheduler-image-pull-policy": {"IfNotPresent"},
				"scheduler-replicas":          {"1"},
				"scheduler-service-account":   {fullname + "-scheduler"},
				"scheduler-cpu-request":       {"100m"},
				"scheduler-memory-request":    {"128Mi"},
				"scheduler-memory-limit":      {"1Gi"},
				"kafka-brokers":               {"kafka:9092"},
				"kafka-topic":                 {"webmon-tasks"},
				"scheduler-env": {"WEBMON_ZAP_LOG_LEVEL=info", "WEBMON_KAFKA_TOPIC_PARTITIONS=32",
					"WEBMON_KAFKA_TOPIC_REPLICATION_FACTOR=-1", "WEBMON_KAFKA_TOPIC_RETENTION=1h"},
			},
			without: []string{"shards", "kafka-tls-secret", "kafka-sasl-mechanism", "kafka-sasl-secret"},
		},
		"all features": {
			args: append(slices.Clone(allFeatures), "--set", "image.tag=1.2.3", "--set", "scheduler.resources.requests.cpu=250m"),
			want: map[string][]string{
				"shards":                {"4"},
				"scheduler-replicas":    {"2"},
				"scheduler-image":       {"ghcr.io/webmon-dev/webmon:1.2.3"},
				"scheduler-cpu-request": {"250m"},
				"kafka-brokers":         {"kafka-0.kafka:9093,kafka-1.kafka:9093"},
				"kafka-topic":           {"tasks"},
				"kafka-tls-secret":      {"kafka-tls"},
				"kafka-tls-client-cert": {"true"},
				"kafka-sasl-mechanism":  {"SCRAM-SHA-512"},
				"kafka-sasl-secret":     {"kafka-sasl"},
				"scheduler-env": {"WEBMON_ZAP_LOG_LEVEL=info", "WEBMON_KAFKA_TOPIC_PARTITIONS=64",
					"WEBMON_KAFKA_TOPIC_REPLICATION_FACTOR=3", "WEBMON_KAFKA_TOPIC_RETENTION=30m",
					"WEBMON_KAFKA_VERSION=3.7.0", "WEBMON_KAFKA_TLS_SERVER_NAME=kafka.example.com", "WEBMON_MAX_LATENESS=10s"},
			},
			without: []string{"checks-per-shard", "min-shards", "max-shards"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := render(t, tc.args...)
			pod := m.podTemplates(t)["Deployment/"+fullname+"-operator"]
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("operator containers %v, want one", pod.Spec.Containers)
			}
			c := pod.Spec.Containers[0]
			if c.Args[0] != "operator" || len(c.Command) > 0 {
				t.Errorf("command %v args %v, want args starting with operator and the image's entrypoint", c.Command, c.Args)
			}
			flags := flagValues(c.Args)
			for flag, want := range tc.want {
				if diff := cmp.Diff(want, flags[flag]); diff != "" {
					t.Errorf("--%s (-want +got):\n%s", flag, diff)
				}
			}
			for _, flag := range tc.without {
				if v, ok := flags[flag]; ok {
					t.Errorf("--%s=%v given, want it left out", flag, v)
				}
			}
			if image := flags["scheduler-image"]; len(image) != 1 || image[0] != c.Image {
				t.Errorf("schedulers run %v, the operator %s: want one image", image, c.Image)
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
			}) {
				t.Errorf("env %v lacks POD_NAMESPACE from the pod's namespace", c.Env)
			}
		})
	}
}

// TestCheckerAutoscaling: the HPA takes its bounds and target from the
// values; KEDA's ScaledObject replaces it; without either the replicas are
// fixed. An autoscaled Deployment leaves its replicas to the autoscaler.
func TestCheckerAutoscaling(t *testing.T) {
	checker := fullname + "-checker"
	t.Run("HPA", func(t *testing.T) {
		m := render(t, "--set", "checker.autoscaling.minReplicas=3", "--set", "checker.autoscaling.maxReplicas=12",
			"--set", "checker.autoscaling.targetCPUUtilizationPercentage=55")
		hpa := get[autoscalingv2.HorizontalPodAutoscaler](t, m, "HorizontalPodAutoscaler", namespace, checker)
		if got := [2]int32{ptr.Deref(hpa.Spec.MinReplicas, 0), hpa.Spec.MaxReplicas}; got != [2]int32{3, 12} {
			t.Errorf("HPA min, max = %v, want [3 12]", got)
		}
		wantMetrics := []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](55)}}}}
		if diff := cmp.Diff(wantMetrics, hpa.Spec.Metrics); diff != "" {
			t.Errorf("HPA metrics (-want +got):\n%s", diff)
		}
		if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != checker {
			t.Errorf("HPA scales %s %s, want Deployment %s", ref.Kind, ref.Name, checker)
		}
		if d := m.find("Deployment", namespace, checker); d.Object["spec"].(map[string]any)["replicas"] != nil {
			t.Error("the autoscaled checker Deployment sets replicas: every upgrade would reset the HPA's count")
		}
		if len(m.of("ScaledObject")) > 0 {
			t.Error("a ScaledObject is rendered with KEDA off")
		}
	})
	t.Run("KEDA", func(t *testing.T) {
		m := render(t, allFeatures...)
		if len(m.of("HorizontalPodAutoscaler")) > 0 {
			t.Error("an HPA is rendered beside KEDA's ScaledObject, which makes its own")
		}
		so := m.find("ScaledObject", namespace, checker)
		if so == nil {
			t.Fatal("no ScaledObject")
		}
		spec := so.Object["spec"].(map[string]any)
		if got := [3]any{spec["minReplicaCount"], spec["maxReplicaCount"], nested(so, "spec", "scaleTargetRef", "name")}; got != [3]any{int64(3), int64(48), checker} {
			t.Errorf("ScaledObject min, max, target = %v, want [3 48 %s]", got, checker)
		}
		triggers := spec["triggers"].([]any)
		if len(triggers) != 1 {
			t.Fatalf("triggers %v, want one", triggers)
		}
		trigger := &unstructured.Unstructured{Object: triggers[0].(map[string]any)}
		wantMeta := map[string]any{
			"bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093", "consumerGroup": "checkers", "topic": "tasks",
			"lagThreshold": "500", "activationLagThreshold": "0", "offsetResetPolicy": "latest", "sasl": "scram_sha512", "tls": "enable",
		}
		if diff := cmp.Diff(wantMeta, trigger.Object["metadata"]); trigger.Object["type"] != "kafka" || diff != "" {
			t.Errorf("trigger %v, want kafka with metadata (-want +got):\n%s", trigger.Object["type"], diff)
		}
		auth := m.find("TriggerAuthentication", namespace, nested(trigger, "authenticationRef", "name").(string))
		if auth == nil {
			t.Fatalf("no TriggerAuthentication %v", nested(trigger, "authenticationRef", "name"))
		}
		wantRefs := []any{
			map[string]any{"parameter": "username", "name": "kafka-sasl", "key": "username"},
			map[string]any{"parameter": "password", "name": "kafka-sasl", "key": "password"},
			map[string]any{"parameter": "ca", "name": "kafka-tls", "key": "ca.crt"},
			map[string]any{"parameter": "cert", "name": "kafka-tls", "key": "tls.crt"},
			map[string]any{"parameter": "key", "name": "kafka-tls", "key": "tls.key"},
		}
		if diff := cmp.Diff(wantRefs, nested(auth, "spec", "secretTargetRef")); diff != "" {
			t.Errorf("TriggerAuthentication secret references (-want +got):\n%s", diff)
		}
	})
	t.Run("fixed", func(t *testing.T) {
		m := render(t, "--set", "checker.autoscaling.enabled=false", "--set", "checker.replicas=5")
		if len(m.of("HorizontalPodAutoscaler"))+len(m.of("ScaledObject")) > 0 {
			t.Error("an autoscaler is rendered with autoscaling off")
		}
		if got := m.find("Deployment", namespace, checker).Object["spec"].(map[string]any)["replicas"]; got != int64(5) {
			t.Errorf("checker replicas %v, want 5", got)
		}
	})
}

func nested(u *unstructured.Unstructured, fields ...string) any {
	v, _, _ := unstructured.NestedFieldNoCopy(u.Object, fields...)
	return v
}

// TestCheckerSecretsAccess: the checkers may get Secrets in the namespaces
// listed, through RoleBindings there, and nowhere else.
func TestCheckerSecretsAccess(t *testing.T) {
	role := fullname + "-checker-secrets"
	if n := len(render(t).of("RoleBinding")); n != 2 {
		t.Errorf("defaults render %d RoleBindings, want the operator's and the scheduler's only", n)
	}
	m := render(t, allFeatures...)
	for _, ns := range []string{"shop", "billing"} {
		b := get[rbacv1.RoleBinding](t, m, "RoleBinding", ns, role)
		if b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}) {
			t.Errorf("%s: binds %+v, want ClusterRole %s", ns, b.RoleRef, role)
		}
		if diff := cmp.Diff([]rbacv1.Subject{{Kind: "ServiceAccount", Name: fullname + "-checker", Namespace: namespace}}, b.Subjects); diff != "" {
			t.Errorf("%s: subjects (-want +got):\n%s", ns, diff)
		}
	}
	for _, u := range m.of("ClusterRoleBinding") {
		if nested(u, "roleRef", "name") == role {
			t.Errorf("ClusterRoleBinding %s grants Secrets cluster-wide", u.GetName())
		}
	}
}

// TestCheckerReachesKafkaAndPostgreSQL: TLS files and the connection string
// are mounted from their Secrets, readable by webmon's group only, and the
// flags point at them.
func TestCheckerReachesKafkaAndPostgreSQL(t *testing.T) {
	m := render(t, allFeatures...)
	pod := m.podTemplates(t)["Deployment/"+fullname+"-checker"]
	c := pod.Spec.Containers[0]
	flags := flagValues(c.Args)
	for flag, want := range map[string]string{
		"database-url-file":      "/etc/webmon/database/url",
		"kafka-tls":              "true",
		"kafka-tls-ca-file":      "/etc/webmon/kafka-tls/ca.crt",
		"kafka-tls-cert-file":    "/etc/webmon/kafka-tls/tls.crt",
		"kafka-tls-key-file":     "/etc/webmon/kafka-tls/tls.key",
		"kafka-sasl-mechanism":   "SCRAM-SHA-512",
		"kafka-group":            "checkers",
		"kafka-topic-partitions": "64",
		"deny-private-networks":  "true",
		"allow-networks":         "10.20.0.0/16,fd12::/64",
	} {
		if got := flags[flag]; len(got) != 1 || got[0] != want {
			t.Errorf("--%s = %v, want %s", flag, got, want)
		}
	}
	wantVolumes := []corev1.Volume{
		{Name: "database", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: "pg-dsn", DefaultMode: ptr.To[int32](0o440), Items: []corev1.KeyToPath{{Key: "dsn", Path: "url"}}}}},
		{Name: "kafka-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "kafka-tls", DefaultMode: ptr.To[int32](0o440)}}},
	}
	if diff := cmp.Diff(wantVolumes, pod.Spec.Volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
	if sc := pod.Spec.SecurityContext; ptr.Deref(sc.FSGroup, 0) != ptr.Deref(sc.RunAsGroup, 1) {
		t.Errorf("fsGroup %v, runAsGroup %v: the 0440 Secret files would be unreadable", sc.FSGroup, sc.RunAsGroup)
	}
	refs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	want := map[string]string{"WEBMON_KAFKA_SASL_USERNAME": "kafka-sasl/username", "WEBMON_KAFKA_SASL_PASSWORD": "kafka-sasl/password"}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("environment from Secrets (-want +got):\n%s", diff)
	}
	job := m.podTemplates(t)["Job/"+fullname+"-migrate"]
	if diff := cmp.Diff(wantVolumes[:1], job.Spec.Volumes); diff != "" {
		t.Errorf("migrate volumes (-want +got):\n%s", diff)
	}
}

// TestMigrateHook: the schema is migrated by a hook Job before install and
// upgrade, deleted once it succeeds, with no Kubernetes API token.
func TestMigrateHook(t *testing.T) {
	m := render(t)
	u := m.find("Job", namespace, fullname+"-migrate")
	if u == nil {
		t.Fatal("no migrate Job")
	}
	want := map[string]string{
		"helm.sh/hook":               "pre-install,pre-upgrade",
		"helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
	}
	for k, v := range want {
		if got := u.GetAnnotations()[k]; got != v {
			t.Errorf("annotation %s = %q, want %q", k, got, v)
		}
	}
	pod := m.podTemplates(t)["Job/"+fullname+"-migrate"]
	if c := pod.Spec.Containers[0]; !slices.Equal(c.Args, []string{"migrate", "--database-url-file=/etc/webmon/database/url"}) {
		t.Errorf("migrate args %v", c.Args)
	}
	if ptr.Deref(pod.Spec.AutomountServiceAccountToken, true) || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("migrate pod: automount %v, restart %s; want no token and Never", pod.Spec.AutomountServiceAccountToken, pod.Spec.RestartPolicy)
	}
	if off := render(t, "--set", "migrate.enabled=false"); off.find("Job", namespace, fullname+"-migrate") != nil {
		t.Error("migrate.enabled=false still renders the Job")
	}
}

// TestSchedulerPodsAreCovered: the Services, budget and NetworkPolicy that
// cover scheduler pods select the pods the operator actually creates.
func TestSchedulerPodsAreCovered(t *testing.T) {
	m := render(t, allFeatures...)
	schedulerPod := labels.Set(controllers.SchedulerOptions{Namespace: namespace, Image: "webmon", Replicas: 1}.
		SchedulerDeployment(0, 1).Spec.Template.Labels)
	pods := m.podTemplates(t)
	selects := func(selector map[string]string, pod labels.Set) bool {
		return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(pod)
	}
	for _, component := range []string{"operator", "scheduler", "checker"} {
		pod := schedulerPod
		if component != "scheduler" {
			pod = pods["Deployment/"+fullname+"-"+component].Labels
		}
		svc := get[corev1.Service](t, m, "Service", namespace, fullname+"-"+component+"-metrics")
		if !selects(svc.Spec.Selector, pod) {
			t.Errorf("Service %s selects %v, not the %s pods %v", svc.Name, svc.Spec.Selector, component, pod)
		}
		pdb := get[policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget", namespace, fullname+"-"+component)
		if !selects(pdb.Spec.Selector.MatchLabels, pod) {
			t.Errorf("PodDisruptionBudget %s selects %v, not the %s pods %v", pdb.Name, pdb.Spec.Selector.MatchLabels, component, pod)
		}
		np := get[networkingv1.NetworkPolicy](t, m, "NetworkPolicy", namespace, fullname)
		if !selects(np.Spec.PodSelector.MatchLabels, pod) {
			t.Errorf("NetworkPolicy selects %v, not the %s pods %v", np.Spec.PodSelector.MatchLabels, component, pod)
		}
	}
	sm := m.find("ServiceMonitor", namespace, fullname)
	if sm == nil {
		t.Fatal("no ServiceMonitor")
	}
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for _, u := range m.of("Service") {
		if !selects(selector, u.GetLabels()) {
			t.Errorf("the ServiceMonitor's selector %v misses Service %s", selector, u.GetName())
		}
	}
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack release=prometheus from the values", sm.GetLabels())
	}
	for _, kind := range []string{"ServiceMonitor", "NetworkPolicy"} {
		if off := render(t).of(kind); len(off) > 0 {
			t.Errorf("%s rendered by default", kind)
		}
	}
}

// TestValuesRejected: the schema rejects wrong types and unknown keys, and
// the chart's own checks what the schema cannot say, each naming the value.
func TestValuesRejected(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want []string
	}{
		"replicas not a number":   {set: []string{"--set", "checker.autoscaling.minReplicas=lots"}, want: []string{"/checker/autoscaling/minReplicas", "got string, want integer"}},
		"unknown top-level key":   {set: []string{"--set", "chekcer.replicas=3"}, want: []string{"additional properties 'chekcer' not allowed"}},
		"unknown nested key":      {set: []string{"--set", "kafka.tls.enable=true"}, want: []string{"/kafka/tls", "'enable' not allowed"}},
		"SASL mechanism":          {set: []string{"--set", "kafka.sasl.mechanism=GSSAPI"}, want: []string{"/kafka/sasl/mechanism"}},
		"three schedulers":        {set: []string{"--set", "scheduler.replicas=3"}, want: []string{"/scheduler/replicas"}},
		"pull policy":             {set: []string{"--set", "image.pullPolicy=Sometimes"}, want: []string{"/image/pullPolicy"}},
		"broker without port":     {set: []string{"--set", "kafka.brokers[0]=kafka"}, want: []string{"/kafka/brokers/0"}},
		"no brokers":              {set: []string{"--set-json", "kafka.brokers=[]"}, want: []string{"/kafka/brokers"}},
		"retention":               {set: []string{"--set", "kafka.topicSpec.retention=forever"}, want: []string{"/kafka/topicSpec/retention"}},
		"namespace name":          {set: []string{"--set", "checker.secretNamespaces[0]=Shop_Team"}, want: []string{"/checker/secretNamespaces/0"}},
		"enabled not a boolean":   {set: []string{"--set-string", "checker.autoscaling.keda.enabled=yes"}, want: []string{"/checker/autoscaling/keda/enabled", "want boolean"}},
		"SASL without Secret":     {set: []string{"--set", "kafka.sasl.mechanism=PLAIN"}, want: []string{"kafka.sasl.secretName"}},
		"client cert without CA":  {set: []string{"--set", "kafka.tls.clientCert=true"}, want: []string{"kafka.tls.clientCert: needs kafka.tls.secretName"}},
		"HPA without CPU request": {set: []string{"--set", "checker.resources.requests.cpu=null"}, want: []string{"checker.resources.requests.cpu"}},
		"allowed network":         {set: []string{"--set", "checker.targets.allowNetworks[0]=10.0.0.1"}, want: []string{"/checker/targets/allowNetworks/0"}},
		"min above max":           {set: []string{"--set", "checker.autoscaling.minReplicas=20", "--set", "checker.autoscaling.maxReplicas=4"}, want: []string{"minReplicas (20) is above maxReplicas (4)"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, tc.set...)...)
			if err == nil {
				t.Fatalf("helm template %v succeeded", tc.set)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

// generatedRoles are the ClusterRoles and Roles of a generated role file.
func generatedRoles(t *testing.T, file string) manifests {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifests(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestValuesDocumented: every key of values.yaml has a comment right above
// it, unless it lies inside a value documented as a whole (a comment that
// starts with "# --" above an object passed as it is, such as resources).
func TestValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^(\s*)([A-Za-z0-9_.-]+):`)
	type parent struct {
		indent int
		whole  bool
	}
	var parents []parent
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		m := key.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1])
		for len(parents) > 0 && parents[len(parents)-1].indent >= indent {
			parents = parents[:len(parents)-1]
		}
		var comment []string
		for j := i - 1; j >= 0 && strings.HasPrefix(strings.TrimSpace(lines[j]), "#"); j-- {
			comment = append([]string{strings.TrimSpace(lines[j])}, comment...)
		}
		insideWhole := slices.ContainsFunc(parents, func(p parent) bool { return p.whole })
		if len(comment) == 0 && !insideWhole {
			t.Errorf("values.yaml:%d: %s has no comment", i+1, strings.TrimSpace(line))
		}
		parents = append(parents, parent{indent, len(comment) > 0 && strings.HasPrefix(comment[0], "# --")})
	}
}
