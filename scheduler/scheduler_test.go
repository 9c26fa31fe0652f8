package scheduler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/metrics"
	"github.com/webmon-dev/webmon/internal/task"
)

// TestLeaderWaitsForItsWebsites: a restarted process can win the Lease as
// soon as its informer has synced, before the event handler has handed
// the schedule its Websites. The leader must read where its predecessor
// stopped only once it knows them all, or the ticks missed since the
// predecessor died are neither published nor counted (a reliability run
// showed thousands of such ticks).
func TestLeaderWaitsForItsWebsites(t *testing.T) {
	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	pcfg, err := (&kafka.Config{Brokers: broker.Addrs(), ClientID: "test"}).Producer()
	if err != nil {
		t.Fatal(err)
	}
	spec := kafka.TopicSpec{Name: "tasks", Partitions: 4, ReplicationFactor: 1}
	kc := newClient(t, broker.Addrs(), pcfg)
	admin, err := sarama.NewClusterAdminFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopic(admin, spec); err != nil {
		t.Fatal(err)
	}

	const interval = 2 * time.Second
	ws := &monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shop", UID: uuid.NewUUID(), Generation: 1},
		Spec: monitoringv1alpha1.WebsiteSpec{
			URLs: []monitoringv1alpha1.WebsiteURL{"https://shop.example.com/"}, Interval: metav1.Duration{Duration: interval},
			Method: "GET", Timeout: metav1.Duration{Duration: time.Second}, FailureThreshold: 1, SuccessThreshold: 1,
		},
	}
	// The takeover comes just after a tick, the latest the predecessor
	// missed: well inside its deadline, however slowly the topic is read.
	// The tick before it, after the predecessor's last task, is too late.
	url := string(ws.Spec.URLs[0])
	tick := NextRun(Phase(ws.UID, url, interval), interval, time.Now().Add(1500*time.Millisecond))
	last := tick.Add(-2 * interval)
	producer, err := sarama.NewSyncProducerFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	value := task.NewPrefix(task.ForWebsite(ws)).Append(nil, url, 0, last, last.Add(interval), task.TriggerSchedule, "")
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{
		Topic: spec.Name, Key: sarama.StringEncoder(ws.UID), Value: sarama.ByteEncoder(value), Timestamp: last,
	}); err != nil {
		t.Fatal(err)
	}

	m := metrics.NewScheduler(prometheus.NewRegistry())
	s := New(Options{
		Kafka: pcfg, Brokers: broker.Addrs(), Topic: spec, MaxLateness: time.Second, MaxInFlight: 100,
		CatchUpWindow: 30 * time.Second, Metrics: m,
	}, logr.Discard())
	var filled atomic.Bool
	s.filled = filled.Load
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Long enough for a leader that does not wait to have connected and
	// read the topic with an empty schedule.
	time.Sleep(time.Until(tick) + 50*time.Millisecond)
	if v := testutil.ToFloat64(m.Leader); v != 0 {
		t.Errorf("leader gauge %v before the schedule is filled, want 0", v)
	}
	s.schedule.Set(ws, time.Now())
	filled.Store(true)

	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(m.CatchUpTicks) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := testutil.ToFloat64(m.CatchUpTicks); got != 1 {
		t.Errorf("catch-up ticks %v, want 1: the latest tick the predecessor missed", got)
	}
	if got := testutil.ToFloat64(m.SkippedLate); got < 1 {
		t.Errorf("skipped ticks %v, want the older missed ones counted", got)
	}
}
