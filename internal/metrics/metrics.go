// Package metrics defines every Prometheus metric webmon exports, under
// the webmon_ namespace, registered with controller-runtime's registry so
// that each component's metrics endpoint serves them. None has a label per
// Website or URL: their number would grow with the user's inventory.
//
// Operator (subsystem controller):
//
//	webmon_controller_shards                      scheduler shards planned
//	webmon_controller_planned_checks_per_second   load the plan is sized for
//	webmon_controller_websites                    Websites known to the operator
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

const (
	namespace           = "webmon"
	controllerSubsystem = "controller"
	// reasonLabel names why a message was skipped, an Event recorded, a
	// tick given up.
	reasonLabel = "reason"
)

// Operator metrics.
var (
	Shards = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: controllerSubsystem, Name: "shards",
		Help: "Scheduler shards the operator plans.",
	})
	PlannedChecksPerSecond = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: controllerSubsystem, Name: "planned_checks_per_second",
		Help: "Checks per second of all Websites that are not suspended, which the shard plan is sized for.",
	})
	Websites = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: controllerSubsystem, Name: "websites",
		Help: "Websites known to the operator.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Shards, PlannedChecksPerSecond, Websites)
}
