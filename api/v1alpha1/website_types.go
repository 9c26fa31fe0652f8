package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebsiteSpec is what to check and how often.
type WebsiteSpec struct {
	// urls are the absolute http:// or https:// addresses to check, 1 to 100
	// of them, each listed once.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	URLs []WebsiteURL `json:"urls"`

	// interval is how often each URL is checked, as a duration ("30s", "5m").
	// Defaults to 60s; at least 5s.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s')",message="interval must be at least 5s"
	Interval metav1.Duration `json:"interval,omitzero"`
}

// The URL rule tests the host's size rather than compare it with an empty
// string literal: gofmt turns two single quotes in a doc comment into a
// typographic quote, which CEL cannot parse.

// WebsiteURL is an absolute http:// or https:// URL.
// +kubebuilder:validation:MinLength=8
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https') && size(url(self).getHostname()) > 0",message="must be an absolute http:// or https:// URL with a host, such as https://shop.example.com/health"
type WebsiteURL string

// WebsiteState is the summary of a Website's last checks.
// +kubebuilder:validation:Enum=Pending;Up;Degraded;Down;Suspended
type WebsiteState string

// The states a Website can be in.
const (
	// WebsiteStatePending means no check has completed yet.
	WebsiteStatePending WebsiteState = "Pending"
	// WebsiteStateUp means every URL passes its checks.
	WebsiteStateUp WebsiteState = "Up"
	// WebsiteStateDegraded means some URLs or plugins fail while others pass.
	WebsiteStateDegraded WebsiteState = "Degraded"
	// WebsiteStateDown means every URL has failed its checks.
	WebsiteStateDown WebsiteState = "Down"
	// WebsiteStateSuspended means checking is paused by spec.suspend.
	WebsiteStateSuspended WebsiteState = "Suspended"
)

// WebsiteStatus is the observed state of a Website, written by the operator
// and summarised from check results by the checkers.
type WebsiteStatus struct {
	// state summarises the last checks: Pending, Up, Degraded, Down or Suspended.
	// +optional
	State WebsiteState `json:"state,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are the Website's conditions (Available, Degraded, Scheduled, SpecValid).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Website is a set of URLs that webmon checks at an interval.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ws,categories=webmon
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Interval",type=string,JSONPath=`.spec.interval`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Website struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to check and how often.
	// +required
	Spec WebsiteSpec `json:"spec"`

	// status is the observed state, summarised from check results.
	// +optional
	Status WebsiteStatus `json:"status,omitempty"`
}

// WebsiteList is a list of Websites.
// +kubebuilder:object:root=true
type WebsiteList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Website `json:"items"`
}
