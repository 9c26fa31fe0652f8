# webmon's Makefile. `make help` lists the targets.

VERSION ?= dev
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMG ?= ghcr.io/webmon-dev/webmon:$(VERSION)

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

GOFLAGS_BUILD := -trimpath -ldflags "-s -w \
	-X github.com/webmon-dev/webmon/internal/version.Version=$(VERSION) \
	-X github.com/webmon-dev/webmon/internal/version.Commit=$(COMMIT)"

# Where the local control plane's binaries live (built and cached outside the
# repository by hack/install-controlplane.sh; versions are pinned in hack/lib.sh).
TESTBED_ENV = $(shell hack/install-controlplane.sh --print-env)

# Go test flags: -race where affordable, never cached (the tests talk to real servers).
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and RBAC from the Go types and markers.
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=webmon-operator paths="./controllers/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=webmon-scheduler paths="./scheduler/..." output:rbac:artifacts:config=config/rbac/scheduler
	$(CONTROLLER_GEN) rbac:roleName=webmon-checker paths="./checker" output:rbac:artifacts:config=config/rbac/checker
	@$(MAKE) --no-print-directory chart-crds chart-rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and fix what it can.
	$(GOLANGCI_LINT) run --fix

##@ Test

.PHONY: test
test: manifests generate fmt vet controlplane-tools ## Run unit, envtest and integration tests (real kube-apiserver, PostgreSQL, Kafka protocol).
	env $(TESTBED_ENV) hack/with-postgres.sh go test $(TEST_FLAGS) ./...

.PHONY: test-e2e
test-e2e: controlplane-tools ## Run the end-to-end tests: the whole system, installed by its chart, on a full local control plane (about 3 minutes).
	env $(TESTBED_ENV) hack/with-postgres.sh go test $(TEST_FLAGS) -v ./test/e2e/...

.PHONY: test-reliability
test-reliability: controlplane-tools ## Break each part of the system under load (checker, scheduler leader, broker, PostgreSQL, apiserver, operator); figures as key=value lines (docs/reliability.md). OUTAGE=30s sets the outages.
	env $(TESTBED_ENV) go test $(TEST_FLAGS) -v ./test/reliability/ $(if $(OUTAGE),-args -reliability.outage=$(OUTAGE)) \
		| tee -a /dev/stderr | $(FIGURES)

FUZZTIME ?= 20s
.PHONY: fuzz
fuzz: ## Fuzz the task decoder and the plugin configuration for FUZZTIME each (20s by default); a failing input lands in testdata/fuzz and is a test from then on.
	go test -run='^$$' -fuzz='^FuzzUnmarshal$$' -fuzztime=$(FUZZTIME) ./internal/task
	go test -run='^$$' -fuzz='^FuzzPluginConfig$$' -fuzztime=$(FUZZTIME) ./checker/plugins

# Where the benchmark targets leave their figures (a file per section of
# docs/benchmarks.md), for `make bench-doc` to write into the page.
BENCH_DIR ?= bin/bench
# The key=value lines a test logs, without the file:line prefix. The
# targets copy the whole output to stderr with `tee -a`: plain tee would
# truncate a log file that stderr is redirected to.
FIGURES = sed -n 's/^ *[a-z0-9_]*_test.go:[0-9]*: \([a-z0-9_]*=.*\)$$/\1/p'

.PHONY: bench
bench: ## Run every benchmark, then rewrite docs/benchmarks.md's figures from them; fails at the end if one failed or missed a goal.
	@rm -rf $(BENCH_DIR); failed=; \
	for b in bench-operator bench-operator-100k bench-scheduler bench-checker bench-e2e bench-scale bench-go; do \
		echo "== $$b"; $(MAKE) --no-print-directory $$b || failed="$$failed $$b"; \
	done; \
	$(MAKE) --no-print-directory bench-doc; \
	if [ -n "$$failed" ]; then echo "failed or missed a goal:$$failed" >&2; exit 1; fi

.PHONY: bench-doc
bench-doc: ## Rewrite the figures in docs/benchmarks.md from the last benchmark runs' output (BENCH_DIR).
	go run ./hack/benchdoc -dir $(BENCH_DIR) -doc docs/benchmarks.md

.PHONY: bench-operator
bench-operator: controlplane-tools ## Time the operator labelling and scheduling 10,000 Websites (envtest, goal: under 60 s).
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) go test -count=1 -run='^TestOperatorAtScale$$' -v ./controllers/ -args -scale.websites=10000 -scale.goal=60s \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/operator.txt

.PHONY: bench-operator-100k
bench-operator-100k: controlplane-tools ## The operator's time and heap for 100,000 Websites (envtest; the scale sheet).
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) go test -count=1 -timeout 60m -run='^TestOperatorAtScale$$' -v ./controllers/ -args -scale.websites=100000 -scale.goal=10m \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/operator-100k.txt

.PHONY: bench-scheduler
bench-scheduler: ## Publish 1,000,000 URLs through the scheduler against the embedded broker, against raw sarama's ceiling.
	@mkdir -p $(BENCH_DIR)
	go test -count=1 -run='^TestSchedulerThroughput$$' -v ./scheduler/ -args -throughput.urls=1000000 -throughput.duration=5s -throughput.goals \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/scheduler.txt

