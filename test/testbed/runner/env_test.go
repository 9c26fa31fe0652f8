package runner

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "B": "$(A)", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":           "plain",
		"$(A)":            "alpha",
		"x-$(A)-$(A)":     "x-alpha-alpha",
		"$(B)":            "$(A)", // no second round
		"$(EMPTY)!":       "!",
		"$(MISSING)":      "$(MISSING)",
		"$$(A)":           "$(A)",
		"$$":              "$",
		"$A":              "$A",
		"cost: 5$":        "cost: 5$",
		"$(A":             "$(A",
		"$(A)$(MISSING)x": "alpha$(MISSING)x",
		"$()":             "$()",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1",
			Labels: map[string]string{"app": "x", "tier": "web"}, Annotations: map[string]string{"note": `say "hi"`}},
		Spec: corev1.PodSpec{NodeName: "n", ServiceAccountName: "sa"},
	}
	for path, want := range map[string]string{
		"metadata.name":                "p",
		"metadata.namespace":           "ns",
		"metadata.uid":                 "u1",
		"metadata.labels['app']":       "x",
		"metadata.annotations['note']": `say "hi"`,
		"metadata.labels":              "app=\"x\"\ntier=\"web\"",
		"spec.nodeName":                "n",
		"spec.serviceAccountName":      "sa",
		"status.podIP":                 "127.0.0.1",
		"status.hostIP":                "127.0.0.1",
	} {
		got, err := fieldValue(pod, path)
		if err != nil || got != want {
			t.Errorf("fieldValue(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(pod, "spec.schedulerName"); err == nil {
		t.Error("an unsupported field gave no error")
	}
}

func TestMountsLocal(t *testing.T) {
	ms := mounts{{inside: "/etc/webmon/db", local: "/r/db"}, {inside: "/etc/webmon", local: "/r/cfg"}, {inside: "/etc/motd", local: "/r/motd/greeting"}}
	for in, want := range map[string]string{
		"/etc/webmon/db":     "/r/db",
		"/etc/webmon/db/url": "/r/db/url",
		"/etc/webmon/other":  "/r/cfg/other",
		"/etc/motd":          "/r/motd/greeting",
		"/etc/webmon-not/a":  "",
		"etc/webmon/db":      "",
		"/var/run/secrets/x": "",
	} {
		got, _ := ms.local(in)
		if got != want {
			t.Errorf("local(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRewriteArgs(t *testing.T) {
	r := &Runner{}
	w := &podWorker{r: r}
	c := &container{w: w, addrs: map[string]string{}, spec: corev1.Container{Ports: []corev1.ContainerPort{
		{Name: "metrics", ContainerPort: 8080}, {Name: "health", ContainerPort: 8081}, {Name: "kafka", ContainerPort: 9092},
	}}}
	ms := mounts{{inside: "/etc/webmon/db", local: "/r/db"}}
	args := []string{
		"scheduler", "--metrics-bind-address=:8080", "--health-probe-bind-address", "0.0.0.0:8081",
		"--port=9092", "--pprof-bind-address=0", "--database-url-file=/etc/webmon/db/url", "/etc/webmon/db/x",
		"--shard=3",
	}
	got, err := c.rewriteArgsLocked(args, ms)
	if err != nil {
		t.Fatal(err)
	}
	metrics, health, kafka := c.addrs["metrics"], c.addrs["health"], c.addrs["kafka"]
	if metrics == "" || health == "" || kafka == "" || metrics == health {
		t.Fatalf("addresses not recorded by port name: %v", c.addrs)
	}
	kafkaPort := kafka[len("127.0.0.1:"):]
	want := []string{
		"scheduler", "--metrics-bind-address=" + metrics, "--health-probe-bind-address", health,
		"--port=" + kafkaPort, "--pprof-bind-address=0", "--database-url-file=/r/db/url", "/r/db/x",
		"--shard=3",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rewritten args (-want +got):\n%s", d)
	}
	for k, v := range map[string]string{"metrics-bind-address": metrics, "8080": metrics, "port": kafka, "9092": kafka} {
		if c.addrs[k] != v {
			t.Errorf("addrs[%s] = %q, want %q", k, c.addrs[k], v)
		}
	}
	// A restart keeps the ports.
	again, err := c.rewriteArgsLocked(args, ms)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, again); d != "" {
		t.Errorf("a second rewrite differs (-first +second):\n%s", d)
	}

	env := newEnv()
	env.set("WEBMON_METRICS_BIND_ADDRESS", ":8080")
	env.set("WEBMON_DATABASE_URL_FILE", "/etc/webmon/db/url")
	env.set("OTHER_PORT", "8080")
	if err := c.rewriteEnvLocked(env, ms); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"WEBMON_METRICS_BIND_ADDRESS=" + metrics, "WEBMON_DATABASE_URL_FILE=/r/db/url", "OTHER_PORT=8080"}, env.list()); d != "" {
		t.Errorf("rewritten env (-want +got):\n%s", d)
	}
}
