#!/usr/bin/env bash
# A throwaway PostgreSQL cluster in a folder, on its own port, for tests and
# the demo.
#
#   hack/postgres.sh install      install Debian's postgresql if it is missing
#   hack/postgres.sh start DIR    start a cluster in DIR (made if missing); prints its DSN
#   hack/postgres.sh halt DIR     stop it, keeping DIR: a start brings it back on its port
#   hack/postgres.sh stop DIR     stop it and remove DIR
#
# Tuned for throwaway use: fsync and synchronous commit are off.
# $WEBMON_PG_OPTS adds server options, for diagnosis (e.g. "-c
# shared_preload_libraries=pg_stat_statements").
# With $WEBMON_PG_TLS_DIR holding server.crt and server.key, the cluster
# also serves TLS with them (for tests of sslmode=verify-full).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install() {
  pg_bindir >/dev/null && return
  log "installing PostgreSQL from Debian (apt-get install postgresql)"
  as_root apt-get update -qq
  # The package would create and start a system-wide cluster on 5432; we
  # only want the binaries.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common >/dev/null
  as_root sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bindir >/dev/null || die "postgresql installed but no initdb found under /usr/lib/postgresql"
}

# as_pg runs a command as the owner of the cluster: initdb refuses root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local dir=${1:?usage: postgres.sh start DIR}
  install
  local bin; bin=$(pg_bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir" && chmod 0755 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
      || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
  fi
  local tls_opts=""
  if [ -n "${WEBMON_PG_TLS_DIR:-}" ]; then
    # PostgreSQL wants its key owned by itself and private.
    cp "$WEBMON_PG_TLS_DIR/server.crt" "$WEBMON_PG_TLS_DIR/server.key" "$dir/"
    chmod 0600 "$dir/server.key"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/server.crt" "$dir/server.key"
    tls_opts="-c ssl=on -c ssl_cert_file='$dir/server.crt' -c ssl_key_file='$dir/server.key'"
  fi
  local port attempt
  for attempt in 1 2 3 4 5; do
    if [ -f "$dir/port" ]; then
      # A halted cluster comes back where its clients look for it.
      port=$(cat "$dir/port")
    else
      port=$((20000 + RANDOM % 20000))
      port_in_use "$port" && continue
    fi
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
      "-p $port -c listen_addresses=127.0.0.1 -k '$dir' -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off $tls_opts ${WEBMON_PG_OPTS:-}" >/dev/null; then
      echo "$port" >"$dir/port"
      echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
      return
    fi
  done
  die "PostgreSQL did not start in $dir: $(tail -n 5 "$dir/server.log" 2>/dev/null)"
}

# halt stops the server as an outage would (fast: sessions are cut), and
# keeps its data and port for the next start.
halt() {
  local dir=${1:?usage: postgres.sh halt DIR}
  local bin; bin=$(pg_bindir) || die "no PostgreSQL binaries"
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
}

stop() {
  local dir=${1:?usage: postgres.sh stop DIR}
  [ -d "$dir" ] || return 0
  local bin; bin=$(pg_bindir) || die "no PostgreSQL binaries"
  if [ -f "$dir/data/postmaster.pid" ]; then
    if ! as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null; then
      warn "PostgreSQL in $dir did not stop in time; stopping it immediately"
      # Keep the folder if even that fails: removing it under a running
      # server would leave a process nobody can find.
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null ||
        die "could not stop PostgreSQL in $dir; its folder is kept"
    fi
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  halt) halt "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) die "usage: $0 install | start DIR | halt DIR | stop DIR" ;;
esac
