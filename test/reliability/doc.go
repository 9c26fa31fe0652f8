// Package reliability holds the fault tests of webmon as a whole: under a
// steady load of a thousand URLs, it kills and stops each part of the
// system in turn (a checker, the scheduler leader, the Kafka broker,
// PostgreSQL, the kube-apiserver, the operator) and proves from what the
// schedulers published and what PostgreSQL holds that no result is lost or
// counted twice. `make test-reliability` runs it alone and prints its
// figures; docs/reliability.md records them.
package reliability
