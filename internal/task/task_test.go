package task

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"k8s.io/utils/ptr"

	"github.com/webmon-dev/webmon/test/testbed"
)

func fullTask() *Task {
	at := time.Date(2026, 11, 22, 10, 0, 7, 123456789, time.UTC)
	return &Task{
		Namespace: "shop", Name: "storefront", UID: "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", Generation: 7,
		URL: "https://shop.example.com/health", URLIndex: 2,
		Method: "POST", Timeout: 5 * time.Second, Body: `{"ping":true}`,
		Headers: []Header{
			{Name: "Accept", Value: "application/json"},
			{Name: "Authorization", SecretRef: &SecretKeyRef{Name: "shop-auth", Key: "token"}},
		},
		Expect: Expectations{
			StatusCodes: []string{"200-299", "304"}, BodyRegex: "ok", BodyNotRegex: "(?i)error",
			MaxLatency: 1500 * time.Millisecond, FollowRedirects: ptr.To(false), MaxRedirects: ptr.To[int32](0), TLSSkipVerify: true,
		},
		Plugins: []Plugin{
			{Name: "tls-expiry", Config: map[string]string{"warnDays": "21", "criticalDays": "7"}},
			{Name: "html-stats"},
		},
		FailureThreshold: 3, SuccessThreshold: 2,
		ScheduledAt: at, Deadline: at.Add(30 * time.Second),
		Trigger: TriggerCheckNow, CheckNow: "2026-11-22T10:00:07Z",
	}
}

