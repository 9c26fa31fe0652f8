package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/webmon-dev/webmon/controllers"
	"github.com/webmon-dev/webmon/internal/kafka"
)

type operatorOptions struct {
	namespace       string
	ownerDeployment string

	shards         int32
	checksPerShard float64
	minShards      int32
	maxShards      int32

	scheduler     controllers.SchedulerOptions
	cpuRequest    string
	memoryRequest string
	memoryLimit   string
	schedulerEnv  []string

	maxConcurrentReconciles int
	managerOptions
}

func newOperatorCommand() *cobra.Command {
	o := &operatorOptions{
		namespace:      os.Getenv("POD_NAMESPACE"),
		checksPerShard: 5000,
		minShards:      1,
		maxShards:      256,
		scheduler: controllers.SchedulerOptions{
			Image:              "ghcr.io/webmon-dev/webmon:latest",
			Replicas:           1,
			ServiceAccountName: "webmon-scheduler",
			Kafka:              controllers.KafkaSettings{Topic: kafka.DefaultTopic},
		},
		cpuRequest:    "100m",
		memoryRequest: "128Mi",
		memoryLimit:   "1Gi",
		managerOptions: managerOptions{
			leaderElect:  true,
			metricsAddr:  defaultMetricsAddr,
			probeAddr:    defaultProbeAddr,
			kubeAPIQPS:   controllers.DefaultKubeAPIQPS,
			kubeAPIBurst: controllers.DefaultKubeAPIBurst,
		},
		maxConcurrentReconciles: controllers.DefaultMaxConcurrentReconciles,
	}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Reconcile Websites: assign shards and run a scheduler Deployment per shard",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runOperator(cmd.Context(), o) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.namespace, "namespace", o.namespace, "namespace of the scheduler Deployments and the leader election Lease (default $POD_NAMESPACE)")
	fs.StringVar(&o.ownerDeployment, "owner-deployment", o.ownerDeployment, "the operator's own Deployment, made owner of the schedulers so that uninstalling removes them")
	fs.Int32Var(&o.shards, "shards", o.shards, "fixed number of scheduler shards; 0 plans them from load with --checks-per-shard")
	fs.Float64Var(&o.checksPerShard, "checks-per-shard", o.checksPerShard, "checks per second one scheduler shard takes, when planning from load")
	fs.Int32Var(&o.minShards, "min-shards", o.minShards, "fewest shards when planning from load")
	fs.Int32Var(&o.maxShards, "max-shards", o.maxShards, "most shards when planning from load")
	fs.StringVar(&o.scheduler.Image, "scheduler-image", o.scheduler.Image, "image of the scheduler pods")
	fs.StringVar((*string)(&o.scheduler.ImagePullPolicy), "scheduler-image-pull-policy", "IfNotPresent", "pull policy of the scheduler image")
	fs.Int32Var(&o.scheduler.Replicas, "scheduler-replicas", o.scheduler.Replicas, "scheduler pods per shard: 1, or 2 for a hot standby")
	fs.StringVar(&o.scheduler.ServiceAccountName, "scheduler-service-account", o.scheduler.ServiceAccountName, "service account of the scheduler pods")
	fs.StringVar(&o.cpuRequest, "scheduler-cpu-request", o.cpuRequest, "CPU request of a scheduler pod")
	fs.StringVar(&o.memoryRequest, "scheduler-memory-request", o.memoryRequest, "memory request of a scheduler pod")
	fs.StringVar(&o.memoryLimit, "scheduler-memory-limit", o.memoryLimit, "memory limit of a scheduler pod")
	fs.StringArrayVar(&o.schedulerEnv, "scheduler-env", nil,
		"NAME=VALUE set in the scheduler pods' environment, repeatable; every scheduler flag has a variable (WEBMON_MAX_LATENESS=10s)")
	fs.StringSliceVar(&o.scheduler.Kafka.Brokers, "kafka-brokers", nil, "Kafka bootstrap brokers the schedulers publish to, host:port, comma-separated")
	fs.StringVar(&o.scheduler.Kafka.Topic, "kafka-topic", o.scheduler.Kafka.Topic, "Kafka topic of the check tasks")
	fs.StringVar(&o.scheduler.Kafka.TLSSecret, "kafka-tls-secret", "", "Secret with the ca.crt that signs the Kafka brokers' certificates; empty means no TLS")
	fs.BoolVar(&o.scheduler.Kafka.TLSClientCert, "kafka-tls-client-cert", false, "the --kafka-tls-secret also holds tls.crt and tls.key, for brokers that require mutual TLS")
	fs.StringVar(&o.scheduler.Kafka.SASLMechanism, "kafka-sasl-mechanism", "", "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&o.scheduler.Kafka.SASLSecret, "kafka-sasl-secret", "", "Secret with the Kafka SASL username and password keys")
	fs.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", o.maxConcurrentReconciles, "Websites reconciled at once")
	o.addFlags(fs, "elect a leader among operator replicas; only it reconciles")
	return cmd
}

func (o *operatorOptions) validate() error {
	var errs []error
	if o.namespace == "" {
		errs = append(errs, errors.New("--namespace: none given and $POD_NAMESPACE is empty"))
	}
	if o.shards < 0 || o.minShards < 1 || o.maxShards < o.minShards {
		errs = append(errs, fmt.Errorf("shards: want --shards >= 0 and 1 <= --min-shards (%d) <= --max-shards (%d)", o.minShards, o.maxShards))
	}
	if o.shards == 0 && o.checksPerShard <= 0 {
		errs = append(errs, errors.New("--checks-per-shard must be positive when --shards is 0"))
	}
	if o.scheduler.Replicas < 1 || o.scheduler.Replicas > 2 {
		errs = append(errs, fmt.Errorf("--scheduler-replicas %d: want 1, or 2 for a hot standby", o.scheduler.Replicas))
	}
	if (o.scheduler.Kafka.SASLMechanism == "") != (o.scheduler.Kafka.SASLSecret == "") {
		errs = append(errs, errors.New("--kafka-sasl-mechanism and --kafka-sasl-secret go together"))
	}
	switch strings.ToUpper(o.scheduler.Kafka.SASLMechanism) {
	case "", kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512:
	default:
		errs = append(errs, fmt.Errorf("--kafka-sasl-mechanism %q: want %s, %s or %s",
			o.scheduler.Kafka.SASLMechanism, kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512))
	}
	if o.scheduler.Kafka.TLSClientCert && o.scheduler.Kafka.TLSSecret == "" {
		errs = append(errs, errors.New("--kafka-tls-client-cert needs --kafka-tls-secret"))
	}
	if len(o.scheduler.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("--kafka-brokers: none given; the schedulers publish there"))
	}
	switch o.scheduler.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--scheduler-image-pull-policy %q: want Always, IfNotPresent or Never", o.scheduler.ImagePullPolicy))
	}
	resources, err := o.resources()
	if err != nil {
		errs = append(errs, err)
	}
	o.scheduler.Resources = resources
	o.scheduler.Env = nil
	for _, kv := range o.schedulerEnv {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("--scheduler-env %q: want NAME=VALUE", kv))
			continue
		}
		o.scheduler.Env = append(o.scheduler.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if err := controllers.ValidateSchedulerEnv(o.scheduler.Env); err != nil {
		errs = append(errs, fmt.Errorf("--scheduler-env: %w", err))
	}
	o.scheduler.Namespace = o.namespace
	return errors.Join(errs...)
}

