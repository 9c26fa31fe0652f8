package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// ShardLabel carries the index of the shard a Website is assigned to, so
	// that each scheduler watches only its shard with a label selector.
	ShardLabel = "monitoring.webmon.dev/shard"

	// CheckNowAnnotation asks for an immediate check of every URL of a
	// Website: each new value triggers one round of checks.
	CheckNowAnnotation = "monitoring.webmon.dev/check-now"

	// ShardHandoffAnnotation is set by the operator just before it moves a
	// Website to another shard, as "SHARD@TIME" (TIME in RFC 3339): the
	// old shard's scheduler goes on publishing the Website's ticks due
	// before TIME, the new shard's publishes those due from TIME on, so
	// that no tick is published by both or by neither.
	ShardHandoffAnnotation = "monitoring.webmon.dev/shard-handoff"
)

// WebsiteSpec is what to check, how, and how often.
// +kubebuilder:validation:XValidation:rule="duration(self.timeout) < duration(self.interval)",message="timeout (10s unless set) must be shorter than interval",fieldPath=".timeout"
// +kubebuilder:validation:XValidation:rule="!has(self.expect.maxLatency) || duration(self.expect.maxLatency) <= duration(self.timeout)",message="expect.maxLatency cannot exceed timeout (10s unless set)",fieldPath=".expect.maxLatency"
// +kubebuilder:validation:XValidation:rule="!has(self.body) || !(self.method in ['GET', 'HEAD'])",message="body needs a method that sends one: set method to POST, PUT, PATCH or DELETE",fieldPath=".body"
type WebsiteSpec struct {
	// urls are the absolute http:// or https:// addresses to check, 1 to 100
	// of them, each listed once. Every URL is checked at every interval.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	URLs []WebsiteURL `json:"urls"`

	// interval is how often each URL is checked, as a duration such as
	// "30s" or "5m": at least 5s, at most 24h. Defaults to 60s.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s')",message="interval must be at least 5s"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="interval must be at most 24h"
	Interval metav1.Duration `json:"interval,omitzero"`

	// timeout bounds one check of one URL, from connecting to reading the
	// body, as a duration: at least 100ms and shorter than interval.
	// Defaults to 10s.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms')",message="timeout must be at least 100ms"
	Timeout metav1.Duration `json:"timeout,omitzero"`

	// method is the HTTP method of each check. Defaults to GET.
	// +optional
	// +kubebuilder:default=GET
	Method HTTPMethod `json:"method,omitempty"`

	// headers are sent with every check, at most 32. A value can be given
	// inline or, for credentials, read from a key of a Secret in the
	// Website's namespace; Secret values never leave the checker.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Headers []HTTPHeader `json:"headers,omitempty"`

	// body is sent as the request body, with methods that send one; at most 16 KiB.
	// +optional
	// +kubebuilder:validation:MaxLength=16384
	Body string `json:"body,omitempty"`

	// expect is what a check must see to pass. By default: a status code
	// from 200 to 399, after following up to 10 redirects, over verified TLS.
	// +optional
	// +kubebuilder:default={}
	Expect Expectations `json:"expect,omitzero"`

	// plugins run on every check's response, each at most once: tls-expiry,
	// html-stats, dns-blocklist, json-path. A name webmon does not know is
	// reported in the SpecValid condition.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Plugins []PluginSpec `json:"plugins,omitempty"`

	// failureThreshold is how many consecutive failed checks turn a URL
	// Down, from 1 to 100. Defaults to 3.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// successThreshold is how many consecutive passed checks turn a Down URL
	// Up again, from 1 to 100. Defaults to 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	SuccessThreshold int32 `json:"successThreshold,omitempty"`

	// suspend stops checking this Website while true; its state becomes
	// Suspended and its history is kept.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// The URL rule tests the host's size rather than compare it with an empty
// string literal: gofmt turns two single quotes in a doc comment into a
// typographic quote, which CEL cannot parse.

// WebsiteURL is an absolute http:// or https:// URL.
// +kubebuilder:validation:MinLength=8
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https') && size(url(self).getHostname()) > 0",message="must be an absolute http:// or https:// URL with a host, such as https://shop.example.com/health"
type WebsiteURL string

// HTTPMethod is the method of a check's request.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
type HTTPMethod string

// HTTPHeader is a request header, with its value inline or from a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value and valueFrom"
type HTTPHeader struct {
	// name is the header's name, such as Authorization or X-Api-Key.
	// Content-Length, Transfer-Encoding and Connection are set by webmon.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9][-A-Za-z0-9_.]*$')",message="a header name has only letters, digits, hyphens, underscores and dots, such as X-Api-Key"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['content-length', 'transfer-encoding', 'connection'])",message="Content-Length, Transfer-Encoding and Connection are set by webmon and cannot be overridden"
	Name string `json:"name"`

	// value is the header's value, for values that are not secret.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value *string `json:"value,omitempty"`

	// valueFrom reads the value from a Secret in the Website's namespace,
	// for credentials.
	// +optional
	ValueFrom *HeaderValueSource `json:"valueFrom,omitempty"`
}

// HeaderValueSource is where a header's value comes from.
type HeaderValueSource struct {
	// secretKeyRef selects a key of a Secret in the Website's namespace.
	// +required
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// SecretKeySelector selects a key of a Secret in the Website's namespace.
type SecretKeySelector struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="a Secret name has lowercase letters, digits, hyphens and dots, such as shop-auth"
	Name string `json:"name"`

	// key is the key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="a Secret key has only letters, digits, hyphens, underscores and dots"
	Key string `json:"key"`
}

// Expectations are what a check must see to pass.
type Expectations struct {
	// statusCodes are the accepted response codes, each a code ("204") or an
	// inclusive range ("200-399"), at most 20. Defaults to ["200-399"].
	// +optional
	// +listType=atomic
	// +kubebuilder:default={"200-399"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=20
	StatusCodes []StatusCodeRange `json:"statusCodes,omitempty"`

	// bodyRegex must match somewhere in the body (RE2 syntax, as Go's regexp).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	BodyRegex string `json:"bodyRegex,omitempty"`

	// bodyNotRegex must match nowhere in the body (RE2 syntax), for error
	// pages served with a 200.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	BodyNotRegex string `json:"bodyNotRegex,omitempty"`

	// maxLatency fails a check slower than this duration, though it
	// answered; at most timeout.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	MaxLatency *metav1.Duration `json:"maxLatency,omitempty"`

	// followRedirects follows HTTP redirects, up to maxRedirects, and
	// judges the final response. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	FollowRedirects *bool `json:"followRedirects,omitempty"`

	// maxRedirects is how many redirects are followed before the check
	// fails, from 0 to 10. Defaults to 10.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	MaxRedirects *int32 `json:"maxRedirects,omitempty"`

	// tlsSkipVerify accepts any certificate, expired or not. Defaults to
	// false; the tls-expiry plugin still reports on the certificate.
	// +optional
	TLSSkipVerify bool `json:"tlsSkipVerify,omitempty"`
}

// StatusCodeRange is an HTTP status code ("204") or an inclusive range of
// them ("200-399").
// +kubebuilder:validation:MaxLength=7
// +kubebuilder:validation:XValidation:rule="self.matches('^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$')",message="a status code is from 100 to 599 (such as 204), or a range of them (such as 200-399)"
// +kubebuilder:validation:XValidation:rule="!self.matches('^[1-5][0-9][0-9]-[1-5][0-9][0-9]$') || int(self.split('-')[0]) <= int(self.split('-')[1])",message="a status code range goes from low to high, such as 200-299"
type StatusCodeRange string

// PluginSpec enables a plugin on a Website's checks.
type PluginSpec struct {
	// name is the plugin's name: tls-expiry, html-stats, dns-blocklist or json-path.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="a plugin name has lowercase letters, digits and hyphens, such as tls-expiry"
	Name string `json:"name"`

	// config holds the plugin's settings, at most 32, each value at most
	// 1024 characters; each plugin documents its own keys.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 63 && size(self[k]) <= 1024)",message="plugin config keys are at most 63 characters and values at most 1024"
	Config map[string]string `json:"config,omitempty"`
}

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

// URLState is the state of one URL.
// +kubebuilder:validation:Enum=Pending;Up;Down
type URLState string

// The states a URL can be in.
const (
	// URLStatePending means the URL has not been checked yet.
	URLStatePending URLState = "Pending"
	// URLStateUp means the URL passed its last successThreshold checks.
	URLStateUp URLState = "Up"
	// URLStateDown means the URL failed its last failureThreshold checks.
	URLStateDown URLState = "Down"
)

// PluginOutcome is a plugin's verdict.
// +kubebuilder:validation:Enum=OK;Warning;Error
type PluginOutcome string

// The verdicts a plugin can give.
const (
	// PluginOK means nothing is wrong.
	PluginOK PluginOutcome = "OK"
	// PluginWarning means something needs attention soon; the Website is Degraded.
	PluginWarning PluginOutcome = "Warning"
	// PluginError means something is wrong now; the Website is Degraded.
	PluginError PluginOutcome = "Error"
)

// WebsiteStatus is the observed state of a Website: the operator writes its
// shard and conditions, the checkers summarise check results into it. It
// holds summaries only; every result is in webmon's database.
type WebsiteStatus struct {
	// state summarises the last checks: Pending, Up, Degraded, Down or Suspended.
	// +optional
	State WebsiteState `json:"state,omitempty"`

	// shard is the index of the scheduler shard that checks this Website.
	// +optional
	Shard *int32 `json:"shard,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Available (the Website answers as expected), Degraded
	// (some URLs or plugins fail), Scheduled (its shard's scheduler is
	// running), SpecValid (the spec can be checked as written).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// urlCount is the number of URLs in the spec.
	// +optional
	URLCount int32 `json:"urlCount,omitempty"`

	// lastCheckTime is when the latest check result was summarised.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`

	// lastTransitionTime is when state last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`

	// latency of the checks.
	// +optional
	Latency *LatencySummary `json:"latency,omitempty"`

	// uptime is the share of passed checks over the last hour and day.
	// +optional
	Uptime *UptimeSummary `json:"uptime,omitempty"`

	// The URLs' list is atomic: the checker writes it whole, and as a map
	// list it would cost a managedFields entry per URL, as many bytes as the
	// list itself, in every write, read and watch event of the Website.

	// urls is the state of each URL.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	URLs []URLStatus `json:"urls,omitempty"`

	// plugins is the latest verdict of each plugin, the worst over the URLs.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Plugins []PluginResult `json:"plugins,omitempty"`
}

// LatencySummary is how long checks take, from request to the end of the body.
type LatencySummary struct {
	// last is the latency of the latest check (of the slowest URL in it).
	// +optional
	Last metav1.Duration `json:"last,omitzero"`
	// p95 is the 95th percentile over the last hour.
	// +optional
	P95 metav1.Duration `json:"p95,omitzero"`
}

// UptimeSummary is the share of passed checks, as a percentage for people
// and a ratio from 0 to 1 for machines.
type UptimeSummary struct {
	// last1h is the uptime over the last hour, such as "99.95%".
	// +optional
	Last1h string `json:"last1h,omitempty"`
	// last24h is the uptime over the last 24 hours, such as "99.90%".
	// +optional
	Last24h string `json:"last24h,omitempty"`
	// ratio1h is the uptime over the last hour, from 0 to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Ratio1h *float64 `json:"ratio1h,omitempty"`
	// ratio24h is the uptime over the last 24 hours, from 0 to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	Ratio24h *float64 `json:"ratio24h,omitempty"`
}

// URLStatus is the state of one URL.
type URLStatus struct {
	// url is the URL, as in spec.urls.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	URL string `json:"url"`
	// state is Pending, Up or Down.
	// +optional
	State URLState `json:"state,omitempty"`
	// statusCode is the HTTP status of the latest check; 0 if none came back.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`
	// latency of the latest check.
	// +optional
	Latency metav1.Duration `json:"latency,omitzero"`
	// error says why the latest check failed, empty if it passed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Error string `json:"error,omitempty"`
	// consecutiveFailures counts the failed checks since the last pass.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`
	// lastCheckTime is when the URL was last checked.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`
	// lastTransitionTime is when the URL's state last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// PluginResult is a plugin's latest verdict.
type PluginResult struct {
	// name is the plugin's name.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// result is OK, Warning or Error.
	// +required
	Result PluginOutcome `json:"result"`
	// message explains the result, naming the URL it concerns.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Website is a set of URLs that webmon checks at an interval.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ws,categories=webmon
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`,description="Up, Degraded, Down, Pending or Suspended"
// +kubebuilder:printcolumn:name="URLs",type=integer,JSONPath=`.status.urlCount`,description="Number of URLs checked"
// +kubebuilder:printcolumn:name="Interval",type=string,JSONPath=`.spec.interval`
// +kubebuilder:printcolumn:name="Uptime",type=string,JSONPath=`.status.uptime.last24h`,description="Share of passed checks over 24h"
// +kubebuilder:printcolumn:name="Latency",type=string,JSONPath=`.status.latency.last`,description="Latency of the latest check"
// +kubebuilder:printcolumn:name="Last Check",type=date,JSONPath=`.status.lastCheckTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Shard",type=integer,JSONPath=`.status.shard`,priority=1
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.urls[0]`,priority=1,description="First URL"
type Website struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to check, how, and how often.
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
