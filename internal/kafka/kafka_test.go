package kafka_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/test/testbed/pki"
)

func startBroker(t *testing.T, opts kafka.DevBrokerOptions) *kafka.DevBroker {
	t.Helper()
	b, err := kafka.StartDevBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func saramaConfig(t *testing.T, cfg kafka.Config) *sarama.Config {
	t.Helper()
	sc, err := cfg.Sarama()
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestConsumerGroupOfTwo produces through an idempotent, compressed async
// producer and consumes through two members of one consumer group, as the
// scheduler and the checkers will: every message arrives, both members get
// partitions, and the committed offsets cover everything.
func TestConsumerGroupOfTwo(t *testing.T) {
	const (
		topic      = "tasks"
		group      = "checkers"
		partitions = 4
		messages   = 2000
	)
	broker := startBroker(t, kafka.DevBrokerOptions{})
	cfg := kafka.Config{Brokers: broker.Addrs(), ClientID: "webmon-test"}

	admin, err := sarama.NewClusterAdmin(cfg.Brokers, saramaConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	spec := kafka.TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: 1, Retention: time.Hour}
	if err := kafka.EnsureTopic(admin, spec); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopic(admin, spec); err != nil {
		t.Fatalf("EnsureTopic on an existing topic: %v", err)
	}
	spec.Partitions = 8
	if err := kafka.EnsureTopic(admin, spec); err == nil || !strings.Contains(err.Error(), "fewer than the 8") {
		t.Fatalf("EnsureTopic with more partitions than the topic has: got %v, want an error saying so", err)
	}

	pc := saramaConfig(t, cfg)
	pc.Producer.Idempotent = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Compression = sarama.CompressionLZ4
	pc.Producer.Return.Successes = true
	producer, err := sarama.NewAsyncProducer(cfg.Brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range messages {
			producer.Input() <- &sarama.ProducerMessage{
				Topic: topic,
				Key:   sarama.StringEncoder(fmt.Sprintf("website-%d", i%50)),
				Value: sarama.StringEncoder(fmt.Sprintf("task-%d", i)),
			}
		}
	}()
	for range messages {
		select {
		case <-producer.Successes():
		case err := <-producer.Errors():
			t.Fatalf("producing: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("timed out waiting for produce acknowledgements")
		}
	}
	if err := producer.Close(); err != nil {
		t.Fatal(err)
	}

	cc := saramaConfig(t, cfg)
	cc.Consumer.Offsets.Initial = sarama.OffsetOldest
	cc.Consumer.Group.Session.Timeout = 2 * time.Second
	cc.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	cc.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond

	seen := newSeenSet()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var members sync.WaitGroup
	handlers := make([]*recordingHandler, 2)
	for m := range handlers {
		handlers[m] = &recordingHandler{seen: seen}
		cg, err := sarama.NewConsumerGroup(cfg.Brokers, group, cc)
		if err != nil {
			t.Fatal(err)
		}
		members.Go(func() {
			defer cg.Close()
			for ctx.Err() == nil {
				if err := cg.Consume(ctx, []string{topic}, handlers[m]); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
					t.Errorf("member %d: %v", m, err)
					return
				}
			}
		})
	}

	deadline := time.After(60 * time.Second)
	for seen.count() != messages || !handlers[0].hadClaims() || !handlers[1].hadClaims() {
		select {
		case <-deadline:
			t.Fatalf("after 60s: %d of %d messages consumed; member claims: %v, %v",
				seen.count(), messages, handlers[0].hadClaims(), handlers[1].hadClaims())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	members.Wait() // closing the members commits their marked offsets

	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for p, block := range offsets.Blocks[topic] {
		if block.Err != sarama.ErrNoError {
			t.Fatalf("partition %d offset: %v", p, block.Err)
		}
		committed += block.Offset
	}
	if committed != messages {
		t.Errorf("committed offsets add up to %d, want %d", committed, messages)
	}
}

type seenSet struct {
	mu     sync.Mutex
	values map[string]struct{}
}

func newSeenSet() *seenSet { return &seenSet{values: map[string]struct{}{}} }

func (s *seenSet) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[v] = struct{}{}
}

func (s *seenSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

type recordingHandler struct {
	seen   *seenSet
	mu     sync.Mutex
	claims int
}

func (h *recordingHandler) hadClaims() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.claims > 0
}

func (h *recordingHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ps := range s.Claims() {
		h.claims += len(ps)
	}
	return nil
}

func (h *recordingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *recordingHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		h.seen.add(string(msg.Value))
		s.MarkMessage(msg, "")
	}
	return nil
}

// TestSCRAMOverMutualTLS connects the way a production cluster is usually
// reached: TLS with a client certificate, then SASL/SCRAM.
func TestSCRAMOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewCA("webmon-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	serverPair, err := ca.Server("broker", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := serverPair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	clientPair, err := ca.Client("webmon-scheduler")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := clientPair.Write(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	passwordFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passwordFile, []byte("s3cret-scram\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	broker := startBroker(t, kafka.DevBrokerOptions{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
			MinVersion:   tls.VersionTLS12,
		},
		Users: []kafka.SASLUser{{Mechanism: kafka.SASLSCRAMSHA512, Username: "webmon", Password: "s3cret-scram"}},
	})
	good := kafka.Config{
		Brokers: broker.Addrs(),
		TLS:     kafka.TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile},
		SASL:    kafka.SASLConfig{Mechanism: "scram-sha-512", Username: "webmon", PasswordFile: passwordFile},
	}

	tests := map[string]struct {
		mutate  func(*kafka.Config)
		wantErr bool
	}{
		"client certificate and SCRAM password": {mutate: func(*kafka.Config) {}},
		"wrong password":                        {mutate: func(c *kafka.Config) { c.SASL.PasswordFile = ""; c.SASL.Password = "wrong" }, wantErr: true},
		"no client certificate":                 {mutate: func(c *kafka.Config) { c.TLS.CertFile, c.TLS.KeyFile = "", "" }, wantErr: true},
		"no TLS":                                {mutate: func(c *kafka.Config) { c.TLS = kafka.TLSConfig{} }, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			sc := saramaConfig(t, cfg)
			sc.Net.DialTimeout = 3 * time.Second
			sc.Metadata.Retry.Max = 0
			sc.Producer.Return.Successes = true
			err := produceOne(cfg.Brokers, sc)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("produce error = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

func produceOne(brokers []string, sc *sarama.Config) error {
	p, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		return err
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "probe", Value: sarama.StringEncoder("hello")})
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		// Connected and authenticated; the topic is simply not there.
		return nil
	}
	return err
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(kafka.PasswordEnv, "")

	tests := map[string]struct {
		cfg  kafka.Config
		want []string // substrings of the error; nil means valid
	}{
		"minimal":           {cfg: kafka.Config{Brokers: []string{"kafka:9092"}}},
		"no brokers":        {cfg: kafka.Config{}, want: []string{"no", "--kafka-brokers"}},
		"broker no port":    {cfg: kafka.Config{Brokers: []string{"kafka"}}, want: []string{`"kafka"`, "host:port"}},
		"bad version":       {cfg: kafka.Config{Brokers: []string{"k:1"}, Version: "banana"}, want: []string{"kafka version"}},
		"missing CA file":   {cfg: kafka.Config{Brokers: []string{"k:1"}, TLS: kafka.TLSConfig{CAFile: filepath.Join(dir, "nope")}}, want: []string{"CA file"}},
		"CA file not PEM":   {cfg: kafka.Config{Brokers: []string{"k:1"}, TLS: kafka.TLSConfig{CAFile: notPEM}}, want: []string{"no PEM certificate"}},
		"cert without key":  {cfg: kafka.Config{Brokers: []string{"k:1"}, TLS: kafka.TLSConfig{CertFile: notPEM}}, want: []string{"both"}},
		"unknown mechanism": {cfg: kafka.Config{Brokers: []string{"k:1"}, SASL: kafka.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, want: []string{`"GSSAPI"`, "SCRAM-SHA-512"}},
		"no user":           {cfg: kafka.Config{Brokers: []string{"k:1"}, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Password: "p"}}, want: []string{"no user name"}},
		"no password":       {cfg: kafka.Config{Brokers: []string{"k:1"}, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u"}}, want: []string{"no password", kafka.PasswordEnv}},
		"two problems":      {cfg: kafka.Config{Version: "x"}, want: []string{"--kafka-brokers", "kafka version"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := tc.cfg.Sarama()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
