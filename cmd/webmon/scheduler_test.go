package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	"github.com/webmon-dev/webmon/internal/task"
	"github.com/webmon-dev/webmon/scheduler"
)

const (
	testTopic    = "webmon-tasks"
	testInterval = 5 * time.Second // the shortest a Website may ask for
)

// schedulerBed is a real kube-apiserver and the embedded Kafka broker, with
// a user holding only the scheduler's generated roles.
type schedulerBed struct {
	t          *testing.T
	c          client.Client
	kubeconfig string
	brokers    string
}

func newSchedulerBed(t *testing.T) *schedulerBed {
	t.Helper()
	c, kubeconfig := startEnvtestAs(t, "webmon-scheduler", filepath.Join("config", "rbac", "scheduler", "role.yaml"))
	b := &schedulerBed{t: t, c: c, kubeconfig: kubeconfig}
	mustCreate(t, b.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sites"}})

	broker, err := kafka.StartDevBroker(kafka.DevBrokerOptions{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	b.brokers = strings.Join(broker.Addrs(), ",")
	return b
}

// args are the scheduler's flags for shard 0 of 2, with a leader election
// short enough for a test.
func (b *schedulerBed) args() []string { return b.shardArgs(0) }

// shardArgs are args for another shard of the 2.
func (b *schedulerBed) shardArgs(shard int) []string {
	return []string{"scheduler", fmt.Sprintf("--shard=%d", shard), "--shards=2", "--namespace=webmon-system",
		"--kafka-brokers=" + b.brokers, "--kafka-topic=" + testTopic,
		"--kafka-topic-partitions=4",
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--leader-election-lease-duration=2s", "--leader-election-renew-deadline=1500ms", "--leader-election-retry-period=250ms"}
}

// website creates a Website in shard `shard` with n URLs.
func (b *schedulerBed) website(name string, shard int, interval time.Duration, n int, mutate ...func(*monitoringv1alpha1.Website)) *monitoringv1alpha1.Website {
	ws := &monitoringv1alpha1.Website{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sites", Name: name,
			Labels: map[string]string{monitoringv1alpha1.ShardLabel: fmt.Sprint(shard)}},
		Spec: monitoringv1alpha1.WebsiteSpec{Interval: metav1.Duration{Duration: interval}, Timeout: metav1.Duration{Duration: 2 * time.Second}},
	}
	for i := range n {
		ws.Spec.URLs = append(ws.Spec.URLs, monitoringv1alpha1.WebsiteURL(fmt.Sprintf("https://%s.example/%d", name, i)))
	}
	for _, m := range mutate {
		m(ws)
	}
	mustCreate(b.t, b.c, ws)
	return ws
}

// published is a task as read back from the topic.
type published struct {
	task.Task
	key       string
	timestamp time.Time
	// partition is where it was published, of partitions.
	partition, partitions int32
}

func (p published) id() string {
	return fmt.Sprintf("%s %s @%s", p.UID, p.URL, p.ScheduledAt.Format(time.RFC3339Nano))
}

// taskLog reads every partition of the tasks topic from the start.
type taskLog struct {
	mu    sync.Mutex
	tasks []published
	bad   int
}

func readTasks(t *testing.T, brokers string) *taskLog {
	t.Helper()
	cfg := sarama.NewConfig()
	c, err := sarama.NewClient(strings.Split(brokers, ","), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var partitions []int32
	// The scheduler creates the topic when it first leads.
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_ = c.RefreshMetadata(testTopic)
		partitions, err = c.Partitions(testTopic)
		return err == nil && len(partitions) > 0, nil
	})
	if err != nil {
		t.Fatalf("the scheduler did not create topic %s: %v", testTopic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		t.Fatal(err)
	}
	l := &taskLog{}
	for _, p := range partitions {
		pc, err := consumer.ConsumePartition(testTopic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		go func() {
			for msg := range pc.Messages() {
				var tk task.Task
				l.mu.Lock()
				if err := task.Unmarshal(msg.Value, &tk); err != nil {
					l.bad++
				} else {
					l.tasks = append(l.tasks, published{Task: tk, key: string(msg.Key), timestamp: msg.Timestamp,
						partition: msg.Partition, partitions: int32(len(partitions))})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *taskLog) snapshot() []published {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]published(nil), l.tasks...)
}

// settle waits until no new task has arrived for a second.
func (l *taskLog) settle() []published {
	last := -1
	for {
		n := len(l.snapshot())
		if n == last {
			return l.snapshot()
		}
		last = n
		time.Sleep(time.Second)
	}
}

// checkTicks verifies the regular tasks of ws over [from, to]: every tick
// due in it published exactly once, with key, timestamp and deadline right.
// Ticks within a second of either end may or may not be there.
func checkTicks(t *testing.T, got []published, ws *monitoringv1alpha1.Website, from, to time.Time) {
	t.Helper()
	const fringe = time.Second
	interval := ws.Spec.Interval.Duration
	byID := map[string]int{}
	for _, p := range got {
		if p.UID != string(ws.UID) || p.Trigger != task.TriggerSchedule {
			continue
		}
		byID[p.id()]++
		if p.key != string(ws.UID) || p.timestamp.UnixMilli() != p.ScheduledAt.UnixMilli() || !p.Deadline.Equal(p.ScheduledAt.Add(interval)) {
			t.Errorf("%s: key %s, timestamp %s, deadline %s", p.id(), p.key, p.timestamp, p.Deadline)
		}
		// Where sarama's hash partitioner puts the key, as the checkers
		// and a new leader's catch-up expect.
		if want, _ := sarama.NewHashPartitioner(testTopic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(ws.UID)}, p.partitions); p.partition != want {
			t.Errorf("%s: on partition %d, want %d", p.id(), p.partition, want)
		}
		if p.ScheduledAt.Before(from.Add(-fringe)) || p.ScheduledAt.After(to.Add(fringe)) {
			t.Errorf("%s: outside the window [%s, %s]", p.id(), from.Format(time.TimeOnly), to.Format(time.TimeOnly))
		}
	}
	expected := 0
	for i, u := range ws.Spec.URLs {
		phase := scheduler.Phase(ws.UID, string(u), interval)
		for due := scheduler.NextRun(phase, interval, from.Add(fringe)); due.Before(to.Add(-fringe)); due = due.Add(interval) {
			expected++
			id := published{Task: task.Task{UID: string(ws.UID), URL: string(u), URLIndex: i, ScheduledAt: due}}.id()
			if n := byID[id]; n != 1 {
				t.Errorf("%s: published %d times, want once", id, n)
			}
		}
	}
	for id, n := range byID {
		if n > 1 {
			t.Errorf("%s: published %d times", id, n)
		}
	}
	if expected < len(ws.Spec.URLs) {
		t.Fatalf("the window [%s, %s] is too short to test %s", from, to, ws.Name)
	}
}

// leaseAcquired waits for the shard's Lease to have a holder, and returns
// when it was acquired.
func (b *schedulerBed) leaseAcquired(since time.Time) time.Time {
	return b.shardLeaseAcquired(0, since)
}

func (b *schedulerBed) shardLeaseAcquired(shard int, since time.Time) time.Time {
	b.t.Helper()
	var acquired time.Time
	err := wait.PollUntilContextTimeout(b.t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var lease coordinationv1.Lease
		if err := b.c.Get(ctx, types.NamespacedName{Namespace: "webmon-system", Name: fmt.Sprintf("webmon-scheduler-%d", shard)}, &lease); err != nil {
			return false, nil
		}
		if lease.Spec.AcquireTime == nil || lease.Spec.AcquireTime.Time.Before(since.Truncate(time.Second)) {
			return false, nil
		}
		acquired = lease.Spec.AcquireTime.Time
		return true, nil
	})
	if err != nil {
		b.t.Fatalf("no scheduler took the shard's Lease: %v", err)
	}
	return acquired
}

// TestSchedulerPublishesEveryTick runs `webmon scheduler` for shard 0 as a
// pod would, as a user with only its generated roles, against a real
// kube-apiserver and the embedded broker, and reads back exactly the
// expected tasks over 3 intervals: none missing, none doubled, none of
// another shard or of a suspended or deleted Website; and a check-now.
func TestSchedulerPublishesEveryTick(t *testing.T) {
	b := newSchedulerBed(t)
	steady := b.website("steady", 0, testInterval, 3)
	slow := b.website("slow", 0, 7*time.Second, 2)
	onDemand := b.website("on-demand", 0, time.Hour, 2)
	doomed := b.website("doomed", 0, testInterval, 1)
	b.website("paused", 0, testInterval, 2, func(ws *monitoringv1alpha1.Website) { ws.Spec.Suspend = true })
	b.website("elsewhere", 1, testInterval, 2)

	t.Setenv("KUBECONFIG", b.kubeconfig)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	started := time.Now()
	go func() {
		_, err := run(ctx, b.args()...)
		done <- err
	}()
	acquired := b.leaseAcquired(started)
	log := readTasks(t, b.brokers)

	time.Sleep(6 * time.Second)
	// check-now on a Website whose regular ticks are an hour apart.
	asked := time.Now()
	patch := client.MergeFrom(onDemand.DeepCopy())
	onDemand.Annotations = map[string]string{monitoringv1alpha1.CheckNowAnnotation: "please"}
	if err := b.c.Patch(ctx, onDemand, patch); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	deleted := time.Now()
	if err := b.c.Delete(ctx, doomed); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(acquired.Add(3*7*time.Second + time.Second)))
	stopped := time.Now()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	got := log.settle()

	checkTicks(t, got, steady, acquired, stopped)
	checkTicks(t, got, slow, acquired, stopped)
	checkTicks(t, got, doomed, acquired, deleted)
	var checkNow []published
	for _, p := range got {
		switch {
		case p.Namespace != "sites" || (p.Name != "steady" && p.Name != "slow" && p.Name != "on-demand" && p.Name != "doomed"):
			t.Errorf("%s: a task of %s/%s, not a Website of shard 0 that is active", p.id(), p.Namespace, p.Name)
		case p.Name == "doomed" && p.ScheduledAt.After(deleted.Add(time.Second)):
			t.Errorf("%s: published after its Website was deleted at %s", p.id(), deleted.Format(time.TimeOnly))
		case p.Trigger == task.TriggerCheckNow:
			checkNow = append(checkNow, p)
		}
	}
	if len(checkNow) != 2 {
		t.Errorf("check-now: %d tasks, want one per URL of on-demand (2)", len(checkNow))
	}
	for _, p := range checkNow {
		if p.Name != "on-demand" || p.CheckNow != "please" || p.ScheduledAt.Sub(asked) > 2*time.Second {
			t.Errorf("check-now task %s of %s: token %q, %s after the annotation", p.id(), p.Name, p.CheckNow, p.ScheduledAt.Sub(asked))
		}
	}
	if log.bad != 0 {
		t.Errorf("%d messages on the topic are not tasks", log.bad)
	}
	t.Logf("%d tasks read back", len(got))
}

// TestSchedulerFailover runs two replicas of shard 0 as processes, kills
// the leader with SIGKILL mid-stream, and reads back exactly the expected
// tasks: the standby takes over within the lease, publishes the ticks the
// dead leader missed (their deadlines have not passed), and repeats none.
func TestSchedulerFailover(t *testing.T) {
	b := newSchedulerBed(t)
	bin := filepath.Join(t.TempDir(), "webmon")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var sites []*monitoringv1alpha1.Website
	for i := range 6 {
		sites = append(sites, b.website(fmt.Sprintf("site-%d", i), 0, testInterval, 4))
	}

	started := time.Now()
	replicas := []*replica{b.startReplica(t, bin, "a"), b.startReplica(t, bin, "b")}
	acquired := b.leaseAcquired(started)
	log := readTasks(t, b.brokers)
	leader := waitForLeader(t, replicas)
	standby := replicas[1-leader]
	time.Sleep(testInterval + 2*time.Second)
	if standby.leading() {
		t.Fatal("both replicas publish")
	}

	killed := time.Now()
	if err := replicas[leader].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = replicas[leader].cmd.Wait()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return standby.leading(), nil
	})
	if err != nil {
		t.Fatal("the standby did not take over within 10s")
	}
	tookOver := time.Since(killed)
	if tookOver > 2*time.Second+time.Second {
		t.Errorf("the standby took over %s after the kill; the lease is 2s", tookOver)
	}
	time.Sleep(time.Until(acquired.Add(4 * testInterval)))
	stopped := time.Now()
	if err := standby.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := standby.cmd.Wait(); err != nil {
		t.Errorf("the standby exited with %v on SIGTERM", err)
	}
	got := log.settle()
	for _, ws := range sites {
		checkTicks(t, got, ws, acquired, stopped)
	}
	t.Logf("%d tasks read back; the standby took over %s after the kill", len(got), tookOver.Round(time.Millisecond))
}

type replica struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (r *replica) leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Contains(r.out.String(), "leading the shard")
}

