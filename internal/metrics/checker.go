package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	checkerSubsystem = "checker"
	storeSubsystem   = "store"
)

// Checker is a checker process's metrics, made by NewChecker so that tests
// can run several checkers in one process.
//
//	webmon_checker_checks_total              checks stored, by outcome (up, down, missed) and error class
//	webmon_checker_missed_tasks_total        tasks that reached the checker after their deadline
//	webmon_checker_malformed_tasks_total     task messages skipped, by reason (empty, unknown_version, malformed, scheduled_ahead)
//	webmon_checker_phase_seconds             duration of each phase of a check (dns, connect, tls, ttfb, total)
//	webmon_checker_consumer_lag              messages behind the partition's end, by partition this checker owns
//	webmon_checker_in_flight                 checks being made
//	webmon_checker_pending_results           checks taken from Kafka whose results are not stored yet
//	webmon_checker_status_writes_total       Website status writes, by result (written, unchanged, conflict, gone, error)
//	webmon_checker_events_total              Events recorded, by reason
//	webmon_store_batch_size                  results per batch written
//	webmon_store_write_seconds               time to store a batch, retries included
//	webmon_store_write_errors_total          failed attempts to store a batch (each is retried)
//	webmon_store_results_total               results stored, by whether they were new or redelivered
//	webmon_store_rollup_seconds              time of a rollup run
type Checker struct {
	Checks         *prometheus.CounterVec
	MissedTasks    prometheus.Counter
	MalformedTasks *prometheus.CounterVec
	Phases         *prometheus.HistogramVec
	// phases are Phases' histograms, looked up once (ObservePhases runs
	// for every check).
	phases         [len(phaseNames)]prometheus.Observer
	ConsumerLag    *prometheus.GaugeVec
	InFlight       prometheus.Gauge
	PendingResults prometheus.Gauge
	StatusWrites   *prometheus.CounterVec
	Events         *prometheus.CounterVec

	BatchSize   prometheus.Histogram
	WriteTime   prometheus.Histogram
	WriteErrors prometheus.Counter
	Results     *prometheus.CounterVec
	RollupTime  prometheus.Histogram
}

// NewChecker makes a checker's metrics and registers them with reg.
func NewChecker(reg prometheus.Registerer) *Checker {
	checker := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: checkerSubsystem, Name: name, Help: help}
	}
	store := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: storeSubsystem, Name: name, Help: help}
	}
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Checker{
		Checks: prometheus.NewCounterVec(prometheus.CounterOpts(checker("checks_total",
			"Checks stored, by outcome (up, down, missed) and error class (empty when up).")), []string{"outcome", "class"}),
		MissedTasks: prometheus.NewCounter(prometheus.CounterOpts(checker("missed_tasks_total",
			"Tasks that reached the checker after their deadline, stored as missed without a check."))),
		MalformedTasks: prometheus.NewCounterVec(prometheus.CounterOpts(checker("malformed_tasks_total",
			"Task messages that could not be read, or were scheduled ahead of the checker's clock, and were skipped, by reason.")), []string{reasonLabel}),
		Phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: checkerSubsystem, Name: "phase_seconds",
			Help:    "Duration of each phase of a check: dns, connect, tls, ttfb (time to first byte) and total.",
			Buckets: latency,
		}, []string{"phase"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts(checker("consumer_lag",
			"Task messages behind the end of each partition this checker owns.")), []string{"partition"}),
		InFlight:       prometheus.NewGauge(prometheus.GaugeOpts(checker("in_flight", "Checks being made."))),
		PendingResults: prometheus.NewGauge(prometheus.GaugeOpts(checker("pending_results", "Tasks taken from Kafka whose results are not stored yet."))),
		StatusWrites: prometheus.NewCounterVec(prometheus.CounterOpts(checker("status_writes_total",
			"Website status updates, by result: written, unchanged (nothing to write), conflict (retried), gone (Website deleted), error.")), []string{"result"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts(checker("events_total",
			"Kubernetes Events recorded on URL state changes, by reason.")), []string{reasonLabel}),

		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: storeSubsystem, Name: "batch_size", Help: "Results per batch stored.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		WriteTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: storeSubsystem, Name: "write_seconds", Help: "Time to store a batch, retries included.",
			Buckets: latency,
		}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts(store("write_errors_total",
			"Failed attempts to store a batch; each is retried with backoff, and offsets wait."))),
		Results: prometheus.NewCounterVec(prometheus.CounterOpts(store("results_total",
			"Results stored, by kind: new, or duplicate (a redelivered task, stored once).")), []string{"kind"}),
		RollupTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: storeSubsystem, Name: "rollup_seconds", Help: "Time of a rollup run.",
			Buckets: latency,
		}),
	}
	for i, name := range phaseNames {
		m.phases[i] = m.Phases.WithLabelValues(name)
	}
	reg.MustRegister(m.Checks, m.MissedTasks, m.MalformedTasks, m.Phases, m.ConsumerLag, m.InFlight, m.PendingResults,
		m.StatusWrites, m.Events, m.BatchSize, m.WriteTime, m.WriteErrors, m.Results, m.RollupTime)
	return m
}

// ObservePhases records the phases of one check that happened (a zero
// duration did not: a reused connection, or a failure before it).
func (m *Checker) ObservePhases(dns, connect, tls, ttfb, total time.Duration) {
	for i, d := range [...]time.Duration{dns, connect, tls, ttfb, total} {
		if d > 0 {
			m.phases[i].Observe(d.Seconds())
		}
	}
}

// phaseNames label webmon_checker_phase_seconds, in ObservePhases' order.
var phaseNames = [...]string{"dns", "connect", "tls", "ttfb", "total"}
