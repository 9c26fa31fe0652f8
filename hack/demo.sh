#!/usr/bin/env bash
# webmon on this machine, for a first look: `make demo` and `make demo-down`.
#
#   hack/demo.sh up     build what is missing, start everything in the background,
#                       install the chart and two demo Websites; reuses a running demo
#   hack/demo.sh down   stop everything `up` started
#   hack/demo.sh env    print the variables to look around with (KUBECONFIG, ...)
#
# What runs, each a background process with its pid file in $STATE/run and
# its log in $STATE/logs:
#   controlplane  etcd, kube-apiserver, kube-controller-manager, kube-scheduler
#                 and kwok (hack/controlplane), leaving webmon's pods to the runner
#   postgres      a throwaway PostgreSQL cluster (hack/postgres.sh)
#   broker        the embedded Kafka broker (webmon dev-broker)
#   sites         two local websites to monitor, one healthy, one broken (hack/demo-sites)
#   runner        the kubelet of webmon's pods: runs them as bin/webmon processes (hack/runner)
#
# $WEBMON_DEMO_DIR moves the state folder (default ~/.cache/webmon/demo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEBMON_ROOT"

STATE=${WEBMON_DEMO_DIR:-$WEBMON_CACHE/demo}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
# PostgreSQL runs as the postgres user when we are root, and must reach its
# folder: not under a home that only its owner may enter.
PGDIR=${TMPDIR:-/tmp}/webmon-pg-demo-$(id -u)-$(printf '%s' "$STATE" | sha256sum | cut -c1-8)
NAMESPACE=webmon-system
RELEASE=webmon
LOCAL_PODS=app.kubernetes.io/name=webmon
KUBECONFIG_FILE=$STATE/controlplane/kubeconfig
# Background processes, in start order; `down` stops them in reverse.
PROCESSES=(controlplane broker sites runner)
started=$SECONDS

step() { log "[$((SECONDS - started))s] $*"; }

pidfile() { echo "$STATE/run/$1.pid"; }
logfile() { echo "$STATE/logs/$1.log"; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$stat" ] && [[ $stat != Z* ]]
}

# running NAME: its pid file names a live process, and one of ours: every
# process the demo starts has the state folder in its arguments (a pid
# file that outlived a reboot may name someone else's).
running() {
  local pid args
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $args == *"$STATE/"* ]]
}

