package checker

// A checker reads the Websites whose tasks it checks (one get before each
// status write) and patches their status, and records Events on them in
// their namespaces. It reads a Secret only when a task references one, by
// name, with get and never list or watch; that permission is granted per
// namespace by a RoleBinding to the separate webmon-checker-secrets
// ClusterRole (config/rbac/checker/secret_reader_role.yaml), not here.
// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites,verbs=get
// +kubebuilder:rbac:groups=monitoring.webmon.dev,resources=websites/status,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
