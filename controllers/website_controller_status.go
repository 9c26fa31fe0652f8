package controllers

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// specProblem is why a spec that passed admission cannot be checked.
type specProblem struct {
	reason, message string
}

// validateSpec finds what admission cannot: regular expressions that do not
// compile (RE2, as the checker uses) and plugins webmon does not know.
func validateSpec(spec *monitoringv1alpha1.WebsiteSpec) []specProblem {
	var problems []specProblem
	for field, expr := range map[string]string{"expect.bodyRegex": spec.Expect.BodyRegex, "expect.bodyNotRegex": spec.Expect.BodyNotRegex} {
		if expr == "" {
			continue
		}
		if _, err := regexp.Compile(expr); err != nil {
			problems = append(problems, specProblem{monitoringv1alpha1.ReasonInvalidRegex, fmt.Sprintf("%s: %v", field, err)})
		}
	}
	known := monitoringv1alpha1.KnownPlugins()
	for _, p := range spec.Plugins {
		if !slices.Contains(known, p.Name) {
			problems = append(problems, specProblem{monitoringv1alpha1.ReasonUnknownPlugin,
				fmt.Sprintf("plugin %q is unknown; webmon has %s", p.Name, strings.Join(known, ", "))})
		}
	}
	// Map order must not make the status flap.
	slices.SortFunc(problems, func(a, b specProblem) int { return strings.Compare(a.message, b.message) })
	return problems
}

// setSpecValidCondition reports the spec's problems, or that it has none.
func setSpecValidCondition(ws *monitoringv1alpha1.Website, problems []specProblem, now metav1.Time) {
	cond := metav1.Condition{
		Type:               monitoringv1alpha1.ConditionSpecValid,
		Status:             metav1.ConditionTrue,
		Reason:             monitoringv1alpha1.ReasonSpecValid,
		Message:            "the spec can be checked as written",
		ObservedGeneration: ws.Generation,
		LastTransitionTime: now,
	}
	if len(problems) > 0 {
		messages := make([]string, len(problems))
		for i, p := range problems {
			messages[i] = p.message
		}
		cond.Status = metav1.ConditionFalse
		cond.Reason = problems[0].reason
		cond.Message = strings.Join(messages, "; ")
	}
	meta.SetStatusCondition(&ws.Status.Conditions, cond)
}

// setScheduledCondition reports whether the Website's shard has a running
// scheduler; scheduler is nil when its Deployment does not exist.
func setScheduledCondition(ws *monitoringv1alpha1.Website, shard int32, scheduler *appsv1.Deployment, now metav1.Time) {
	cond := metav1.Condition{
		Type:               monitoringv1alpha1.ConditionScheduled,
		ObservedGeneration: ws.Generation,
		LastTransitionTime: now,
	}
	name := SchedulerDeploymentName(shard)
	switch {
	case ws.Spec.Suspend:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, monitoringv1alpha1.ReasonSuspended, "spec.suspend is true: no checks are scheduled"
	case deploymentAvailable(scheduler):
		cond.Status, cond.Reason = metav1.ConditionTrue, monitoringv1alpha1.ReasonSchedulerAvailable
		cond.Message = fmt.Sprintf("checks are scheduled by shard %d (Deployment %s)", shard, name)
	default:
		// One message whether the Deployment is missing or starting, so
		// that its creation costs no status write per Website.
		cond.Status, cond.Reason = metav1.ConditionFalse, monitoringv1alpha1.ReasonSchedulerUnavailable
		cond.Message = fmt.Sprintf("waiting for Deployment %s of shard %d to have an available replica", name, shard)
	}
	meta.SetStatusCondition(&ws.Status.Conditions, cond)
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	if d == nil || d.Status.AvailableReplicas < 1 {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return true
}

// setOperatorStatus sets the parts of the status the operator owns: the
// shard, the URL count, the Pending and Suspended states, and the
// observed generation. Up, Degraded and Down are the checkers'.
func setOperatorStatus(ws *monitoringv1alpha1.Website, shard int32, now metav1.Time) {
	st := &ws.Status
	st.Shard = ptr.To(shard)
	st.URLCount = int32(len(ws.Spec.URLs))
	st.ObservedGeneration = ws.Generation
	state := st.State
	switch {
	case ws.Spec.Suspend:
		state = monitoringv1alpha1.WebsiteStateSuspended
	case state == "" || state == monitoringv1alpha1.WebsiteStateSuspended:
		state = monitoringv1alpha1.WebsiteStatePending
	}
	if state != st.State {
		st.State = state
		st.LastTransitionTime = &now
	}
}
