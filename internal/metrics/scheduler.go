package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const schedulerSubsystem = "scheduler"

// Scheduler is a scheduler process's metrics. Each scheduler makes its own
// (NewScheduler), so that tests and benchmarks can run several in one
// process.
//
//	webmon_scheduler_websites                Websites of the shard, not suspended
//	webmon_scheduler_urls                    URLs scheduled
//	webmon_scheduler_leader                  1 while this replica publishes
//	webmon_scheduler_tasks_published_total   tasks acknowledged by Kafka, by trigger
//	webmon_scheduler_publish_errors_total    failed publish attempts (each is retried while it is on time)
//	webmon_scheduler_skipped_ticks_total     ticks given up because they could not be on time, by reason:
//	                                         late (never handed to Kafka) or unacknowledged (handed
//	                                         over, never acknowledged: Kafka may hold it all the same)
//	webmon_scheduler_catch_up_ticks_total    ticks a new leader published for its predecessor
//	webmon_scheduler_in_flight               tasks handed to the producer, not yet acknowledged
//	webmon_scheduler_lateness_seconds        acknowledgement time minus scheduledAt
type Scheduler struct {
	Websites      prometheus.Gauge
	URLs          prometheus.Gauge
	Leader        prometheus.Gauge
	Published     *prometheus.CounterVec
	PublishErrors prometheus.Counter
	SkippedTicks  *prometheus.CounterVec
	// SkippedLate and SkippedUnacknowledged are SkippedTicks' two series.
	SkippedLate           prometheus.Counter
	SkippedUnacknowledged prometheus.Counter
	CatchUpTicks          prometheus.Counter
	InFlight              prometheus.Gauge
	Lateness              prometheus.Histogram
}

// NewScheduler makes a scheduler's metrics and registers them with reg.
func NewScheduler(reg prometheus.Registerer) *Scheduler {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: schedulerSubsystem, Name: name, Help: help}
	}
	m := &Scheduler{
		Websites: prometheus.NewGauge(prometheus.GaugeOpts(opts("websites", "Websites of this shard that are not suspended."))),
		URLs:     prometheus.NewGauge(prometheus.GaugeOpts(opts("urls", "URLs this shard schedules."))),
		Leader:   prometheus.NewGauge(prometheus.GaugeOpts(opts("leader", "1 while this replica is the shard's leader and publishes."))),
		Published: prometheus.NewCounterVec(prometheus.CounterOpts(opts("tasks_published_total",
			"Check tasks acknowledged by Kafka, by trigger (schedule or check-now).")), []string{"trigger"}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts(opts("publish_errors_total",
			"Failed attempts to publish a task; each is retried while it can still be on time."))),
		SkippedTicks: prometheus.NewCounterVec(prometheus.CounterOpts(opts("skipped_ticks_total",
			"Ticks given up because Kafka could not take them on time, by reason: late (never handed to Kafka) or "+
				"unacknowledged (handed over but never acknowledged, so Kafka may hold it all the same). "+
				"The URL's next tick is published as usual.")), []string{reasonLabel}),
		CatchUpTicks: prometheus.NewCounter(prometheus.CounterOpts(opts("catch_up_ticks_total",
			"Ticks a new leader published late because its predecessor had not."))),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts(opts("in_flight", "Tasks handed to the Kafka producer and not yet acknowledged."))),
		Lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: schedulerSubsystem, Name: "lateness_seconds",
			Help:    "Time from a task's scheduledAt to Kafka's acknowledgement of it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	// A producer cannot tell a write Kafka lost from one whose
	// acknowledgement it lost: the reasons keep the count honest.
	m.SkippedLate = m.SkippedTicks.WithLabelValues("late")
	m.SkippedUnacknowledged = m.SkippedTicks.WithLabelValues("unacknowledged")
	reg.MustRegister(m.Websites, m.URLs, m.Leader, m.Published, m.PublishErrors, m.SkippedTicks, m.CatchUpTicks, m.InFlight, m.Lateness)
	return m
}
