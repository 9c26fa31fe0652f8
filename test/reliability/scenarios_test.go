package reliability

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	monitoringv1alpha1 "github.com/webmon-dev/webmon/api/v1alpha1"
	"github.com/webmon-dev/webmon/internal/kafka"
	sys "github.com/webmon-dev/webmon/test/testbed/system"
)

const (
	checkerPrefix   = sys.Release + "-checker-"
	operatorPrefix  = sys.Release + "-operator-"
	schedulerPrefix = "webmon-scheduler-"
	shard0Prefix    = schedulerPrefix + "0-"

	publishedSample     = `webmon_scheduler_tasks_published_total{trigger="schedule"}`
	skippedLateSample   = `webmon_scheduler_skipped_ticks_total{reason="late"}`
	skippedUnackSample  = `webmon_scheduler_skipped_ticks_total{reason="unacknowledged"}`
	catchUpSample       = "webmon_scheduler_catch_up_ticks_total"
	publishErrorsSample = "webmon_scheduler_publish_errors_total"
	leaderSample        = "webmon_scheduler_leader"
	pendingSample       = "webmon_checker_pending_results"
	writeErrorsSample   = "webmon_store_write_errors_total"
	duplicateSample     = `webmon_store_results_total{kind="duplicate"}`
	statusWrittenSample = `webmon_checker_status_writes_total{result="written"}`

	// The scheduler's leader election, as its flags default: a standby
	// takes a silent leader's Lease within leaseDuration + retryPeriod.
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
	// settle is how long a window goes on after its recovery: a slow
	// interval, so that every URL has a tick after it.
	settle = slowInterval
)

func pod(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: sys.Namespace, Name: name}
}

// checkerKill kills a checker with SIGKILL while it has results waiting to
// be stored. Its partitions go to the other checker once its session times
// out, and to its own restarted process after: the tasks it had taken
// whose offsets were not committed are delivered again; those already
// stored are stored once and counted once.
func (r *run) checkerKill(w *window) {
	procs := r.Processes(checkerPrefix, "checker")
	names := slices.Sorted(maps.Keys(procs))
	if len(names) != 2 {
		r.T.Fatalf("checker processes %v, want 2", procs)
	}
	r.waitGroupMembers(2)
	victim := pod(names[0])
	r.Eventually(30*time.Second, "the victim to hold results not stored yet", func(context.Context) (bool, error) {
		v, err := r.Metric(victim, pendingSample)
		return v > 0, err
	})
	duplicates0 := r.perProcess(checkerPrefix, "checker", duplicateSample)
	killed := time.Now()
	r.Must(r.Runner.Kill(victim, syscall.SIGKILL))
	w.set("recovery_s", r.resumed(killed, 2*time.Minute))
	r.Eventually(time.Minute, "the killed checker back in the group", func(context.Context) (bool, error) {
		procs := r.Processes(checkerPrefix, "checker")
		if len(procs) != 2 {
			return false, fmt.Errorf("checker processes %v", procs)
		}
		members, err := r.GroupMembers()
		return err == nil && len(members) == 2, fmt.Errorf("group members %v: %w", members, err)
	})
	time.Sleep(settle)
	w.set("redelivered", delta(duplicates0, r.perProcess(checkerPrefix, "checker", duplicateSample)))
}

// schedulerKill kills the shard's leading scheduler with SIGKILL: it
// cannot release its Lease, so another replica takes it once it expires
// (the standby, or the killed pod's restarted process: whichever asks
// first), reads where the leader stopped, publishes each URL's latest
// missed tick (catch-up) and counts the older ones as skipped.
func (r *run) schedulerKill(w *window) {
	leader := r.shardLeader()
	pids := r.Processes(shard0Prefix, "scheduler")
	killedPid := pids[leader.Name]
	published0 := r.perProcess(shard0Prefix, "scheduler", publishedSample)
	catchUp0 := r.counters.now(catchUpSample)
	killed := time.Now()
	r.Must(r.Runner.Kill(leader, syscall.SIGKILL))
	var failover time.Duration
	var successor int
	r.Eventually(leaseDuration+retryPeriod+30*time.Second, "another replica to publish", func(context.Context) (bool, error) {
		failover = time.Since(killed)
		for pid, v := range r.perProcess(shard0Prefix, "scheduler", publishedSample) {
			if pid != killedPid && v > published0[pid] {
				successor = pid
				return true, nil
			}
		}
		return false, nil
	})
	w.set("failover_s", seconds(failover))
	w.set("successor_is_standby", map[bool]float64{true: 1, false: 0}[slices.Contains(slices.Collect(maps.Values(pids)), successor)])
	if limit := leaseDuration + retryPeriod + 5*time.Second; failover > limit {
		r.T.Errorf("a replica published %s after the leader was killed, want within the lease duration (%s) and a retry (%s), and 5 s to start", failover, leaseDuration, retryPeriod)
	}
	w.set("recovery_s", r.resumed(killed, time.Minute))
	r.Eventually(time.Minute, "the killed scheduler back", func(context.Context) (bool, error) {
		procs := r.Processes(shard0Prefix, "scheduler")
		return len(procs) == 2, fmt.Errorf("scheduler processes %v", procs)
	})
	r.shardLeader()
	time.Sleep(settle)
	w.set("catch_up_ticks", delta(catchUp0, r.counters.now(catchUpSample)))
}

