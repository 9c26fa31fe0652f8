#!/usr/bin/env bash
# Shared helpers for webmon's hack/ scripts. Source it; do not run it.

WEBMON_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEBMON_CACHE=${WEBMON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webmon}

# Pinned versions of everything the scripts build. Bumping one rebuilds it:
# each install lands in a folder named after its version.
KUBERNETES_VERSION=v1.37.1
ETCD_VERSION=v3.6.16 # must match hack/tools/etcd/go.mod
HELM_VERSION=v3.22.0
KWOK_VERSION=v0.8.0

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# as_root runs a command as root, through sudo when we are not root already.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# stamp_of prints a digest of the given files: the key of a cached build.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# timed runs a command and reports how long it took.
timed() {
  local start=$SECONDS
  "$@"
  log "  done in $((SECONDS - start))s"
}
