#!/bin/sh
# pg_cluster.sh start|stop STATE_DIR
#
# A throwaway PostgreSQL cluster for the tests (the ctest fixture `postgres`).
#   start: initdb into a fresh temp dir, start the server on a free port of
#          127.0.0.1 (Unix socket in the temp dir, fsync off) and write the
#          connection settings to STATE_DIR/pg.env as shell assignments:
#            PGHOST=127.0.0.1 PGPORT=N PGUSER=postgres
#            TROUPE_PG_URL=postgresql://postgres@127.0.0.1:N/postgres
#   stop:  stop the server (-m immediate) and remove its data dir.
# As root the server runs as the `postgres` user (root may not run it).
# When no PostgreSQL is installed, start writes no pg.env and exits 0, so the
# PostgreSQL tests skip; with CI=true that is an error instead.
set -eu

usage() { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
state=$2

pgbin=${TROUPE_PGBIN:-}
if [ -z "$pgbin" ]; then
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ]; then pgbin=$dir; break; fi
  done
fi

# Runs a PostgreSQL program as the cluster owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_cluster() {
  [ -f "$state/pg.dir" ] || return 0
  datadir=$(cat "$state/pg.dir")
  rm -f "$state/pg.env"
  if [ -n "$datadir" ] && [ -d "$datadir" ]; then
    as_owner "$pgbin/pg_ctl" -D "$datadir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$datadir"
  fi
  rm -f "$state/pg.dir"
}

case "$action" in
  start)
    mkdir -p "$state"
    # A previous run killed before its cleanup step leaves a server behind.
    [ -z "$pgbin" ] || stop_cluster
    rm -f "$state/pg.env"
    reason=""
    if [ -z "$pgbin" ]; then
      reason="no PostgreSQL server binaries (initdb) found; install postgresql or set TROUPE_PGBIN"
    elif [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
      reason="running as root but there is no 'postgres' user to own the cluster"
    fi
    if [ -n "$reason" ]; then
      echo "postgres fixture: not started: $reason" >&2
      if [ "${CI:-}" = "true" ]; then exit 1; fi
      exit 0
    fi
    datadir=$(mktemp -d "${TMPDIR:-/tmp}/troupe-pg.XXXXXX")
    echo "$datadir" > "$state/pg.dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$datadir"; fi
    as_owner "$pgbin/initdb" -D "$datadir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$datadir/initdb.log" 2>&1 || {
      cat "$datadir/initdb.log" >&2; stop_cluster; exit 1; }
    # Another process may take the port between our pick and the bind: retry.
    attempt=0
    while :; do
      attempt=$((attempt + 1))
      port=$(shuf -i 20000-60999 -n 1)
      if as_owner "$pgbin/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -t 30 start \
           -o "-p $port -c listen_addresses=127.0.0.1 -k $datadir -c fsync=off \
               -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
           >/dev/null 2>&1; then
        break
      fi
      if [ $attempt -ge 8 ]; then
        echo "postgres fixture: server did not start; last log lines:" >&2
        tail -n 20 "$datadir/server.log" >&2 || true
        stop_cluster
        exit 1
      fi
    done
    tmp="$state/pg.env.tmp"
    {
      echo "PGHOST=127.0.0.1"
      echo "PGPORT=$port"
      echo "PGUSER=postgres"
      echo "TROUPE_PG_URL=postgresql://postgres@127.0.0.1:$port/postgres"
    } > "$tmp"
    mv "$tmp" "$state/pg.env"
    echo "postgres fixture: started on 127.0.0.1:$port (data in $datadir)"
    ;;
  stop)
    [ -z "$pgbin" ] || stop_cluster
    rm -f "$state/pg.env"
    echo "postgres fixture: stopped"
    ;;
  *) usage ;;
esac