// shardLeader waits until shard 0 has one leader and one standby, and
// returns the leader's pod.
func (r *run) shardLeader() types.NamespacedName {
	var leader types.NamespacedName
	r.Eventually(30*time.Second, "one leader and one standby in shard 0", func(context.Context) (bool, error) {
		procs := r.Processes(shard0Prefix, "scheduler")
		var leaders []string
		for name := range procs {
			v, err := r.Metric(pod(name), leaderSample)
			if err != nil {
				return false, err
			}
			if v == 1 {
				leaders = append(leaders, name)
			}
		}
		if len(procs) != 2 || len(leaders) != 1 {
			return false, fmt.Errorf("processes %v, leaders %v", procs, leaders)
		}
		leader = pod(leaders[0])
		return true, nil
	})
	return leader
}

// brokerDown kills the Kafka broker with SIGKILL and starts it again on
// its port, with its data, after the outage: the schedulers skip the ticks
// they cannot publish on time and count them, within bounded memory; the
// checkers rejoin their group; nothing crashes.
func (r *run) brokerDown(w *window) {
	r.waitGroupMembers(2)
	errors0 := r.counters.now(publishErrorsSample)
	before := r.mem.track()
	time.Sleep(3 * time.Second) // a baseline of each component's memory
	baseline := before.stop()
	during := r.mem.track()
	down := time.Now()
	r.Must(r.Broker.Kill())
	time.Sleep(*outage)
	peaks := during.stop()
	r.Must(r.Broker.Start(r.T.Context()))
	up := time.Now()
	w.set("down_s", seconds(up.Sub(down)))
	w.set("recovery_s", r.resumed(up, 2*time.Minute))
	r.waitGroupMembers(2)
	time.Sleep(settle)
	w.set("publish_errors", delta(errors0, r.counters.now(publishErrorsSample)))
	w.set("scheduler_rss_mib_before", roundMiB(baseline["scheduler"]))
	w.set("scheduler_rss_mib_down", roundMiB(peaks["scheduler"]))
	if growth := peaks["scheduler"] - baseline["scheduler"]; growth > 64<<20 {
		r.T.Errorf("a scheduler grew by %.1f MiB while the broker was down (%.1f to %.1f MiB)", mib(growth), mib(baseline["scheduler"]), mib(peaks["scheduler"]))
	}
}

// postgresDown halts PostgreSQL (fast: sessions are cut) and starts it
// again on its port after the outage: the checkers retry their batches
// with backoff, commit no offset meanwhile, and store every task after.
func (r *run) postgresDown(w *window) {
	ctx := r.T.Context()
	errors0 := r.perProcess(checkerPrefix, "checker", writeErrorsSample)
	down := time.Now()
	r.Must(r.Postgres.Halt(ctx))
	// A batch stored just before the halt has its offsets committed
	// within the commit interval (1 s): then nothing moves.
	time.Sleep(2 * time.Second)
	committed := r.committedOffsets()
	pending := 0.0
	for time.Since(down) < *outage {
		pending = max(pending, sum(r.perProcess(checkerPrefix, "checker", pendingSample)))
		time.Sleep(500 * time.Millisecond)
	}
	if after := r.committedOffsets(); !maps.Equal(committed, after) {
		r.T.Errorf("offsets committed while PostgreSQL was down: %v, then %v", committed, after)
	}
	writeErrors := delta(errors0, r.perProcess(checkerPrefix, "checker", writeErrorsSample))
	r.Must(r.Postgres.Start(ctx))
	up := time.Now()
	w.set("down_s", seconds(up.Sub(down)))
	if writeErrors == 0 {
		r.T.Errorf("no failed write counted in %s while PostgreSQL was down", writeErrorsSample)
	}
	w.set("write_errors", writeErrors)
	w.set("pending_results_peak", pending)
	w.set("recovery_s", r.resumed(up, 2*time.Minute))
	r.Eventually(30*time.Second, "the checkers to commit offsets again", func(context.Context) (bool, error) {
		now := r.committedOffsets()
		for p, off := range committed {
			if now[p] <= off {
				return false, fmt.Errorf("partition %d at offset %d", p, now[p])
			}
		}
		return true, nil
	})
	time.Sleep(settle)
}

