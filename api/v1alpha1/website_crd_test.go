package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/test/testbed"
)

// k8sClient talks straight to a real kube-apiserver (envtest) on which the
// generated CRD is installed: what it accepts is what users' clusters accept.
var k8sClient client.Client

func TestMain(m *testing.M) {
	os.Exit(runWithEnvtest(m))
}

func runWithEnvtest(m *testing.M) int {
	_, cfg, stop, err := testbed.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	scheme := runtime.NewScheme()
	if err := monitoringv1alpha1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// websiteBuilder builds test Websites; each method changes one thing.
type websiteBuilder struct{ ws *monitoringv1alpha1.Website }

func newWebsite(name string) websiteBuilder {
	return websiteBuilder{&monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       monitoringv1alpha1.WebsiteSpec{URLs: []monitoringv1alpha1.WebsiteURL{"https://shop.example.com/"}},
	}}
}

func (b websiteBuilder) URLs(urls ...string) websiteBuilder {
	b.ws.Spec.URLs = nil
	for _, u := range urls {
		b.ws.Spec.URLs = append(b.ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(u))
	}
	return b
}

func (b websiteBuilder) Interval(d time.Duration) websiteBuilder {
	b.ws.Spec.Interval = metav1.Duration{Duration: d}
	return b
}

func (b websiteBuilder) Timeout(d time.Duration) websiteBuilder {
	b.ws.Spec.Timeout = metav1.Duration{Duration: d}
	return b
}

func (b websiteBuilder) With(mutate func(*monitoringv1alpha1.WebsiteSpec)) websiteBuilder {
	mutate(&b.ws.Spec)
	return b
}

func (b websiteBuilder) Build() *monitoringv1alpha1.Website { return b.ws.DeepCopy() }

func create(t *testing.T, ws *monitoringv1alpha1.Website) {
	t.Helper()
	if err := k8sClient.Create(t.Context(), ws); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), ws) })
}

func TestCreateAndReadBack(t *testing.T) {
	ctx := t.Context()
	ws := newWebsite("shop").URLs("https://shop.example.com/", "https://shop.example.com/health").
		Interval(30 * time.Second).
		With(func(s *monitoringv1alpha1.WebsiteSpec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{
				{Name: "Accept", Value: ptr.To("text/html")},
				{Name: "Authorization", ValueFrom: &monitoringv1alpha1.HeaderValueSource{
					SecretKeyRef: monitoringv1alpha1.SecretKeySelector{Name: "shop-auth", Key: "token"}}},
			}
			s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "tls-expiry", Config: map[string]string{"warnDays": "21"}}}
		}).Build()
	create(t, ws)

	got := &monitoringv1alpha1.Website{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(ws), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ws.Spec, got.Spec); diff != "" {
		t.Errorf("spec read back differs (-want +got):\n%s", diff)
	}

	// The status subresource is separate from the spec.
	got.Status.State = monitoringv1alpha1.WebsiteStateUp
	got.Status.Shard = ptr.To[int32](0)
	got.Status.Uptime = &monitoringv1alpha1.UptimeSummary{Last24h: "99.90%", Ratio24h: ptr.To(0.999)}
	got.Status.ObservedGeneration = got.Generation
	if err := k8sClient.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	again := &monitoringv1alpha1.Website{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(ws), again); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got.Status, again.Status); diff != "" || again.Generation != got.Generation {
		t.Errorf("after a status update, generation %d -> %d, status (-want +got):\n%s", got.Generation, again.Generation, diff)
	}
}

func TestDefaults(t *testing.T) {
	ws := newWebsite("defaults").Build()
	create(t, ws)
	want := monitoringv1alpha1.WebsiteSpec{
		URLs:     ws.Spec.URLs,
		Interval: metav1.Duration{Duration: time.Minute},
		Timeout:  metav1.Duration{Duration: 10 * time.Second},
		Method:   "GET",
		Expect: monitoringv1alpha1.Expectations{
			StatusCodes:     []monitoringv1alpha1.StatusCodeRange{"200-399"},
			FollowRedirects: ptr.To(true),
			MaxRedirects:    ptr.To[int32](10),
		},
		FailureThreshold: 3,
		SuccessThreshold: 1,
	}
	if diff := cmp.Diff(want, ws.Spec); diff != "" {
		t.Errorf("defaulted spec (-want +got):\n%s", diff)
	}
}

