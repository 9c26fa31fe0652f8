#!/usr/bin/env bash
# Runs a command with $WEBMON_DATABASE_URL pointing at a PostgreSQL server:
# the one already in $WEBMON_DATABASE_URL if set, else a throwaway cluster
# started for the command and stopped after it, however it ends.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -gt 0 ] || die "usage: $0 COMMAND [ARG...]"
if [ -n "${WEBMON_DATABASE_URL:-}" ]; then
  exec "$@"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/webmon-pg.XXXXXX")
trap '"$WEBMON_ROOT/hack/postgres.sh" stop "$dir"' EXIT
WEBMON_DATABASE_URL=$("$WEBMON_ROOT/hack/postgres.sh" start "$dir")
export WEBMON_DATABASE_URL
log "PostgreSQL for this run: $WEBMON_DATABASE_URL"
"$@"
