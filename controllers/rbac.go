package controllers

// The operator's own needs, besides its reconcilers': electing a leader in
// its namespace, and the Events its leader election records there. The
// namespace is kustomize's default; config/default rewrites it, and the
// Helm chart templates these rules for the namespace it installs into.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=webmon-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=webmon-system,resources=events,verbs=create;patch
