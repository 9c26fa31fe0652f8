package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
)

// Labels and annotations of the scheduler Deployments.
const (
	// ComponentLabel names a webmon component; the operator lists its
	// scheduler Deployments by it.
	ComponentLabel     = "app.kubernetes.io/component"
	componentScheduler = "scheduler"
	// ManagedByLabel marks what the operator created.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "webmon-operator"
	// ShardCountLabel records the shard count a Deployment was built for,
	// so that a restarted operator resumes from the count it left.
	ShardCountLabel = "monitoring.webmon.dev/shards"
	// InputsHashAnnotation is a hash of everything a Deployment is built
	// from: an equal hash means there is nothing to update.
	InputsHashAnnotation = "monitoring.webmon.dev/inputs-hash"

	schedulerNamePrefix = "webmon-scheduler-"
	// nonRootUID is the distroless "nonroot" user the image runs as.
	nonRootUID        int64 = 65532
	kafkaTLSMountPath       = "/etc/webmon/kafka-tls"
	metricsPort             = 8080
	healthPort              = 8081
)

// SchedulerOptions are the settings of every scheduler Deployment, from the
// operator's flags. Credentials are only ever Secret names.
type SchedulerOptions struct {
	// Namespace the Deployments run in: the operator's own.
	Namespace string
	Image     string
	// ImagePullPolicy defaults to IfNotPresent.
	ImagePullPolicy corev1.PullPolicy
	// Replicas per shard: 1, or 2 for a standby that takes over through
	// the shard's leader election Lease.
	Replicas           int32
	Resources          corev1.ResourceRequirements
	ServiceAccountName string
	Kafka              KafkaSettings
	// Env is set in the scheduler containers after webmon's own variables
	// (see ValidateSchedulerEnv): every scheduler flag can be set so, as
	// WEBMON_MAX_LATENESS=10s sets --max-lateness.
	Env []corev1.EnvVar
	// Owner, when set, owns every scheduler Deployment (the operator's own
	// Deployment), so that uninstalling webmon removes them.
	Owner *metav1.OwnerReference
}

// KafkaSettings say how schedulers reach Kafka.
type KafkaSettings struct {
	Brokers []string
	Topic   string
	// TLSSecret names a Secret with ca.crt; empty means no TLS.
	TLSSecret string
	// TLSClientCert says the TLSSecret also holds tls.crt and tls.key, a
	// client certificate for brokers that require mutual TLS.
	TLSClientCert bool
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; SASLSecret
	// names a Secret with the username and password keys.
	SASLMechanism string
	SASLSecret    string
}

// SchedulerDeploymentName is the name of shard n's Deployment.
func SchedulerDeploymentName(shard int32) string {
	return schedulerNamePrefix + strconv.Itoa(int(shard))
}

// schedulerSelector selects the pods of shard n's Deployment.
func schedulerSelector(shard int32) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "webmon",
		ComponentLabel:                componentScheduler,
		monitoringv1alpha1.ShardLabel: strconv.Itoa(int(shard)),
	}
}

