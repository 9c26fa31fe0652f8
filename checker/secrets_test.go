package checker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
)

// planted is a header value kept in a Secret: it must never appear
// anywhere webmon writes.
const planted = "Bearer planted-5ecret-0xC0FFEE"

// TestSecretValuesNeverLeak: a Website sends a header from a Secret to
// targets that echo it back (in a body its expectations reject, and in a
// JSON value a plugin quotes), and references a key the Secret lacks. The
// checks fail with their reasons, and the value appears in none of the
// task messages in Kafka, the checker's logs (at its most verbose), the
// rows in PostgreSQL, the Events, or the Website's status.
func TestSecretValuesNeverLeak(t *testing.T) {
	b := newBed(t)
	ctx := t.Context()
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.namespace, Name: "api-token"},
		Data:       map[string][]byte{"token": []byte(planted)},
	}); err != nil {
		t.Fatal(err)
	}
	echo := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".json") {
			_ = json.NewEncoder(w).Encode(map[string]string{"auth": r.Header.Get("Authorization")})
			return
		}
		_, _ = fmt.Fprintf(w, "<pre>debug: you sent Authorization: %s</pre>", r.Header.Get("Authorization"))
	})
	fromSecret := func(key string) *monitoringv1alpha1.HeaderValueSource {
		return &monitoringv1alpha1.HeaderValueSource{SecretKeyRef: monitoringv1alpha1.SecretKeySelector{Name: "api-token", Key: key}}
	}
	ws := b.website("echo", []string{echo.URL + "/debug", echo.URL + "/whoami.json"}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.FailureThreshold = 1
		s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "Authorization", ValueFrom: fromSecret("token")}}
		s.Expect.BodyNotRegex = "debug: .*"
		s.Plugins = []monitoringv1alpha1.PluginSpec{{Name: "json-path", Config: map[string]string{"expr": "{.auth}", "equals": "anonymous"}}}
	})
	missing := b.website("missing-key", []string{echo.URL + "/"}, func(s *monitoringv1alpha1.WebsiteSpec) {
		s.FailureThreshold = 1
		s.Headers = []monitoringv1alpha1.HTTPHeader{{Name: "X-Token", ValueFrom: fromSecret("no-such-key")}, {Name: "X-Plain", Value: ptr.To("inline")}}
	})

	var logs syncBuffer
	logger := zap.New(zap.WriteTo(&logs), zap.Level(zapcore.Level(-10)))
	b.start(func(o *Options) { o.Log = logger })
	at := time.Now().Add(-5 * time.Second)
	b.publish(append(tasks(ws, at), tasks(missing, at)...)...)

	eventually(t, 20*time.Second, func() error {
		if got := stored(t, string(ws.UID)); got["down/body_mismatch"] != 1 || got["up"] != 1 {
			return fmt.Errorf("echo: stored %v, want the page down with body_mismatch and the JSON up", got)
		}
		if n := stored(t, string(missing.UID))["down/secret"]; n != 1 {
			return fmt.Errorf("missing-key: stored %v, want a secret failure", stored(t, string(missing.UID)))
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		if s := b.get("echo").Status; s.State != monitoringv1alpha1.WebsiteStateDegraded || len(s.Plugins) == 0 {
			return fmt.Errorf("echo: state %s, plugins %v; want Degraded with the json-path verdict", s.State, s.Plugins)
		}
		if s := b.get("missing-key").Status; s.State != monitoringv1alpha1.WebsiteStateDown {
			return fmt.Errorf("missing-key: state %s, want Down", s.State)
		}
		return nil
	})
	// The reasons are there, without the value.
	if e := b.get("echo").Status.URLs[0].Error; !strings.Contains(e, "[redacted]") {
		t.Errorf("echo's error %q: want the excerpt with the value redacted", e)
	}
	var verdict string
	if err := db.QueryRow(ctx, "SELECT plugins::text FROM check_results WHERE website_uid = $1 AND url = $2", ws.UID, echo.URL+"/whoami.json").
		Scan(&verdict); err != nil || !strings.Contains(verdict, `is \"[redacted]\", want \"anonymous\"`) {
		t.Errorf("the JSON URL's json-path verdict %s, %v: want an Error quoting the value redacted", verdict, err)
	}
	if e := b.get("missing-key").Status.URLs[0].Error; !strings.Contains(e, `secret `+b.namespace+`/api-token has no key "no-such-key"`) {
		t.Errorf("missing-key's error %q: want it to name the Secret and the key", e)
	}

	everywhere := map[string]string{
		"the checker's logs": logs.String(),
		"Kafka":              b.topicContents(t),
		"PostgreSQL":         b.rowsOf(t, string(ws.UID), string(missing.UID)),
		"Events":             b.eventNotes(t),
		"the Websites":       b.statuses(t, "echo", "missing-key"),
	}
	for where, text := range everywhere {
		if len(text) == 0 {
			t.Errorf("%s: nothing read, so nothing proven", where)
		}
		if strings.Contains(text, "5ecret-0xC0FFEE") {
			t.Errorf("the planted Secret value is in %s", where)
		}
	}
}

// topicContents is every message value of the bed's topic.
func (b *bed) topicContents(t *testing.T) string {
	t.Helper()
	cfg, err := (&kafka.Config{Brokers: brokers}).Consumer()
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = consumer.Close() }()
	partitions, err := consumer.Partitions(b.topic)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = kc.Close() }()
	var all bytes.Buffer
	for _, p := range partitions {
		end, err := kc.GetOffset(b.topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(b.topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for msg := range pc.Messages() {
			all.Write(msg.Key)
			all.Write(msg.Value)
			if msg.Offset+1 >= end {
				break
			}
		}
		_ = pc.Close()
	}
	return all.String()
}

// rowsOf is every row webmon stored for the Websites, as JSON text.
func (b *bed) rowsOf(t *testing.T, uids ...string) string {
	t.Helper()
	var out strings.Builder
	for _, query := range []string{
		`SELECT coalesce(string_agg(row_to_json(r)::text, ''), '') FROM check_results r WHERE website_uid = ANY($1::uuid[])`,
		`SELECT coalesce(string_agg(row_to_json(u)::text, ''), '') FROM urls u WHERE website_uid = ANY($1::uuid[])`,
		`SELECT coalesce(string_agg(row_to_json(p)::text, ''), '') FROM plugin_state p JOIN urls u USING (url_id) WHERE u.website_uid = ANY($1::uuid[])`,
	} {
		var rows string
		if err := db.QueryRow(t.Context(), query, uids).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		out.WriteString(rows)
	}
	return out.String()
}

func (b *bed) eventNotes(t *testing.T) string {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(b.namespace)); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(list.Items)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		return ""
	}
	return string(raw)
}

func (b *bed) statuses(t *testing.T, names ...string) string {
	t.Helper()
	var out strings.Builder
	for _, name := range names {
		raw, err := json.Marshal(b.get(name).Status)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(raw)
	}
	return out.String()
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