// apiserverRestart stops the kube-apiserver and starts it again: checks
// and results go on without it, and the checkers' status writes resume.
func (r *run) apiserverRestart(w *window) {
	written0 := sum(r.perProcess(checkerPrefix, "checker", statusWrittenSample))
	down := time.Now()
	r.Must(r.CP.Restart(r.T.Context(), "kube-apiserver", 0))
	up := time.Now()
	w.set("down_s", seconds(up.Sub(down)))
	written := sum(r.perProcess(checkerPrefix, "checker", statusWrittenSample))
	var statusAt time.Duration
	r.Eventually(time.Minute, "status writes to resume", func(context.Context) (bool, error) {
		statusAt = time.Since(up)
		return sum(r.perProcess(checkerPrefix, "checker", statusWrittenSample)) > written, nil
	})
	w.set("status_recovery_s", seconds(statusAt))
	w.set("status_writes_while_down", sum(r.perProcess(checkerPrefix, "checker", statusWrittenSample))-written0)
	r.Eventually(time.Minute, "every Website's last check after the restart", func(ctx context.Context) (bool, error) {
		last, err := r.lastChecks(ctx)
		if err != nil {
			return false, err
		}
		for _, name := range r.names {
			if !last[name].After(up) {
				return false, fmt.Errorf("%s: last check %s", name, last[name])
			}
		}
		return true, nil
	})
	w.set("recovery_s", r.resumed(up, time.Minute))
	time.Sleep(settle)
}

