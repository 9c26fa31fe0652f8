package scheduler

// A scheduler reads its shard's Websites and nothing else of the cluster;
// it elects its shard's leader with a Lease in its namespace and records
// leader election Events there. It never reads Secrets: tasks carry Secret
// references, and checkers resolve them. The namespace is kustomize's
// default; config/default rewrites it, and the Helm chart templates it.
// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=webmon-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=webmon-system,resources=events,verbs=create;patch
