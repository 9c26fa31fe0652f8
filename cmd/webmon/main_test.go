package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/webmon-dev/webmon/internal/kafka"
)

func run(ctx context.Context, args ...string) (string, error) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t.Context(), "version")
	if err != nil || !strings.HasPrefix(out, "webmon dev (commit ") {
		t.Errorf("webmon version = %q, %v; want it to start with %q", out, err, "webmon dev (commit ")
	}
}

func TestCheckerConfigErrors(t *testing.T) {
	t.Setenv("WEBMON_DATABASE_URL", "postgres://webmon@localhost/webmon")
	ok := []string{"checker", "--kafka-brokers=localhost:9092"}
	tests := map[string]configErrorCase{
		"no brokers":            {args: []string{"checker"}, want: "kafka brokers: none given"},
		"no database":           {args: ok, env: map[string]string{"WEBMON_DATABASE_URL": ""}, want: "database URL: none given"},
		"no concurrency":        {args: append(ok, "--concurrency=0"), want: "--concurrency 0: want at least 1"},
		"pending below checks":  {args: append(ok, "--concurrency=100", "--max-pending=10"), want: "--max-pending 10: want at least --concurrency (100)"},
		"huge batch":            {args: append(ok, "--batch-size=100000"), want: "--batch-size 100000"},
		"bad body limit":        {args: append(ok, "--body-limit=lots"), want: `--body-limit "lots"`},
		"status too often":      {args: append(ok, "--status-interval=100ms"), want: "--status-interval 100ms: at least 1s"},
		"short retention":       {args: append(ok, "--hour-rollups-retention=240h"), want: "at least 31 days"},
		"no group":              {args: append(ok, "--kafka-group="), want: "--kafka-group: empty"},
		"no leader election":    {args: append(ok, "--leader-elect"), want: "unknown flag: --leader-elect"},
		"concurrency from env":  {args: ok, env: map[string]string{"WEBMON_CONCURRENCY": "lots"}, want: "$WEBMON_CONCURRENCY"},
		"bad SASL":              {args: append(ok, "--kafka-sasl-mechanism=GSSAPI"), want: `"GSSAPI"`},
		"no topic partitions":   {args: append(ok, "--kafka-topic-partitions=0"), want: "--kafka-topic-partitions 0"},
		"database file missing": {args: append(ok, "--database-url-file=/nonexistent/dsn"), want: "database URL file"},
		"bad allowed network":   {args: append(ok, "--allow-networks=10.0.0.0/8,10.1.2.3"), want: `--allow-networks "10.1.2.3": want a CIDR`},
	}
	checkConfigErrors(t, tests)
}

func TestOperatorConfigErrors(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	tests := map[string]configErrorCase{
		"no namespace":            {args: []string{"operator"}, want: "--namespace: none given"},
		"bad env value":           {args: []string{"operator"}, env: map[string]string{"WEBMON_SHARDS": "many"}, want: "$WEBMON_SHARDS"},
		"three replicas":          {args: []string{"operator", "--namespace=w", "--scheduler-replicas=3"}, want: "want 1, or 2"},
		"SASL without secret":     {args: []string{"operator", "--namespace=w", "--kafka-sasl-mechanism=PLAIN"}, want: "go together"},
		"bad memory":              {args: []string{"operator", "--namespace=w", "--scheduler-memory-limit=lots"}, want: "--scheduler-memory-limit"},
		"no brokers":              {args: []string{"operator", "--namespace=w"}, want: "--kafka-brokers: none given"},
		"bad pull policy":         {args: []string{"operator", "--namespace=w", "--scheduler-image-pull-policy=Sometimes"}, want: "want Always, IfNotPresent or Never"},
		"bad SASL mechanism":      {args: []string{"operator", "--namespace=w", "--kafka-sasl-mechanism=GSSAPI", "--kafka-sasl-secret=s"}, want: `"GSSAPI"`},
		"client cert without TLS": {args: []string{"operator", "--namespace=w", "--kafka-tls-client-cert"}, want: "needs --kafka-tls-secret"},
	}
	checkConfigErrors(t, tests)
}

func TestSchedulerConfigErrors(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	ok := []string{"scheduler", "--namespace=w", "--kafka-brokers=localhost:9092"}
	tests := map[string]configErrorCase{
		"no shard":             {args: ok, want: "--shard: none given"},
		"shard out of range":   {args: append(ok, "--shard=3", "--shards=3"), want: "--shard 3: not below --shards 3"},
		"shard from env":       {args: ok, env: map[string]string{"WEBMON_SHARD": "x"}, want: "$WEBMON_SHARD"},
		"no namespace":         {args: []string{"scheduler", "--shard=0", "--kafka-brokers=localhost:9092"}, want: "--namespace: none given"},
		"no brokers":           {args: []string{"scheduler", "--shard=0", "--namespace=w"}, want: "kafka brokers: none given"},
		"broker without port":  {args: []string{"scheduler", "--shard=0", "--namespace=w", "--kafka-brokers=kafka"}, want: `kafka broker "kafka": want host:port`},
		"lease order":          {args: append(ok, "--shard=0", "--leader-election-renew-deadline=20s"), want: "lease duration (15s) > renew deadline (20s)"},
		"no partitions":        {args: append(ok, "--shard=0", "--kafka-topic-partitions=0"), want: "--kafka-topic-partitions 0"},
		"zero lateness":        {args: append(ok, "--shard=0", "--max-lateness=0s"), want: "--max-lateness 0s"},
		"SASL without user":    {args: append(ok, "--shard=0", "--kafka-sasl-mechanism=SCRAM-SHA-512"), want: "no user name"},
		"missing CA file":      {args: append(ok, "--shard=0", "--kafka-tls-ca-file=/nonexistent/ca.crt"), want: "kafka TLS CA file"},
		"unknown SASL":         {args: append(ok, "--shard=0", "--kafka-sasl-mechanism=GSSAPI"), want: `"GSSAPI"`},
		"no in-flight room":    {args: append(ok, "--shard=0", "--max-in-flight=0"), want: "--max-in-flight 0"},
		"negative replication": {args: append(ok, "--shard=0", "--kafka-topic-replication-factor=-2"), want: "--kafka-topic-replication-factor -2"},
	}
	checkConfigErrors(t, tests)
}

// configErrorCase is a command line (and environment) that must fail with
// an error mentioning want.
type configErrorCase struct {
	args []string
	env  map[string]string
	want string
}

func checkConfigErrors(t *testing.T, tests map[string]configErrorCase) {
	t.Helper()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := run(t.Context(), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDevBrokerServesKafka(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		cmd := newRootCommand()
		w := &lineWriter{lines: out}
		cmd.SetOut(w)
		cmd.SetArgs([]string{"dev-broker", "--port", "0"})
		done <- cmd.ExecuteContext(ctx)
	}()
	var line string
	select {
	case line = <-out:
	case err := <-done:
		t.Fatalf("dev-broker exited early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("dev-broker printed nothing within 10s")
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "embedded Kafka broker listening on "))

	cfg := kafka.Config{Brokers: []string{addr}}
	sc, err := cfg.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	if n := len(client.Brokers()); n != 1 {
		t.Errorf("dev broker reports %d brokers, want 1", n)
	}
	client.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev-broker returned %v after cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev-broker did not stop within 10s of cancellation")
	}
}

type lineWriter struct{ lines chan<- string }

func (w *lineWriter) Write(p []byte) (int, error) {
	select {
	case w.lines <- string(p):
	default:
	}
	return len(p), nil
}