func (o *operatorOptions) resources() (corev1.ResourceRequirements, error) {
	var errs []error
	parse := func(flagName, value string) resource.Quantity {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flagName, value, err))
		}
		return q
	}
	r := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    parse("scheduler-cpu-request", o.cpuRequest),
			corev1.ResourceMemory: parse("scheduler-memory-request", o.memoryRequest),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: parse("scheduler-memory-limit", o.memoryLimit)},
	}
	return r, errors.Join(errs...)
}

func runOperator(ctx context.Context, o *operatorOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	scheme, cfg, err := o.setUp()
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("operator")
	var lock *ownedLeaseLock
	if o.ownerDeployment != "" {
		if o.scheduler.Owner, err = ownerReference(ctx, cfg, scheme, o.namespace, o.ownerDeployment); err != nil {
			return err
		}
		if o.leaderElect {
			if lock, err = newOwnedLeaseLock(cfg, o.namespace, operatorLeaseName, *o.scheduler.Owner); err != nil {
				return err
			}
		}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                              scheme,
		Metrics:                             metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:              o.probeAddr,
		PprofBindAddress:                    o.pprofAddr,
		LeaderElection:                      o.leaderElect,
		LeaderElectionID:                    operatorLeaseName,
		LeaderElectionNamespace:             o.namespace,
		LeaderElectionResourceLockInterface: lockOrNil(lock),
		// The process exits right after: let a successor lead at once.
		LeaderElectionReleaseOnCancel: true,
		// The operator needs its own scheduler Deployments only: caching
		// every Deployment of the cluster would cost memory and RBAC; and
		// the schedulers' Leases, in its namespace.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {
				Namespaces: map[string]cache.Config{o.namespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{controllers.ManagedByLabel: "webmon-operator"}),
			},
			&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{o.namespace: {}}},
		}},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if lock != nil {
		lock.LockConfig.EventRecorder = mgr.GetEventRecorderFor(lock.Identity()) //nolint:staticcheck // the elector takes the core Events API's recorder
	}
	plan := controllers.NewShardPlan()
	if err := (&controllers.ShardReconciler{
		Client:    mgr.GetClient(),
		Policy:    controllers.ShardPolicy{Fixed: o.shards, ChecksPerShard: o.checksPerShard, Min: o.minShards, Max: o.maxShards},
		Scheduler: o.scheduler,
		Plan:      plan,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the shard controller: %w", err)
	}
	if err := (&controllers.WebsiteReconciler{
		Client:                  mgr.GetClient(),
		Plan:                    plan,
		SchedulerNamespace:      o.namespace,
		Recorder:                mgr.GetEventRecorder("webmon-operator"),
		Clock:                   clock.RealClock{},
		MaxConcurrentReconciles: o.maxConcurrentReconciles,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the website controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting", "namespace", o.namespace, "shards", o.shards, "checksPerShard", o.checksPerShard)
	return mgr.Start(ctx)
}

// ownerReference points at the operator's own Deployment.
func ownerReference(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace, name string) (*metav1.OwnerReference, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, d); err != nil {
		return nil, fmt.Errorf("--owner-deployment %s/%s: %w", namespace, name, err)
	}
	return &metav1.OwnerReference{
		APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}, nil
}
