package task

import (
	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
)

// ForWebsite is the part of a task that comes from a Website: everything
// but the URL and the times. Defaults come from the CRD, so the Website is
// taken as the apiserver returns it.
func ForWebsite(ws *monitoringv1alpha1.Website) *Task {
	spec := &ws.Spec
	t := &Task{
		Namespace:        ws.Namespace,
		Name:             ws.Name,
		UID:              string(ws.UID),
		Generation:       ws.Generation,
		Method:           string(spec.Method),
		Timeout:          spec.Timeout.Duration,
		Body:             spec.Body,
		FailureThreshold: spec.FailureThreshold,
		SuccessThreshold: spec.SuccessThreshold,
		Expect: Expectations{
			BodyRegex:       spec.Expect.BodyRegex,
			BodyNotRegex:    spec.Expect.BodyNotRegex,
			FollowRedirects: spec.Expect.FollowRedirects,
			MaxRedirects:    spec.Expect.MaxRedirects,
			TLSSkipVerify:   spec.Expect.TLSSkipVerify,
		},
	}
	if spec.Expect.MaxLatency != nil {
		t.Expect.MaxLatency = spec.Expect.MaxLatency.Duration
	}
	for _, c := range spec.Expect.StatusCodes {
		t.Expect.StatusCodes = append(t.Expect.StatusCodes, string(c))
	}
	for _, h := range spec.Headers {
		header := Header{Name: h.Name}
		switch {
		case h.Value != nil:
			header.Value = *h.Value
		case h.ValueFrom != nil:
			ref := h.ValueFrom.SecretKeyRef
			header.SecretRef = &SecretKeyRef{Name: ref.Name, Key: ref.Key}
		}
		t.Headers = append(t.Headers, header)
	}
	for _, p := range spec.Plugins {
		t.Plugins = append(t.Plugins, Plugin{Name: p.Name, Config: p.Config})
	}
	return t
}
