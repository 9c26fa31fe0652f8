package controllers

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/webmon-dev/webmon/internal/kafka"
)

// TestSchedulerDeploymentKafkaCredentials: credentials reach the scheduler
// only by reference, and mounted TLS files are readable by its non-root user.
func TestSchedulerDeploymentKafkaCredentials(t *testing.T) {
	o := SchedulerOptions{
		Namespace: "webmon-system", Image: "webmon:test", Replicas: 2,
		Kafka: KafkaSettings{
			Brokers: []string{"kafka:9093"}, Topic: "tasks",
			TLSSecret: "kafka-tls", TLSClientCert: true,
			SASLMechanism: "SCRAM-SHA-512", SASLSecret: "kafka-sasl",
		},
	}
	d := o.SchedulerDeployment(1, 4)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]

	for _, arg := range []string{"--kafka-tls=true", "--kafka-tls-ca-file=/etc/webmon/kafka-tls/ca.crt",
		"--kafka-tls-cert-file=/etc/webmon/kafka-tls/tls.crt", "--kafka-tls-key-file=/etc/webmon/kafka-tls/tls.key",
		"--kafka-sasl-mechanism=SCRAM-SHA-512"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %q", c.Args, arg)
		}
	}
	refs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	if refs[kafka.PasswordEnv] != "kafka-sasl/password" || refs["WEBMON_KAFKA_SASL_USERNAME"] != "kafka-sasl/username" {
		t.Errorf("SASL credentials by reference = %v, want username and password from Secret kafka-sasl", refs)
	}
	for _, arg := range c.Args {
		if strings.Contains(strings.ToLower(arg), "password") {
			t.Errorf("an argument mentions a password: %q", arg)
		}
	}
	if len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "kafka-tls" {
		t.Fatalf("volumes %+v, want the kafka-tls Secret", pod.Volumes)
	}
	// The Secret's files are root-owned and mode 0440: the pod's fsGroup
	// must be the scheduler's group for it to read them.
	sc := pod.SecurityContext
	if mode := ptr.Deref(pod.Volumes[0].Secret.DefaultMode, 0o644); mode&0o040 == 0 {
		t.Errorf("Secret mode %o is not group-readable", mode)
	}
	if sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Errorf("fsGroup %v, runAsGroup %v: the mounted Secret would be unreadable", sc.FSGroup, sc.RunAsGroup)
	}
	if got := *d.Spec.Replicas; got != 2 {
		t.Errorf("replicas %d, want 2", got)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pull policy %q, want the IfNotPresent default", c.ImagePullPolicy)
	}
}

func TestSchedulerDeploymentInputsHash(t *testing.T) {
	o := SchedulerOptions{Namespace: "ns", Image: "webmon:1", Replicas: 1}
	a, b := o.SchedulerDeployment(0, 2), o.SchedulerDeployment(0, 2)
	if a.Annotations[InputsHashAnnotation] != b.Annotations[InputsHashAnnotation] {
		t.Error("the same inputs gave different hashes")
	}
	o.Image = "webmon:2"
	if c := o.SchedulerDeployment(0, 2); c.Annotations[InputsHashAnnotation] == a.Annotations[InputsHashAnnotation] {
		t.Error("a new image left the hash unchanged")
	}
	if c := (SchedulerOptions{Namespace: "ns", Image: "webmon:1", Replicas: 1}).SchedulerDeployment(1, 2); c.Annotations[InputsHashAnnotation] == a.Annotations[InputsHashAnnotation] {
		t.Error("another shard has the same hash")
	}
}

// TestSchedulerDeploymentEnv: extra variables follow the operator's own, so
// that they can set any scheduler flag but not replace the shard.
func TestSchedulerDeploymentEnv(t *testing.T) {
	extra := []corev1.EnvVar{{Name: "WEBMON_KAFKA_TOPIC_PARTITIONS", Value: "64"}, {Name: "WEBMON_KAFKA_VERSION", Value: "3.7.0"}}
	o := SchedulerOptions{Namespace: "ns", Image: "webmon:1", Replicas: 1, Env: extra}
	d := o.SchedulerDeployment(0, 2)
	env := d.Spec.Template.Spec.Containers[0].Env
	if got := env[len(env)-len(extra):]; !slices.Equal(got, extra) {
		t.Errorf("last env = %v, want %v", got, extra)
	}
	if env[0].Name != envShard {
		t.Errorf("first env %s, want %s", env[0].Name, envShard)
	}
	without := SchedulerOptions{Namespace: "ns", Image: "webmon:1", Replicas: 1}.SchedulerDeployment(0, 2)
	if d.Annotations[InputsHashAnnotation] == without.Annotations[InputsHashAnnotation] {
		t.Error("extra env left the inputs hash unchanged")
	}
}

func TestValidateSchedulerEnv(t *testing.T) {
	tests := map[string]struct {
		env  []corev1.EnvVar
		want string
	}{
		"flag variables":  {env: []corev1.EnvVar{{Name: "WEBMON_MAX_LATENESS", Value: "10s"}, {Name: "GOMEMLIMIT", Value: "900MiB"}}},
		"empty name":      {env: []corev1.EnvVar{{Name: "", Value: "x"}}, want: `"": not a valid name`},
		"leading digit":   {env: []corev1.EnvVar{{Name: "1X", Value: "x"}}, want: `"1X": not a valid name`},
		"shard count":     {env: []corev1.EnvVar{{Name: "WEBMON_SHARDS", Value: "9"}}, want: "WEBMON_SHARDS: set by the operator itself"},
		"pod name":        {env: []corev1.EnvVar{{Name: "POD_NAME", Value: "x"}}, want: "POD_NAME: set by the operator itself"},
		"inline password": {env: []corev1.EnvVar{{Name: kafka.PasswordEnv, Value: "hunter2"}}, want: kafka.PasswordEnv + ": set by the operator itself"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidateSchedulerEnv(tc.env)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("ValidateSchedulerEnv = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("ValidateSchedulerEnv = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