// SchedulerDeployment builds shard n of m's Deployment, with its inputs
// hash annotation set.
func (o SchedulerOptions) SchedulerDeployment(shard, shards int32) *appsv1.Deployment {
	podLabels := schedulerSelector(shard)
	labels := map[string]string{ManagedByLabel: managedBy, ShardCountLabel: strconv.Itoa(int(shards))}
	for k, v := range podLabels {
		labels[k] = v
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SchedulerDeploymentName(shard),
			Namespace: o.Namespace,
			Labels:    labels,
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(max(o.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Strategy: appsv1.DeploymentStrategy{
				// The shard's Lease keeps a surging new pod from publishing
				// until the old one has let go.
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromInt32(1)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       o.podSpec(shard, shards),
			},
		},
	}
	if o.Owner != nil {
		d.OwnerReferences = []metav1.OwnerReference{*o.Owner}
	}
	d.Annotations = map[string]string{InputsHashAnnotation: inputsHash(d)}
	return d
}

func (o SchedulerOptions) podSpec(shard, shards int32) corev1.PodSpec {
	args := []string{
		"scheduler",
		"--shard=" + strconv.Itoa(int(shard)),
		"--shards=" + strconv.Itoa(int(shards)),
		"--leader-elect=true",
		"--metrics-bind-address=:" + strconv.Itoa(metricsPort),
		"--health-probe-bind-address=:" + strconv.Itoa(healthPort),
	}
	if len(o.Kafka.Brokers) > 0 {
		args = append(args, "--kafka-brokers="+strings.Join(o.Kafka.Brokers, ","))
	}
	if o.Kafka.Topic != "" {
		args = append(args, "--kafka-topic="+o.Kafka.Topic)
	}
	env := []corev1.EnvVar{
		{Name: envShard, Value: strconv.Itoa(int(shard))},
		{Name: envShards, Value: strconv.Itoa(int(shards))},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if o.Kafka.TLSSecret != "" {
		args = append(args, "--kafka-tls=true", "--kafka-tls-ca-file="+kafkaTLSMountPath+"/ca.crt")
		if o.Kafka.TLSClientCert {
			args = append(args, "--kafka-tls-cert-file="+kafkaTLSMountPath+"/tls.crt", "--kafka-tls-key-file="+kafkaTLSMountPath+"/tls.key")
		}
		volumes = append(volumes, corev1.Volume{Name: "kafka-tls", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: o.Kafka.TLSSecret, DefaultMode: ptr.To[int32](0o440)}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "kafka-tls", MountPath: kafkaTLSMountPath, ReadOnly: true})
	}
	if o.Kafka.SASLMechanism != "" {
		args = append(args, "--kafka-sasl-mechanism="+o.Kafka.SASLMechanism)
		env = append(env,
			secretEnv(envSASLUsername, o.Kafka.SASLSecret, "username"),
			secretEnv(kafka.PasswordEnv, o.Kafka.SASLSecret, "password"))
	}
	env = append(env, o.Env...)
	pullPolicy := o.ImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	return corev1.PodSpec{
		ServiceAccountName:           o.ServiceAccountName,
		AutomountServiceAccountToken: ptr.To(true), // it watches Websites
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr.To(true),
			RunAsUser:    ptr.To(nonRootUID),
			RunAsGroup:   ptr.To(nonRootUID),
			// Secret volumes are root-owned; the group makes their 0440
			// files readable by the scheduler and no one else.
			FSGroup:        ptr.To(nonRootUID),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		Volumes:                       volumes,
		Containers: []corev1.Container{{
			Name:            "scheduler",
			Image:           o.Image,
			ImagePullPolicy: pullPolicy,
			Args:            args,
			Env:             env,
			Ports: []corev1.ContainerPort{
				{Name: "metrics", ContainerPort: metricsPort, Protocol: corev1.ProtocolTCP},
				{Name: "health", ContainerPort: healthPort, Protocol: corev1.ProtocolTCP},
			},
			LivenessProbe:  httpProbe("/healthz"),
			ReadinessProbe: httpProbe("/readyz"),
			Resources:      o.Resources,
			VolumeMounts:   mounts,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
	}
}

// The environment variables the operator sets in scheduler pods itself.
const (
	envShard        = "WEBMON_SHARD"
	envShards       = "WEBMON_SHARDS"
	envSASLUsername = "WEBMON_KAFKA_SASL_USERNAME"
)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidateSchedulerEnv reports extra scheduler environment variables that
// are not valid names, or that would override what the operator sets: the
// shard, the pod's identity, and the SASL credentials, which come only from
// the --kafka-sasl-secret (a value here would show in every pod spec).
func ValidateSchedulerEnv(env []corev1.EnvVar) error {
	var errs []error
	for _, e := range env {
		switch {
		case !envNamePattern.MatchString(e.Name):
			errs = append(errs, fmt.Errorf("scheduler environment variable %q: not a valid name", e.Name))
		case slices.Contains([]string{envShard, envShards, "POD_NAMESPACE", "POD_NAME", envSASLUsername, kafka.PasswordEnv}, e.Name):
			errs = append(errs, fmt.Errorf("scheduler environment variable %s: set by the operator itself", e.Name))
		}
	}
	return errors.Join(errs...)
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
}

func httpProbe(path string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")}},
		PeriodSeconds: 10,
	}
}

// inputsHash digests the parts of a Deployment the operator sets.
func inputsHash(d *appsv1.Deployment) string {
	b, err := json.Marshal(struct {
		Labels map[string]string
		Owners []metav1.OwnerReference
		Spec   appsv1.DeploymentSpec
	}{d.Labels, d.OwnerReferences, d.Spec})
	if err != nil {
		panic(fmt.Sprintf("marshalling a Deployment spec: %v", err)) // plain structs always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
