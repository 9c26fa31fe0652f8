#!/usr/bin/env bash
# Builds, once, the binaries of a real local Kubernetes control plane and the
# tools around it, and caches them outside the repository, keyed by version:
#
#   $WEBMON_CACHE/kubernetes-<version>/bin  etcd kube-apiserver kube-controller-manager
#                                           kube-scheduler kubectl  (KUBEBUILDER_ASSETS)
#   $WEBMON_CACHE/helm-<version>/bin        helm
#   $WEBMON_CACHE/kwok-<version>/bin        kwok, and stages/ with its stage definitions
#
# No release binaries can be downloaded here, so each is built from source
# through the Go module proxy (hack/tools/* are the wrapper modules). A warm
# run checks stamps and returns in seconds. Prints the asset directories'
# variables for `eval` with --print-env.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_DIR=$WEBMON_CACHE/kubernetes-$KUBERNETES_VERSION/bin
HELM_DIR=$WEBMON_CACHE/helm-$HELM_VERSION/bin
KWOK_DIR=$WEBMON_CACHE/kwok-$KWOK_VERSION

print_env() {
  cat <<ENV
KUBEBUILDER_ASSETS=$K8S_DIR
WEBMON_K8S_BIN=$K8S_DIR
WEBMON_HELM=$HELM_DIR/helm
WEBMON_KWOK=$KWOK_DIR/bin/kwok
WEBMON_KWOK_STAGES=$KWOK_DIR/stages
ENV
}
if [ "${1:-}" = "--print-env" ]; then print_env; exit 0; fi

export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false"
mkdir -p "$WEBMON_CACHE"
# Two make targets may race to build the same things: take turns.
exec 9>"$WEBMON_CACHE/.install.lock"
flock 9

# fresh BINARY STAMP: was BINARY built from inputs with this stamp?
fresh() { [ -x "$1" ] && [ -f "$1.stamp" ] && [ "$(cat "$1.stamp")" = "$2" ]; }

build_etcd() {
  local stamp; stamp=$(stamp_of "$WEBMON_ROOT"/hack/tools/etcd/go.{mod,sum} "$WEBMON_ROOT"/hack/tools/etcd/main.go)
  fresh "$K8S_DIR/etcd" "$stamp" && return
  log "building etcd $ETCD_VERSION (cold: ~1 min)"
  timed go -C "$WEBMON_ROOT/hack/tools/etcd" build -trimpath -o "$K8S_DIR/etcd" .
  echo "$stamp" >"$K8S_DIR/etcd.stamp"
}

build_kubernetes() {
  local stamp; stamp=$(stamp_of "$WEBMON_ROOT"/hack/tools/kubernetes/go.{mod,sum})
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local pkg ldflags=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    fresh "$K8S_DIR/$cmd" "$stamp" && continue
    case $cmd in
      kube-apiserver) log "building kube-apiserver $KUBERNETES_VERSION (cold: ~5 min, 2.4 GB of memory)" ;;
      kube-controller-manager) log "building kube-controller-manager $KUBERNETES_VERSION (cold: ~2 min)" ;;
      *) log "building $cmd $KUBERNETES_VERSION (cold: under a minute)" ;;
    esac
    timed go -C "$WEBMON_ROOT/hack/tools/kubernetes" build -trimpath -ldflags "$ldflags" \
      -o "$K8S_DIR/$cmd" "k8s.io/kubernetes/cmd/$cmd"
    echo "$stamp" >"$K8S_DIR/$cmd.stamp"
  done
}

install_helm() {
  [ -x "$HELM_DIR/helm" ] && return
  log "building helm $HELM_VERSION (cold: ~1.5 min)"
  timed env GOBIN="$HELM_DIR" go install -trimpath \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

install_kwok() {
  if [ ! -x "$KWOK_DIR/bin/kwok" ]; then
    log "building kwok $KWOK_VERSION (cold: ~1.5 min)"
    timed env GOBIN="$KWOK_DIR/bin" go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  fi
  [ -f "$KWOK_DIR/stages/pod-ready.yaml" ] && return
  # The stage definitions make a fake node Ready and its pods Running; they
  # ship in kwok's module, not in its binary.
  local src; src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  [ -d "$src" ] || go mod download "sigs.k8s.io/kwok@$KWOK_VERSION"
  mkdir -p "$KWOK_DIR/stages"
  cp "$src"/node/fast/node-initialize.yaml "$src"/node/heartbeat/node-heartbeat.yaml \
    "$src"/pod/fast/pod-ready.yaml "$src"/pod/fast/pod-complete.yaml "$src"/pod/fast/pod-delete.yaml \
    "$KWOK_DIR/stages/"
  chmod -R u+w "$KWOK_DIR/stages"
}

mkdir -p "$K8S_DIR"
build_etcd
build_kubernetes
install_helm
install_kwok
log "control plane tools ready in $WEBMON_CACHE"
