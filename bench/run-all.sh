#!/bin/sh
# bench/run-all.sh [BUILD_DIR] [--quick]
#
# Builds the Release benchmarks and runs every one of them in turn, on SQLite and
# on a private PostgreSQL cluster started for the run with the server's default
# durability settings (fsync and synchronous_commit on), then stops the cluster.
# Prints each program's figures with the load average before it, so a reader
# can tell a quiet run from a busy one. Run it on a quiet machine: the
# figures in docs/benchmarks.md were taken this way.
set -eu
cd "$(dirname "$0")/.."
build=build/release
quick=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick=--quick ;;
    *) build=$arg ;;
  esac
done

cmake --preset release >/dev/null 2>&1 || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target troupe fake-llm scheduler_bench daemon_bench store_bench llm_daemon_bench \
  fanout_bench >/dev/null

pgdir=""
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -n 1)
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_pg() {
  [ -n "$pgdir" ] || return 0
  as_owner "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap stop_pg EXIT INT TERM
pg_url=""
if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ]; then
  pgdir=$(mktemp -d "${TMPDIR:-/tmp}/troupe-bench-pg.XXXXXX")
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$pgdir"
  as_owner "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  # A random port may be taken: up to three tries, then the server's log says why.
  for try in 1 2 3; do
    port=$(shuf -i 20000-60999 -n 1)
    if as_owner "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w start \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $pgdir -c max_connections=200" >/dev/null; then
      pg_url="postgresql://postgres@127.0.0.1:$port/postgres"
      break
    fi
  done
  if [ -z "$pg_url" ]; then
    tail -n 20 "$pgdir/server.log" >&2
    exit 1
  fi
else
  echo "(no PostgreSQL server found: PostgreSQL cases skipped)"
fi

run() {
  echo
  echo "=== $* ($(date -u +%H:%M) UTC, load$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /'))"
  "$@"
}
b=$build/bench
run "$b/scheduler_bench" $quick
run "$b/daemon_bench" $quick ${pg_url:+--pg "$pg_url"}
run "$b/store_bench" $pg_url
run "$b/llm_daemon_bench" --seconds 6
run "$b/fanout_bench" $quick
