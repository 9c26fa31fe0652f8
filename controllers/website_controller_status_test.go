package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
)

func TestValidateSpec(t *testing.T) {
	tests := map[string]struct {
		spec        monitoringv1alpha1.WebsiteSpec
		wantReasons []string
	}{
		"valid": {spec: monitoringv1alpha1.WebsiteSpec{
			Expect:  monitoringv1alpha1.Expectations{BodyRegex: `(?i)welcome`, BodyNotRegex: `error \d+`},
			Plugins: []monitoringv1alpha1.PluginSpec{{Name: "tls-expiry"}, {Name: "html-stats"}, {Name: "dns-blocklist"}, {Name: "json-path"}},
		}},
		"bad bodyRegex":    {spec: monitoringv1alpha1.WebsiteSpec{Expect: monitoringv1alpha1.Expectations{BodyRegex: `a(b`}}, wantReasons: []string{"InvalidRegex"}},
		"bad bodyNotRegex": {spec: monitoringv1alpha1.WebsiteSpec{Expect: monitoringv1alpha1.Expectations{BodyNotRegex: `a**`}}, wantReasons: []string{"InvalidRegex"}},
		"Perl lookahead is not RE2": {spec: monitoringv1alpha1.WebsiteSpec{Expect: monitoringv1alpha1.Expectations{BodyRegex: `foo(?=bar)`}},
			wantReasons: []string{"InvalidRegex"}},
		"unknown plugin": {spec: monitoringv1alpha1.WebsiteSpec{Plugins: []monitoringv1alpha1.PluginSpec{{Name: "screenshot"}}},
			wantReasons: []string{"UnknownPlugin"}},
		"both": {spec: monitoringv1alpha1.WebsiteSpec{
			Expect:  monitoringv1alpha1.Expectations{BodyRegex: `(`},
			Plugins: []monitoringv1alpha1.PluginSpec{{Name: "nope"}},
		}, wantReasons: []string{"InvalidRegex", "UnknownPlugin"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, p := range validateSpec(&tc.spec) {
				got = append(got, p.reason)
			}
			if diff := cmp.Diff(tc.wantReasons, got); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSamplesAreValid: the samples users copy must not come up SpecValid=False.
func TestSamplesAreValid(t *testing.T) {
	samples, err := testbed.SampleWebsites()
	if err != nil || len(samples) < 3 {
		t.Fatalf("want at least 3 samples in config/samples, got %d (%v)", len(samples), err)
	}
	for name, ws := range samples {
		if problems := validateSpec(&ws.Spec); len(problems) > 0 {
			t.Errorf("%s: %v", name, problems)
		}
	}
}

func TestSetScheduledCondition(t *testing.T) {
	available := &appsv1.Deployment{Status: appsv1.DeploymentStatus{AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}}
	progressing := &appsv1.Deployment{Status: appsv1.DeploymentStatus{AvailableReplicas: 0}}
	lostAvailability := &appsv1.Deployment{Status: appsv1.DeploymentStatus{AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}}}}
	tests := map[string]struct {
		suspend    bool
		scheduler  *appsv1.Deployment
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		"available":              {scheduler: available, wantStatus: metav1.ConditionTrue, wantReason: "SchedulerAvailable"},
		"no Deployment yet":      {scheduler: nil, wantStatus: metav1.ConditionFalse, wantReason: "SchedulerUnavailable"},
		"no replica available":   {scheduler: progressing, wantStatus: metav1.ConditionFalse, wantReason: "SchedulerUnavailable"},
		"Available=False":        {scheduler: lostAvailability, wantStatus: metav1.ConditionFalse, wantReason: "SchedulerUnavailable"},
		"suspended beats all":    {suspend: true, scheduler: available, wantStatus: metav1.ConditionFalse, wantReason: "Suspended"},
		"suspended, no schedule": {suspend: true, scheduler: nil, wantStatus: metav1.ConditionFalse, wantReason: "Suspended"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Generation: 4}}
			ws.Spec.Suspend = tc.suspend
			setScheduledCondition(ws, 2, tc.scheduler, metav1.Now())
			c := meta.FindStatusCondition(ws.Status.Conditions, monitoringv1alpha1.ConditionScheduled)
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != 4 {
				t.Errorf("got %s/%s at generation %d, want %s/%s at 4", c.Status, c.Reason, c.ObservedGeneration, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestSetOperatorStatusStates(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	tests := map[string]struct {
		suspend            bool
		state              monitoringv1alpha1.WebsiteState
		want               monitoringv1alpha1.WebsiteState
		wantTransitionTime *metav1.Time
	}{
		"new Website is Pending":       {state: "", want: "Pending", wantTransitionTime: &t1},
		"checker's Up is kept":         {state: "Up", want: "Up", wantTransitionTime: &t0},
		"checker's Down is kept":       {state: "Down", want: "Down", wantTransitionTime: &t0},
		"suspending":                   {suspend: true, state: "Up", want: "Suspended", wantTransitionTime: &t1},
		"resuming waits for a check":   {state: "Suspended", want: "Pending", wantTransitionTime: &t1},
		"still suspended, no new time": {suspend: true, state: "Suspended", want: "Suspended", wantTransitionTime: &t0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ws := &monitoringv1alpha1.Website{ObjectMeta: metav1.ObjectMeta{Generation: 7}}
			ws.Spec.Suspend = tc.suspend
			ws.Spec.URLs = []monitoringv1alpha1.WebsiteURL{"https://a.example/", "https://b.example/"}
			ws.Status.State = tc.state
			ws.Status.LastTransitionTime = &t0
			setOperatorStatus(ws, 3, t1)
			st := ws.Status
			if st.State != tc.want || !st.LastTransitionTime.Equal(tc.wantTransitionTime) || *st.Shard != 3 || st.URLCount != 2 || st.ObservedGeneration != 7 {
				t.Errorf("got state=%s transition=%v shard=%d urls=%d generation=%d; want %s, %v, 3, 2, 7",
					st.State, st.LastTransitionTime, *st.Shard, st.URLCount, st.ObservedGeneration, tc.want, tc.wantTransitionTime)
			}
		})
	}
}