// TestSamplesAreAccepted creates every sample in config/samples, the files
// users copy first.
func TestSamplesAreAccepted(t *testing.T) {
	samples, err := testbed.SampleWebsites()
	if err != nil || len(samples) < 3 {
		t.Fatalf("want at least 3 samples in config/samples, got %d (%v)", len(samples), err)
	}
	for name, ws := range samples {
		t.Run(name, func(t *testing.T) {
			ws.Name = "sample-" + ws.Name
			ws.Namespace = "default"
			create(t, ws)
		})
	}
}

// TestAdmissionRejectsInvalidWebsites checks that the apiserver itself turns
// bad Websites away, with a message that names the problem.
func TestAdmissionRejectsInvalidWebsites(t *testing.T) {
	type spec = monitoringv1alpha1.WebsiteSpec
	hundredAndOne := make([]string, 101)
	for i := range hundredAndOne {
		hundredAndOne[i] = fmt.Sprintf("https://shop.example.com/page/%d", i)
	}
	tests := map[string]struct {
		website *monitoringv1alpha1.Website
		want    string
	}{
		"no URLs":          {newWebsite("x").URLs().Build(), "spec.urls"},
		"101 URLs":         {newWebsite("x").URLs(hundredAndOne...).Build(), "must have at most 100 items"},
		"not http":         {newWebsite("x").URLs("ftp://files.example.com/").Build(), "must be an absolute http:// or https:// URL"},
		"relative URL":     {newWebsite("x").URLs("/health/check").Build(), "must be an absolute http:// or https:// URL"},
		"URL without host": {newWebsite("x").URLs("http:///health").Build(), "must be an absolute http:// or https:// URL"},
		"URL too long":     {newWebsite("x").URLs("https://example.com/" + strings.Repeat("a", 2048)).Build(), "Too long"},
		"duplicate URLs": {newWebsite("x").URLs("https://a.example.com/", "https://a.example.com/").Build(),
			"Duplicate value"},
		"interval under 5s": {newWebsite("x").Interval(time.Second).Build(), "interval must be at least 5s"},
		"interval over 24h": {newWebsite("x").Interval(48 * time.Hour).Build(), "interval must be at most 24h"},
		"timeout equal to interval": {newWebsite("x").Interval(30 * time.Second).Timeout(30 * time.Second).Build(),
			"timeout (10s unless set) must be shorter than interval"},
		"default timeout over a short interval": {newWebsite("x").Interval(5 * time.Second).Build(),
			"timeout (10s unless set) must be shorter than interval"},
		"timeout under 100ms": {newWebsite("x").Timeout(time.Millisecond).Build(), "timeout must be at least 100ms"},
		"unknown method": {newWebsite("x").With(func(s *spec) { s.Method = "FETCH" }).Build(),
			`supported values: "GET", "HEAD", "POST"`},
		"body with GET": {newWebsite("x").With(func(s *spec) { s.Body = `{"q":1}` }).Build(),
			"body needs a method that sends one"},
		"header with value and valueFrom": {newWebsite("x").With(func(s *spec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "Authorization", Value: ptr.To("x"),
				ValueFrom: &monitoringv1alpha1.HeaderValueSource{SecretKeyRef: monitoringv1alpha1.SecretKeySelector{Name: "s", Key: "k"}}}}
		}).Build(), "set exactly one of value and valueFrom"},
		"header without a value": {newWebsite("x").With(func(s *spec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "X-Token"}}
		}).Build(), "set exactly one of value and valueFrom"},
		"header Content-Length": {newWebsite("x").With(func(s *spec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "content-length", Value: ptr.To("3")}}
		}).Build(), "cannot be overridden"},
		"header name with a space": {newWebsite("x").With(func(s *spec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "X Token", Value: ptr.To("3")}}
		}).Build(), "a header name has only letters, digits"},
		"secret ref with a bad name": {newWebsite("x").With(func(s *spec) {
			s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "Authorization",
				ValueFrom: &monitoringv1alpha1.HeaderValueSource{SecretKeyRef: monitoringv1alpha1.SecretKeySelector{Name: "Shop_Auth", Key: "token"}}}}
		}).Build(), "a Secret name has lowercase letters"},
		"status range high to low": {newWebsite("x").With(func(s *spec) {
			s.Expect.StatusCodes = []monitoringv1alpha1.StatusCodeRange{"399-200"}
		}).Build(), "a status code range goes from low to high"},
		"status code 600": {newWebsite("x").With(func(s *spec) {
			s.Expect.StatusCodes = []monitoringv1alpha1.StatusCodeRange{"600"}
		}).Build(), "a status code is from 100 to 599"},
		"status code that is not a number": {newWebsite("x").With(func(s *spec) {
			s.Expect.StatusCodes = []monitoringv1alpha1.StatusCodeRange{"2xx"}
		}).Build(), "a status code is from 100 to 599"},
		"maxLatency over timeout": {newWebsite("x").With(func(s *spec) {
			s.Expect.MaxLatency = &metav1.Duration{Duration: 20 * time.Second}
		}).Build(), "expect.maxLatency cannot exceed timeout"},
		"11 redirects": {newWebsite("x").With(func(s *spec) { s.Expect.MaxRedirects = ptr.To[int32](11) }).Build(),
			"spec.expect.maxRedirects"},
		"failureThreshold 0": {newWebsite("x").With(func(s *spec) { s.FailureThreshold = -1 }).Build(),
			"spec.failureThreshold"},
		"negative successThreshold": {newWebsite("x").With(func(s *spec) { s.SuccessThreshold = -2 }).Build(),
			"spec.successThreshold"},
		"plugin name in capitals": {newWebsite("x").With(func(s *spec) {
			s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "TLS Expiry"}}
		}).Build(), "a plugin name has lowercase letters"},
		"plugin listed twice": {newWebsite("x").With(func(s *spec) {
			s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "tls-expiry"}, {Name: "tls-expiry"}}
		}).Build(), "Duplicate value"},
		"plugin config value too long": {newWebsite("x").With(func(s *spec) {
			s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "json-path", Config: map[string]string{"expr": strings.Repeat("a", 1025)}}}
		}).Build(), "values at most 1024"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := k8sClient.Create(t.Context(), tc.website)
			if err == nil {
				_ = k8sClient.Delete(context.Background(), tc.website)
				t.Fatalf("created; want rejection mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rejected with %q\nwant a message mentioning %q", err, tc.want)
			}
		})
	}
}