postgres_running() {
  local pid
  pid=$(head -n 1 "$PGDIR/data/postmaster.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid"
}

# start_bg NAME CMD...: CMD in a session of its own (Ctrl-C in this terminal
# does not reach it), logging to logs/NAME.log.
start_bg() {
  local name=$1
  shift
  setsid "$@" >"$(logfile "$name")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# wait_until NAME SECONDS WHAT CMD...: polls CMD, failing with the end of
# NAME's log if NAME exits or time runs out; a line every 15 s shows progress.
wait_until() {
  local name=$1 timeout=$2 what=$3
  shift 3
  local deadline=$((SECONDS + timeout)) next=$((SECONDS + 15))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$name" ] && ! running "$name"; then
      die "$name exited while waiting for $what; the end of $(logfile "$name"):
$(tail -n 20 "$(logfile "$name")" 2>/dev/null)
Run 'make demo-down' before trying again."
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "no $what after ${timeout}s; logs are in $STATE/logs. Run 'make demo-down' before trying again."
    fi
    if [ "$SECONDS" -ge "$next" ]; then
      log "  still waiting for $what ($((SECONDS - started))s)"
      next=$((SECONDS + 15))
    fi
    sleep 1
  done
}

# stop_bg NAME SECONDS: SIGTERM, then SIGKILL to its whole process group.
stop_bg() {
  local name=$1 grace=$2 pid
  pid=$(cat "$(pidfile "$name")" 2>/dev/null) || return 0
  if running "$name"; then
    step "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if alive "$pid"; then
      warn "$name did not stop within ${grace}s: killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.2; done
    fi
  fi
  rm -f "$(pidfile "$name")"
}

kctl() { "$WEBMON_K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# load_tools_env sets WEBMON_K8S_BIN, WEBMON_HELM and the rest.
load_tools_env() {
  local line
  while IFS= read -r line; do export "${line?}"; done < <(hack/install-controlplane.sh --print-env)
}

tools() {
  step "control plane tools (built once, cached in $WEBMON_CACHE; the first build takes about 10 minutes)"
  hack/install-controlplane.sh
  hack/postgres.sh install
}

build() {
  step "building bin/webmon, bin/runner, bin/controlplane, bin/demo-sites (go build; cached after the first run)"
  local commit
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  mkdir -p bin
  go build -ldflags "-X github.com/webmon-dev/webmon/internal/version.Version=demo -X github.com/webmon-dev/webmon/internal/version.Commit=$commit" \
    -o bin/ ./cmd/webmon ./hack/runner ./hack/controlplane ./hack/demo-sites
}

# all_up: every process of an earlier `up` still runs, and the API server answers.
all_up() {
  local p
  for p in "${PROCESSES[@]}"; do running "$p" || return 1; done
  postgres_running && [ -s "$STATE/database-url" ] && [ -s "$STATE/broker.addr" ] && [ -s "$STATE/sites.env" ] &&
    kctl get --raw /readyz >/dev/null 2>&1
}

something_left() {
  local p
  for p in "${PROCESSES[@]}"; do [ -e "$(pidfile "$p")" ] && return 0; done
  [ -d "$PGDIR" ]
}

start_all() {
  mkdir -p "$STATE/run" "$STATE/logs"
  rm -rf "$STATE/broker" "$STATE/runner" "$STATE/database-url" "$STATE/broker.addr" "$STATE/sites.env"

  step "starting the control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
  start_bg controlplane bin/controlplane --dir "$STATE/controlplane" --local-pods "$LOCAL_PODS"
  wait_until controlplane 180 "a ready control plane" grep -q '^export KUBECONFIG=' "$(logfile controlplane)"

  step "starting PostgreSQL"
  local url
  url=$(hack/postgres.sh start "$PGDIR")
  ln -sf "$PGDIR/server.log" "$(logfile postgres)"
  "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql" -q "$url" -c 'CREATE DATABASE webmon' >/dev/null
  echo "${url%/postgres?*}/webmon?sslmode=disable" >"$STATE/database-url"

  step "starting the embedded Kafka broker"
  start_bg broker bin/webmon dev-broker --port 0 --partitions 4 --data-dir "$STATE/broker"
  wait_until broker 30 "the broker listening" grep -q 'listening on' "$(logfile broker)"
  sed -n '/listening on/{s/.*listening on \([0-9.:]*\).*/\1/p;q;}' "$(logfile broker)" >"$STATE/broker.addr"

  step "starting the demo websites"
  start_bg sites bin/demo-sites --urls-file "$STATE/sites.env"
  wait_until sites 30 "the demo websites" test -s "$STATE/sites.env"

  step "starting the runner, which runs webmon's pods as bin/webmon processes"
  start_bg runner bin/runner --kubeconfig "$KUBECONFIG_FILE" --binary bin/webmon --dir "$STATE/runner" --max-grace-period 20s
  wait_until runner 60 "the runner watching pods" grep -q 'runner: running pods' "$(logfile runner)"
}

deploy() {
  local broker url
  broker=$(cat "$STATE/broker.addr")
  url=$(cat "$STATE/database-url")
  step "creating namespace $NAMESPACE and the database Secret $RELEASE-database"
  kctl create namespace "$NAMESPACE" --dry-run=client -o yaml | kctl apply -f - >/dev/null
  kctl -n "$NAMESPACE" create secret generic "$RELEASE-database" --from-literal=url="$url" --dry-run=client -o yaml | kctl apply -f - >/dev/null

  step "helm install $RELEASE charts/webmon --wait (migrations, operator, checker; a minute or two)"
  KUBECONFIG=$KUBECONFIG_FILE "$WEBMON_HELM" upgrade --install "$RELEASE" charts/webmon --namespace "$NAMESPACE" \
    --values config/samples/demo/values.yaml --set "kafka.brokers[0]=$broker" --wait --timeout 5m >"$STATE/logs/helm.log" ||
    die "helm install failed: $(tail -n 5 "$STATE/logs/helm.log"); pods: $(kctl -n "$NAMESPACE" get pods 2>&1); logs in $STATE/logs and $STATE/runner/logs"

  step "waiting for the operator's scheduler Deployment webmon-scheduler-0"
  wait_until runner 120 "Deployment webmon-scheduler-0" kctl -n "$NAMESPACE" get deployment webmon-scheduler-0
  kctl -n "$NAMESPACE" rollout status deployment webmon-scheduler-0 --timeout 2m >/dev/null

  step "applying the demo Websites (config/samples/demo): demo-shop (healthy) and demo-api (broken)"
  local f
  # shellcheck disable=SC1091
  source "$STATE/sites.env"
  for f in config/samples/demo/website-*.yaml; do
    sed -e "s|\${DEMO_HEALTHY_URL}|$DEMO_HEALTHY_URL|" -e "s|\${DEMO_BROKEN_URL}|$DEMO_BROKEN_URL|" "$f" | kctl apply -f - >/dev/null
  done

  step "waiting for demo-shop to be Up and demo-api Down (checks every 10s; Down takes 2 failed checks)"
  wait_until runner 180 "demo-shop Up and demo-api Down" states_are Up Down
}

states_are() {
  [ "$(kctl get website demo-shop -o 'jsonpath={.status.state}')" = "$1" ] &&
    [ "$(kctl get website demo-api -o 'jsonpath={.status.state}')" = "$2" ]
}

print_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export WEBMON_DATABASE_URL='$(cat "$STATE/database-url" 2>/dev/null)'"
  echo "export PATH=$WEBMON_K8S_BIN:\$PATH   # kubectl"
}

up() {
  trap 'warn "interrupted: what was started keeps running; make demo-down stops it"; exit 130' INT
  tools
  build
  if all_up; then
    step "reusing the demo already running in $STATE (its processes keep the binaries they started with: 'make demo-down' then 'make demo' runs fresh ones)"
  else
    if something_left; then
      step "an earlier demo is stopped or partly running: stopping what is left and starting afresh"
      down
    fi
    start_all
  fi
  deploy
  step "webmon is up"
  echo
  kctl get websites
  cat <<EOF

Look around (the demo keeps running until 'make demo-down'):

$(print_env)
  kubectl get websites -o wide
  kubectl describe website demo-api
  kubectl -n $NAMESPACE get deployments,pods,hpa
  bin/webmon history default/demo-shop        # every check, from PostgreSQL
  kubectl annotate website demo-shop monitoring.webmon.dev/check-now=\$(date +%s) --overwrite   # check now

Logs: $STATE/logs (control plane servers in $STATE/controlplane/logs,
webmon's pods in $STATE/runner/logs). 'hack/demo.sh env' prints the exports again.
Stop everything: make demo-down
EOF
}

down() {
  local p i
  for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
    p=${PROCESSES[i]}
    # The runner stops webmon's processes first (their grace period is
    # capped at 20 s); the control plane stops its servers in order.
    stop_bg "$p" 60
  done
  if [ -d "$PGDIR" ]; then
    step "stopping PostgreSQL"
    hack/postgres.sh stop "$PGDIR"
  fi
  rm -f "$(logfile postgres)"
  local left
  left=$(demo_processes)
  [ -z "$left" ] || die "processes of the demo still run:
$left"
  step "the demo is stopped; its logs stay in $STATE/logs"
}

# demo_processes lists the processes that use the demo's folders, by their
# arguments or their working directory (webmon's pods run in the runner's).
demo_processes() {
  local d pid args cwd
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] && continue
    args=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
    cwd=$(readlink "$d/cwd" 2>/dev/null) || cwd=
    case "$args $cwd/" in
      *"$STATE/"* | *"$PGDIR"*) echo "$pid $args" ;;
    esac
  done
}

load_tools_env
case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) die "usage: $0 up | down | env" ;;
esac
