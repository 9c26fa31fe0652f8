package controllers

// The operator's own needs, besides its reconcilers': electing a leader in
// its namespace, and the Events its leader election records there.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=webmon-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=webmon-system,resources=events,verbs=create;patch