// TestAdmissionRejectsMalformedDurations sends what the Go types cannot
// express: durations that do not parse.
func TestAdmissionRejectsMalformedDurations(t *testing.T) {
	for field, value := range map[string]string{"interval": "soon", "timeout": "1.5 days", "expect.maxLatency": "2 seconds"} {
		t.Run(field, func(t *testing.T) {
			spec := map[string]any{"urls": []any{"https://shop.example.com/"}}
			if parent, child, nested := strings.Cut(field, "."); nested {
				spec[parent] = map[string]any{child: value}
			} else {
				spec[field] = value
			}
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": monitoringv1alpha1.GroupVersion.String(),
				"kind":       "Website",
				"metadata":   map[string]any{"name": "malformed", "namespace": "default"},
				"spec":       spec,
			}}
			err := k8sClient.Create(t.Context(), u)
			if err == nil {
				_ = k8sClient.Delete(context.Background(), u)
				t.Fatalf("created with %s=%q; want a rejection", field, value)
			}
			if want := "spec." + field; !strings.Contains(err.Error(), want) {
				t.Errorf("rejected with %q\nwant a message naming %s", err, want)
			}
		})
	}
}

// TestPrinterColumns checks what `kubectl get websites` shows, as installed.
func TestPrinterColumns(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8sClient.Get(t.Context(), client.ObjectKey{Name: "websites.monitoring.webmon.dev"}, crd); err != nil {
		t.Fatal(err)
	}
	columns := crd.Spec.Versions[0].AdditionalPrinterColumns
	got := make([]string, 0, len(columns))
	for _, c := range columns {
		col := c.Name
		if c.Priority > 0 {
			col += " (wide)"
		}
		got = append(got, col)
	}
	want := []string{"State", "URLs", "Interval", "Uptime", "Latency", "Last Check", "Age", "Shard (wide)", "URL (wide)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("printer columns (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ws"}, crd.Spec.Names.ShortNames); diff != "" {
		t.Errorf("short names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"webmon"}, crd.Spec.Names.Categories); diff != "" {
		t.Errorf("categories (-want +got):\n%s", diff)
	}
}
