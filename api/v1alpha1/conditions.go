package v1alpha1

// Condition types of a Website.
const (
	// ConditionAvailable is True while the Website answers as expected:
	// at least one URL is Up and none is Down. Written by the checkers.
	ConditionAvailable = "Available"

	// ConditionDegraded is True while part of the Website fails: some URLs
	// are Down, or a plugin reports a Warning or an Error. Written by the
	// checkers.
	ConditionDegraded = "Degraded"

	// ConditionScheduled is True once the Website has a shard and that
	// shard's scheduler is running, so its checks are being published.
	// Written by the operator.
	ConditionScheduled = "Scheduled"

	// ConditionSpecValid is False when the spec passed admission but cannot
	// be checked as written, such as a regular expression that does not
	// compile or an unknown plugin. Written by the operator.
	ConditionSpecValid = "SpecValid"
)

// Reasons of the SpecValid condition.
const (
	// ReasonSpecValid: every part of the spec can be checked.
	ReasonSpecValid = "Valid"
	// ReasonInvalidRegex: bodyRegex or bodyNotRegex does not compile.
	ReasonInvalidRegex = "InvalidRegex"
	// ReasonUnknownPlugin: a plugin name is not one webmon knows.
	ReasonUnknownPlugin = "UnknownPlugin"
)

// Reasons of the Scheduled condition.
const (
	// ReasonSchedulerAvailable: the shard's scheduler Deployment is available.
	ReasonSchedulerAvailable = "SchedulerAvailable"
	// ReasonSchedulerUnavailable: the shard's scheduler Deployment is
	// missing or has no available replica yet.
	ReasonSchedulerUnavailable = "SchedulerUnavailable"
	// ReasonAwaitingShard: the operator has not yet planned the shards.
	ReasonAwaitingShard = "AwaitingShard"
	// ReasonSuspended: spec.suspend is true, so nothing is scheduled.
	ReasonSuspended = "Suspended"
)

// Reasons of the Available and Degraded conditions.
const (
	// ReasonNoChecksYet: no check of the current spec has completed.
	ReasonNoChecksYet = "NoChecksYet"
	// ReasonAllURLsUp: every URL passes its checks.
	ReasonAllURLsUp = "AllURLsUp"
	// ReasonSomeURLsDown: some URLs fail their checks, others pass.
	ReasonSomeURLsDown = "SomeURLsDown"
	// ReasonAllURLsDown: every URL fails its checks.
	ReasonAllURLsDown = "AllURLsDown"
	// ReasonPluginFindings: the URLs pass, but a plugin reports a Warning or an Error.
	ReasonPluginFindings = "PluginFindings"
)

// The plugins webmon knows, compiled into the checker. The operator reports
// any other name in the SpecValid condition.
const (
	// PluginTLSExpiry reports days until the certificate expires.
	PluginTLSExpiry = "tls-expiry"
	// PluginHTMLStats keeps running statistics of a page and flags outliers.
	PluginHTMLStats = "html-stats"
	// PluginDNSBlocklist flags domains a filtering resolver refuses.
	PluginDNSBlocklist = "dns-blocklist"
	// PluginJSONPath asserts a value at a path of a JSON body.
	PluginJSONPath = "json-path"
)

// KnownPlugins are the names of the plugins webmon knows.
func KnownPlugins() []string {
	return []string{PluginTLSExpiry, PluginHTMLStats, PluginDNSBlocklist, PluginJSONPath}
}
