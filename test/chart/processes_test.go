package chart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/webmon-dev/webmon/controllers"
	"github.com/webmon-dev/webmon/test/testbed"
	"github.com/webmon-dev/webmon/test/testbed/pki"
)

// TestRenderedPodsRunAsProcesses runs the webmon binary with the command
// line and environment of every container the chart renders, and of the
// scheduler pods the operator would create from its rendered flags, as a
// local runner would: Secrets become files and variables with test values,
// mounted paths become folders. Each must pass its own validation and stop
// only where it would reach the cluster or PostgreSQL; and every WEBMON_
// variable must be a flag of its component.
func TestRenderedPodsRunAsProcesses(t *testing.T) {
	bin := buildWebmon(t)
	secrets := fakeSecrets(t)
	for name, args := range map[string][]string{"defaults": nil, "all features": allFeatures} {
		t.Run(name, func(t *testing.T) {
			pods := render(t, args...).podTemplates(t)
			operator := pods["Deployment/"+fullname+"-operator"]
			pods["Deployment/webmon-scheduler-0"] = schedulerPodFromOperatorFlags(t, operator.Spec.Containers[0].Args)
			for name, pod := range pods {
				for _, c := range pod.Spec.Containers {
					if len(c.Command) > 0 {
						t.Errorf("%s container %s: command %v replaces the image's entrypoint", name, c.Name, c.Command)
					}
					args, env := asProcess(t, pod.Spec, c, secrets)
					checkEnvAreFlags(t, bin, name, args[0], env)
					want := "kubeconfig:" // validated, then failed to reach the cluster
					if args[0] == "migrate" {
						want = "reaching PostgreSQL at 127.0.0.1:1"
					}
					out, err := runWebmon(t, bin, args, env)
					if err == nil || !strings.Contains(out, want) {
						t.Errorf("%s container %s: webmon %s: %v, want it to stop at %q:\n%s", name, c.Name, strings.Join(args, " "), err, want, out)
					}
				}
			}
		})
	}
}

// schedulerPodFromOperatorFlags builds shard 0's pod as the operator does
// from the scheduler and Kafka flags the chart gives it.
func schedulerPodFromOperatorFlags(t *testing.T, operatorArgs []string) corev1.PodTemplateSpec {
	t.Helper()
	flags := flagValues(operatorArgs)
	one := func(name string) string {
		if v := flags[name]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	o := controllers.SchedulerOptions{
		Namespace: namespace, Image: one("scheduler-image"), Replicas: 1, ServiceAccountName: one("scheduler-service-account"),
		Kafka: controllers.KafkaSettings{
			Brokers: strings.Split(one("kafka-brokers"), ","), Topic: one("kafka-topic"),
			TLSSecret: one("kafka-tls-secret"), TLSClientCert: one("kafka-tls-client-cert") == "true",
			SASLMechanism: one("kafka-sasl-mechanism"), SASLSecret: one("kafka-sasl-secret"),
		},
	}
	for _, kv := range flags["scheduler-env"] {
		name, value, _ := strings.Cut(kv, "=")
		o.Env = append(o.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if err := controllers.ValidateSchedulerEnv(o.Env); err != nil {
		t.Error(err)
	}
	return o.SchedulerDeployment(0, 1).Spec.Template
}

// fakeSecrets are the Secrets the chart's values name, with test values.
func fakeSecrets(t *testing.T) map[string]map[string]string {
	t.Helper()
	ca, err := pki.NewCA("kafka-ca")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("webmon")
	if err != nil {
		t.Fatal(err)
	}
	dsn := "postgres://webmon@127.0.0.1:1/webmon?connect_timeout=5"
	return map[string]map[string]string{
		fullname + "-database": {"url": dsn},
		"pg-dsn":               {"dsn": dsn},
		"kafka-tls":            {"ca.crt": string(ca.CertPEM), "tls.crt": string(client.CertPEM), "tls.key": string(client.KeyPEM)},
		"kafka-sasl":           {"username": "webmon", "password": "not-a-password"},
	}
}

// asProcess turns a container into a command line and an environment:
// Secret volumes become folders in place of their mount paths.
func asProcess(t *testing.T, pod corev1.PodSpec, c corev1.Container, secrets map[string]map[string]string) (args, env []string) {
	t.Helper()
	dir := t.TempDir()
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			folder := filepath.Join(dir, v.Name)
			if err := os.MkdirAll(folder, 0o700); err != nil {
				t.Fatal(err)
			}
			data, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("container %s mounts Secret %s, which the test does not know", c.Name, v.Secret.SecretName)
			}
			files := map[string]string{}
			for k := range data {
				files[k] = k
			}
			if len(v.Secret.Items) > 0 {
				files = map[string]string{}
				for _, item := range v.Secret.Items {
					files[item.Key] = item.Path
				}
			}
			for key, path := range files {
				if err := os.WriteFile(filepath.Join(folder, path), []byte(data[key]), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			mounts[m.MountPath] = folder
		}
	}
	for _, a := range c.Args {
		for mountPath, folder := range mounts {
			a = strings.ReplaceAll(a, mountPath, folder)
		}
		args = append(args, a)
	}
	env = []string{"HOME=" + dir, "KUBECONFIG=" + filepath.Join(dir, "no-kubeconfig")}
	for _, e := range c.Env {
		value := e.Value
		if from := e.ValueFrom; from != nil {
			switch {
			case from.SecretKeyRef != nil:
				v, ok := secrets[from.SecretKeyRef.Name][from.SecretKeyRef.Key]
				if !ok {
					t.Fatalf("container %s: $%s from unknown Secret key %s/%s", c.Name, e.Name, from.SecretKeyRef.Name, from.SecretKeyRef.Key)
				}
				value = v
			case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.namespace":
				value = namespace
			case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.name":
				value = c.Name + "-0"
			default:
				t.Fatalf("container %s: $%s from %+v, which the test cannot resolve", c.Name, e.Name, from)
			}
		}
		env = append(env, e.Name+"="+value)
	}
	return args, env
}

// checkEnvAreFlags: every WEBMON_ variable sets a flag of the component (an
// unknown one would be ignored), but for the two that carry secrets and
// have no flag on purpose.
func checkEnvAreFlags(t *testing.T, bin, pod, command string, env []string) {
	t.Helper()
	help, err := runWebmon(t, bin, []string{command, "--help"}, nil)
	if err != nil {
		t.Fatalf("webmon %s --help: %v\n%s", command, err, help)
	}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "WEBMON_") || name == "WEBMON_KAFKA_SASL_PASSWORD" || name == "WEBMON_DATABASE_URL" {
			continue
		}
		flag := "--" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "WEBMON_")), "_", "-")
		if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(flag) + `[\s=]`).MatchString(help) {
			t.Errorf("%s: $%s sets no flag of webmon %s (no %s)", pod, name, command, flag)
		}
	}
}

func runWebmon(t *testing.T, bin string, args, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// buildWebmon builds the binary the image holds.
func buildWebmon(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building webmon: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "webmon")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "./cmd/webmon")
	cmd.Dir = testbed.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/webmon: %v\n%s", err, out)
	}
	return bin
}