// operatorRestart raises the shard count and kills the operator with
// SIGKILL as soon as it has created the first new scheduler Deployment:
// its restarted process (once the killed one's Lease expires) finishes the
// job without a second Deployment or Lease for any shard.
func (r *run) operatorRestart(w *window) {
	ctx := r.T.Context()
	const shards = 3
	deployments, err := r.Clientset.AppsV1().Deployments(sys.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=webmon-operator"})
	r.Must(err)
	defer deployments.Stop()
	upgraded := r.StartUpgrade("scheduler.shards=" + strconv.Itoa(shards))
	var killed time.Time
	for killed.IsZero() {
		select {
		case ev, ok := <-deployments.ResultChan():
			if !ok {
				r.T.Fatal("the watch of the scheduler Deployments ended")
			}
			d, isDeployment := ev.Object.(*appsv1.Deployment)
			if ev.Type != watch.Added || !isDeployment || d.Name == schedulerPrefix+"0" {
				continue
			}
			var victims []string
			for name, pid := range r.Processes(operatorPrefix, "operator") {
				if strings.Contains(sys.Cmdline(pid), "--shards="+strconv.Itoa(shards)) {
					victims = append(victims, name)
					r.Must(r.Runner.Kill(pod(name), syscall.SIGKILL))
				}
			}
			killed = time.Now()
			if len(victims) == 0 {
				r.T.Fatalf("%s appeared and no operator process runs with --shards=%d: %v", d.Name, shards, r.Processes(operatorPrefix, "operator"))
			}
			n, err := r.schedulerDeployments(ctx)
			r.Must(err)
			w.set("deployments_at_kill", float64(len(n)))
			r.T.Logf("killed operator %v right after it created %s", victims, d.Name)
		case err := <-upgraded:
			// The new operator pod is ready; it creates the Deployments
			// once it holds the operator's Lease.
			r.Must(err)
			upgraded = nil
		case <-time.After(2 * time.Minute):
			r.T.Fatal("no new scheduler Deployment within 2 minutes of helm upgrade")
		}
	}
	if upgraded != nil {
		r.Must(<-upgraded)
	}
	r.Eventually(2*time.Minute, "one Deployment, one Lease and two running schedulers for each shard", func(ctx context.Context) (bool, error) {
		byShard, err := r.schedulerDeployments(ctx)
		if err != nil {
			return false, err
		}
		if len(byShard) != shards {
			return false, fmt.Errorf("scheduler Deployments by shard: %v", byShard)
		}
		for shard, names := range byShard {
			if len(names) != 1 {
				return false, fmt.Errorf("shard %d has Deployments %v", shard, names)
			}
			var lease coordinationv1.Lease
			if err := r.Client.Get(ctx, client.ObjectKey{Namespace: sys.Namespace, Name: names[0]}, &lease); err != nil {
				return false, err
			}
			if len(r.Processes(schedulerPrefix+strconv.Itoa(shard)+"-", "scheduler")) != 2 {
				return false, fmt.Errorf("shard %d's schedulers are not both running", shard)
			}
		}
		shardOf, err := r.websiteShards(ctx)
		if err != nil {
			return false, err
		}
		for name, shard := range shardOf {
			if shard >= shards {
				return false, fmt.Errorf("%s is on shard %d", name, shard)
			}
		}
		return true, nil
	})
	w.set("recovery_s", seconds(time.Since(killed)))
	byShard, err := r.schedulerDeployments(ctx)
	r.Must(err)
	duplicates := 0
	for _, names := range byShard {
		duplicates += len(names) - 1
	}
	w.set("duplicate_deployments", float64(duplicates))
	leases := &coordinationv1.LeaseList{}
	r.Must(r.Client.List(ctx, leases, client.InNamespace(sys.Namespace)))
	schedulerLeases := 0
	for _, l := range leases.Items {
		if strings.HasPrefix(l.Name, schedulerPrefix) {
			schedulerLeases++
		}
	}
	w.set("scheduler_leases", float64(schedulerLeases))
	if schedulerLeases != shards {
		r.T.Errorf("%d scheduler Leases, want %d", schedulerLeases, shards)
	}
	time.Sleep(settle)
}

// schedulerDeployments lists the operator's scheduler Deployments by the
// shard label they carry.
func (r *run) schedulerDeployments(ctx context.Context) (map[int][]string, error) {
	var list appsv1.DeploymentList
	if err := r.Client.List(ctx, &list, client.InNamespace(sys.Namespace), client.MatchingLabels{"app.kubernetes.io/managed-by": "webmon-operator"}); err != nil {
		return nil, err
	}
	byShard := map[int][]string{}
	for _, d := range list.Items {
		shard, err := strconv.Atoi(d.Labels[monitoringv1alpha1.ShardLabel])
		if err != nil {
			return nil, fmt.Errorf("Deployment %s: shard label %q", d.Name, d.Labels[monitoringv1alpha1.ShardLabel])
		}
		byShard[shard] = append(byShard[shard], d.Name)
	}
	return byShard, nil
}

// websiteShards are the load's Websites' shards, from their status.
func (r *run) websiteShards(ctx context.Context) (map[string]int, error) {
	var list monitoringv1alpha1.WebsiteList
	if err := r.Client.List(ctx, &list, client.InNamespace("default")); err != nil {
		return nil, err
	}
	shards := map[string]int{}
	for _, ws := range list.Items {
		if ws.Status.Shard == nil {
			return nil, fmt.Errorf("%s has no shard", ws.Name)
		}
		shards[ws.Name] = int(*ws.Status.Shard)
	}
	return shards, nil
}

// waitGroupMembers waits until n checkers hold partitions.
func (r *run) waitGroupMembers(n int) {
	r.Eventually(time.Minute, fmt.Sprintf("%d checkers holding partitions", n), func(context.Context) (bool, error) {
		members, err := r.GroupMembers()
		return err == nil && len(members) == n, fmt.Errorf("members %v: %w", members, err)
	})
}

// committedOffsets are the checkers' group's committed offsets of the
// tasks topic, by partition.
func (r *run) committedOffsets() map[int32]int64 {
	r.T.Helper()
	cfg := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(kafka.DefaultVersion)
	r.Must(err)
	cfg.Version = v
	admin, err := sarama.NewClusterAdmin([]string{r.Broker.Addr}, cfg)
	r.Must(err)
	defer func() { _ = admin.Close() }()
	resp, err := admin.ListConsumerGroupOffsets(sys.CheckerGroup, map[string][]int32{sys.Topic: r.tap.Partitions})
	r.Must(err)
	if resp.Err != sarama.ErrNoError {
		r.T.Fatalf("listing the offsets of %s: %v", sys.CheckerGroup, resp.Err)
	}
	offsets := map[int32]int64{}
	for p, b := range resp.Blocks[sys.Topic] {
		offsets[p] = b.Offset
	}
	return offsets
}

func roundMiB(b int64) float64 { return float64(int64(mib(b)*10+0.5)) / 10 }
