// Package scale measures webmon as a whole at scale on this machine
// (docs/benchmarks.md, "Whole system at scale"): TestEndToEndAtScale runs
// the real pipeline (operator, scheduler shards, the embedded broker,
// checkers, PostgreSQL, statuses) against local target servers and holds
// what PostgreSQL stores to what the schedulers published;
// TestStoreAtScale sizes PostgreSQL per million results and times uptime
// reads. Both print their figures as key=value lines. With their default
// flags they are small runs that `make test` makes; `make bench-e2e` and
// `make bench-scale` run them at scale.
package scale