func TestRoundTrip(t *testing.T) {
	want := fullTask()
	var got Task
	if err := Unmarshal(want.Marshal(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, &got); diff != "" {
		t.Errorf("decoded task differs (-sent +decoded):\n%s", diff)
	}

	// Presence is kept: a Website that says nothing about redirects is not
	// read back as "do not follow".
	minimal := &Task{UID: "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", URL: "http://a/", ScheduledAt: time.Unix(1, 0), Deadline: time.Unix(2, 0)}
	if err := Unmarshal(minimal.Marshal(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Expect.FollowRedirects != nil || got.Expect.MaxRedirects != nil {
		t.Errorf("unset redirect settings decoded as %v, %v", got.Expect.FollowRedirects, got.Expect.MaxRedirects)
	}
}

func TestPrefixSharesWebsiteFields(t *testing.T) {
	task := fullTask()
	prefix := NewPrefix(task)
	msg := prefix.Append(nil, "https://shop.example.com/", 0, task.ScheduledAt, task.Deadline, TriggerSchedule, "")
	var got Task
	if err := Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	if got.URL != "https://shop.example.com/" || got.URLIndex != 0 || got.Trigger != TriggerSchedule || got.CheckNow != "" {
		t.Errorf("per-URL fields: got %q #%d trigger %d check-now %q", got.URL, got.URLIndex, got.Trigger, got.CheckNow)
	}
	if got.Name != task.Name || len(got.Plugins) != 2 || got.Expect.BodyRegex != "ok" {
		t.Errorf("Website fields lost: %+v", got)
	}
}

func TestUnknownFieldsAreSkipped(t *testing.T) {
	msg := fullTask().Marshal()
	// A newer scheduler's fields, of every wire type.
	msg = protowire.AppendTag(msg, 100, protowire.BytesType)
	msg = protowire.AppendString(msg, "future")
	msg = protowire.AppendTag(msg, 101, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 42)
	msg = protowire.AppendTag(msg, 102, protowire.Fixed32Type)
	msg = protowire.AppendFixed32(msg, 7)
	var got Task
	if err := Unmarshal(msg, &got); err != nil {
		t.Fatalf("a message with unknown fields: %v", err)
	}
	if diff := cmp.Diff(fullTask(), &got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestBadMessages(t *testing.T) {
	good := fullTask().Marshal()
	for name, tc := range map[string]struct {
		msg  []byte
		want error
	}{
		"empty":           {nil, ErrEmpty},
		"version 0":       {append([]byte{0}, good[1:]...), ErrUnknownVersion},
		"version 2":       {append([]byte{2}, good[1:]...), ErrUnknownVersion},
		"JSON":            {[]byte(`{"url":"http://a/"}`), ErrUnknownVersion},
		"truncated":       {good[:len(good)-3], ErrMalformed},
		"only a version":  {[]byte{Version}, ErrMalformed},
		"bad tag":         {[]byte{Version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		"length too long": {[]byte{Version, 0x2a, 0x7f, 'h'}, ErrMalformed},
		// A UID PostgreSQL would refuse: the whole batch of its result
		// would fail on every retry.
		"UID not a UUID": {(&Task{UID: "shop", URL: "http://a/", ScheduledAt: time.Unix(1, 0), Deadline: time.Unix(2, 0)}).Marshal(), ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			var got Task
			err := Unmarshal(tc.msg, &got)
			if !errors.Is(err, tc.want) {
				t.Errorf("Unmarshal: got %v, want %v", err, tc.want)
			}
		})
	}
	// Every truncation of a good message is an error or a shorter task,
	// never a panic.
	for i := range good {
		var got Task
		_ = Unmarshal(good[:i], &got)
	}
}

func TestForWebsite(t *testing.T) {
	samples, err := testbed.SampleWebsites()
	if err != nil {
		t.Fatal(err)
	}
	shop := samples["monitoring_v1alpha1_website_shop"]
	shop.UID = "uid-1"
	got := ForWebsite(shop)
	if got.UID != "uid-1" || got.Name != "shop" || len(got.Plugins) != 2 || got.Plugins[0].Config["warnDays"] != "21" ||
		got.Expect.MaxLatency != 2*time.Second || got.Expect.StatusCodes[0] != "200-299" || got.FailureThreshold != 2 {
		t.Errorf("shop task: %+v", got)
	}
	auth := samples["monitoring_v1alpha1_website_auth"]
	for _, h := range ForWebsite(auth).Headers {
		if h.SecretRef != nil && h.Value != "" {
			t.Errorf("header %s carries a value and a Secret reference", h.Name)
		}
	}
}

// The format decision, measured: a typical shop task (3 plugins, expectations)
// and a minimal one, as protowire and as JSON. go test -bench=. ./internal/task
func BenchmarkEncoding(b *testing.B) {
	shop := fullTask()
	minimal := &Task{Namespace: "default", Name: "example", UID: shop.UID, Generation: 1, URL: "https://example.com/",
		Method: "GET", Timeout: 10 * time.Second, FailureThreshold: 1, SuccessThreshold: 1,
		ScheduledAt: shop.ScheduledAt, Deadline: shop.Deadline}
	for _, tc := range []struct {
		name string
		task *Task
	}{{"shop", shop}, {"minimal", minimal}} {
		prefix := NewPrefix(tc.task)
		b.Run("protowire-prefix/"+tc.name, func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				buf = prefix.Append(buf[:0], tc.task.URL, tc.task.URLIndex, tc.task.ScheduledAt, tc.task.Deadline, TriggerSchedule, "")
			}
			b.ReportMetric(float64(len(buf)), "bytes/msg")
		})
		b.Run("json/"+tc.name, func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				buf, _ = json.Marshal(tc.task)
			}
			b.ReportMetric(float64(len(buf)), "bytes/msg")
		})
		b.Run("protowire-decode/"+tc.name, func(b *testing.B) {
			msg := tc.task.Marshal()
			var t Task
			for b.Loop() {
				if err := Unmarshal(msg, &t); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("json-decode/"+tc.name, func(b *testing.B) {
			msg, _ := json.Marshal(tc.task)
			for b.Loop() {
				var t Task
				if err := json.Unmarshal(msg, &t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzUnmarshal: no message makes Unmarshal panic, and a task it decodes
// encodes and decodes to the same task.
func FuzzUnmarshal(f *testing.F) {
	full := fullTask().Marshal()
	minimal := (&Task{UID: "6f1c7a52-3f0e-4c8e-9a53-2b0f3f6f9d11", URL: "http://a/", ScheduledAt: time.Unix(1, 0), Deadline: time.Unix(2, 0)}).Marshal()
	for _, seed := range [][]byte{
		full, minimal,
		full[:len(full)/2], full[:len(full)-1], minimal[:len(minimal)-9],
		nil, {Version}, {2, 1, 2, 3}, []byte(`{"url":"http://a/"}`),
		{Version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{Version, 0x2a, 0x7f, 'h'},
		append(append([]byte{}, minimal...), 0x42, 0x01, 0xff), // expectations that do not parse
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var first Task
		if err := Unmarshal(msg, &first); err != nil {
			if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v wraps none of the kinds", err)
			}
			return
		}
		var second Task
		if err := Unmarshal(first.Marshal(), &second); err != nil {
			t.Fatalf("a decoded task does not decode once encoded again: %v\n%+v", err, first)
		}
		if diff := cmp.Diff(&first, &second); diff != "" {
			t.Errorf("decoded, encoded and decoded again (-first +second):\n%s", diff)
		}
	})
}