.PHONY: bench-checker
bench-checker: controlplane-tools ## Check 300,000 tasks end to end (Kafka, checks, PostgreSQL, status) five times, against raw HTTP and COPY ceilings (about 6 minutes).
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) hack/with-postgres.sh go test -count=1 -timeout 30m -run='^TestCheckerThroughput$$' -v ./checker/ -args -throughput.tasks=300000 -throughput.duration=5s -throughput.rounds=5 -throughput.goals \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/checker.txt

.PHONY: bench-e2e
bench-e2e: controlplane-tools ## Run the whole system at scale: 100,000 URLs every 10 s (10,000 checks/s) for 120 s, results held to what was published.
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) hack/with-postgres.sh go test -count=1 -timeout 40m -run='^TestEndToEndAtScale$$' -v ./test/scale/ \
		-args -scale.urls=100000 -scale.interval=10s -scale.duration=120s -scale.warmup=20s -scale.targets=4 -scale.shards=2 -scale.checkers=2 -scale.goals \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/e2e.txt

.PHONY: bench-scale
bench-scale: controlplane-tools ## The scale sheet: PostgreSQL bytes per million results and 24 h uptime reads (1,000,000 results, 10,000 URLs).
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) hack/with-postgres.sh go test -count=1 -timeout 20m -run='^TestStoreAtScale$$' -v ./test/scale/ \
		-args -store.results=1000000 -store.websites=100 -store.urls=100 \
		| tee -a /dev/stderr | $(FIGURES) | tee $(BENCH_DIR)/scale.txt

.PHONY: bench-go
bench-go: controlplane-tools ## Run the Go benchmarks of every package (encoding, schedule, publisher, store, probes).
	@mkdir -p $(BENCH_DIR)
	env $(TESTBED_ENV) hack/with-postgres.sh go test -count=1 -run='^$$' -bench=. -benchmem ./... | tee $(BENCH_DIR)/go.txt

##@ Build

.PHONY: build
build: fmt vet ## Build the webmon binary into bin/.
	go build $(GOFLAGS_BUILD) -o bin/webmon ./cmd/webmon

##@ Run locally

.PHONY: demo
demo: ## Run webmon locally in the background (control plane, PostgreSQL, Kafka, the chart, two demo Websites); reuses a running demo.
	hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop everything `make demo` started.
	hack/demo.sh down

.PHONY: controlplane
controlplane: controlplane-tools ## Run a local control plane (etcd, apiserver, controllers, kwok node) until Ctrl-C.
	env $(TESTBED_ENV) go run ./hack/controlplane --dir $${TMPDIR:-/tmp}/webmon-controlplane

.PHONY: run-broker
run-broker: ## Run the embedded Kafka broker on 127.0.0.1:9092.
	go run ./cmd/webmon dev-broker --port 9092

##@ Deployment

.PHONY: chart-crds
chart-crds: ## Copy the generated CRDs into the Helm chart (test/chart checks they match).
	rm -f charts/webmon/crds/*.yaml
	cp config/crd/bases/*.yaml charts/webmon/crds/

.PHONY: chart-rbac
chart-rbac: ## Copy the generated RBAC rules into the Helm chart, which renders its roles from them.
	cp config/rbac/role.yaml charts/webmon/files/rbac/operator-role.yaml
	cp config/rbac/scheduler/role.yaml charts/webmon/files/rbac/scheduler-role.yaml
	cp config/rbac/checker/role.yaml charts/webmon/files/rbac/checker-role.yaml
	cp config/rbac/checker/secret_reader_role.yaml charts/webmon/files/rbac/checker-secrets-role.yaml

.PHONY: helm-lint
helm-lint: controlplane-tools ## Lint the Helm chart.
	env $(TESTBED_ENV) sh -c '$$WEBMON_HELM lint charts/webmon'

.PHONY: helm-template
helm-template: controlplane-tools ## Render the Helm chart with its defaults (HELM_VALUES=file.yaml adds values).
	@env $(TESTBED_ENV) sh -c '$$WEBMON_HELM template webmon charts/webmon --namespace webmon-system $(if $(HELM_VALUES),--values $(HELM_VALUES))'

.PHONY: install
install: manifests ## Install the CRDs into the cluster of the current kubeconfig.
	env $(TESTBED_ENV) sh -c '$$WEBMON_K8S_BIN/kubectl apply --server-side -f config/crd/bases'

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster of the current kubeconfig.
	env $(TESTBED_ENV) sh -c '$$WEBMON_K8S_BIN/kubectl delete --ignore-not-found -f config/crd/bases'

##@ Dependencies

## Location to install dependencies to
LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

## Tool Binaries
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint

## Tool Versions
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: tools
tools: controller-gen golangci-lint controlplane-tools ## Install every tool the project needs (cached; a second run does nothing).

.PHONY: controlplane-tools
controlplane-tools: ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm and kwok (cached outside the repo).
	hack/install-controlplane.sh

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Download controller-gen locally if necessary.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Download golangci-lint locally if necessary.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Downloading $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