func (b *schedulerBed) startReplica(t *testing.T, bin, name string) *replica {
	t.Helper()
	r := &replica{cmd: exec.Command(bin, b.args()...)}
	r.cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig, "POD_NAME=scheduler-"+name)
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout = io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		if t.Failed() {
			r.mu.Lock()
			t.Logf("replica %s:\n%s", name, r.out.String())
			r.mu.Unlock()
		}
	})
	return r
}

func waitForLeader(t *testing.T, replicas []*replica) int {
	t.Helper()
	leader := -1
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		for i, r := range replicas {
			if r.leading() {
				leader = i
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("no replica leads")
	}
	return leader
}

// TestSchedulerMovedWebsitesKeepEveryTick moves Websites from shard 0 to
// shard 1 as a change of the shard count does. Two that share a partition
// move a few seconds apart, labelled by hand, before shard 1's scheduler
// starts: the new leader resumes each after its own last task, not after
// the newest of the partition (the later-moved one's), so no tick of the
// first falls in between. A third moves while both lead, with the
// operator's handoff time: the old shard publishes its ticks due before
// it, the new one the rest. Every tick of the three is published once.
func TestSchedulerMovedWebsitesKeepEveryTick(t *testing.T) {
	const interval = 10 * time.Second // longer than the handover takes: every missed tick is caught up
	b := newSchedulerBed(t)
	var sites []*monitoringv1alpha1.Website
	for i := range 8 {
		sites = append(sites, b.website(fmt.Sprintf("site-%d", i), 0, interval, 20))
	}
	// 8 Websites on 4 partitions: two of them share one.
	byPartition := map[int32]*monitoringv1alpha1.Website{}
	var first, second *monitoringv1alpha1.Website
	for _, ws := range sites {
		p, _ := sarama.NewHashPartitioner(testTopic).Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(ws.UID)}, 4)
		if other, ok := byPartition[p]; ok {
			first, second = other, ws
			break
		}
		byPartition[p] = ws
	}
	if second == nil {
		t.Fatal("no two Websites share a partition")
	}

	t.Setenv("KUBECONFIG", b.kubeconfig)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan error, 2)
	started := time.Now()
	go func() { _, err := run(ctx, b.shardArgs(0)...); done <- err }()
	acquired := b.shardLeaseAcquired(0, started)
	log := readTasks(t, b.brokers)
	time.Sleep(3 * time.Second)

	var third *monitoringv1alpha1.Website
	for _, ws := range sites {
		if ws != first && ws != second {
			third = ws
			break
		}
	}
	// move relabels a Website for shard 1; with a handoff, it first
	// announces it, as the operator does.
	move := func(ws *monitoringv1alpha1.Website, handoff time.Duration) {
		if handoff > 0 {
			patch := client.MergeFrom(ws.DeepCopy())
			metav1.SetMetaDataAnnotation(&ws.ObjectMeta, monitoringv1alpha1.ShardHandoffAnnotation, "1@"+time.Now().Add(handoff).UTC().Format(time.RFC3339Nano))
			if err := b.c.Patch(ctx, ws, patch); err != nil {
				t.Fatal(err)
			}
		}
		patch := client.MergeFrom(ws.DeepCopy())
		ws.Labels[monitoringv1alpha1.ShardLabel] = "1"
		if err := b.c.Patch(ctx, ws, patch); err != nil {
			t.Fatal(err)
		}
	}
	move(first, 0)
	moved := time.Now()
	time.Sleep(3 * time.Second)
	move(second, 0)
	time.Sleep(500 * time.Millisecond)
	go func() { _, err := run(ctx, b.shardArgs(1)...); done <- err }()
	takeover := b.shardLeaseAcquired(1, started)
	time.Sleep(2 * time.Second)
	move(third, 2*time.Second)
	time.Sleep(time.Until(takeover.Add(2 * interval)))
	stopped := time.Now()
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("scheduler: %v", err)
		}
	}
	got := log.settle()
	checkTicks(t, got, first, acquired, stopped)
	checkTicks(t, got, second, acquired, stopped)
	checkTicks(t, got, third, acquired, stopped)
	t.Logf("%d tasks read back; %s moved 3s before %s, shard 1 took over %s after the first move",
		len(got), first.Name, second.Name, takeover.Sub(moved).Round(100*time.Millisecond))
}
