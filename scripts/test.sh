#!/usr/bin/env bash
# Run every test (what `make test` and CI call). Works on a fresh Debian bookworm machine
# as root: installs what the tests need, starts PostgreSQL for the API tests on PostgreSQL,
# prepares the compat/keystone tooling when those scripts exist, then runs pytest.
#
#   usage: scripts/test.sh [PYTEST ARGS...]      e.g. scripts/test.sh -k templates -x
#   env:   FLOTILLA_TEST_PG_URL  use this PostgreSQL instead of starting the local one
#                                (the role needs CREATEDB; tests create and drop databases)
#
# PostgreSQL is left running (that is harmless); nothing else about it is changed
# besides the `flotilla` role and the `flotilla_test` database.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# Everything but the Kubernetes build first; that build (Go, ~40 min cold on 2 cores, a no-op
# once cached) runs in the background, next to the tests that do not need it. Tests
# marked `kube` run last and wait for it (tests/conftest.py); a failed build fails them.
FLOTILLA_KUBE_BUILD=0 scripts/setup.sh
kube_pid=
kube_state=$(mktemp -d /tmp/flotilla-kube-build.XXXXXX)
stop_kube_build() {
  if [ -n "$kube_pid" ] && kill -0 "$kube_pid" 2>/dev/null; then
    log "stopping the unfinished background Kubernetes build (pid $kube_pid; it resumes from its Go cache)"
    kill -- -"$kube_pid" 2>/dev/null || true
    wait "$kube_pid" 2>/dev/null || true
  fi
}
trap stop_kube_build EXIT
if [ "${FLOTILLA_KUBE_BUILD:-1}" != 0 ]; then
  export FLOTILLA_KUBE_BUILD_LOG="$kube_state/build.log" FLOTILLA_KUBE_BUILD_RC="$kube_state/rc"
  log "scripts/build-kube.sh in the background (log: $FLOTILLA_KUBE_BUILD_LOG)"
  # Its own session (so it can be stopped as a group) is its own scheduler autogroup, where nice
  # would do nothing against the tests' sessions; the group is weighted up instead (-5): the
  # kube tests wait for this build, so it is the run's critical path.
  setsid bash -c 'echo -5 >/proc/self/autogroup 2>/dev/null || true; scripts/build-kube.sh >"$FLOTILLA_KUBE_BUILD_LOG" 2>&1; echo $? >"$FLOTILLA_KUBE_BUILD_RC.tmp"; mv "$FLOTILLA_KUBE_BUILD_RC.tmp" "$FLOTILLA_KUBE_BUILD_RC"' &
  kube_pid=$!
fi

PG_ROLE=flotilla
PG_PASSWORD=flotilla
PG_DB=flotilla_test

# psql as the postgres superuser, on the local cluster's port.
pg_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"; }

start_local_postgres() {
  [ "$(id -u)" -eq 0 ] || die "need root to start PostgreSQL (or export FLOTILLA_TEST_PG_URL)"
  command -v pg_lsclusters >/dev/null || die "pg_lsclusters not found: is the postgresql package installed?"
  # First cluster listed: "VER NAME PORT STATUS ...". The Debian package creates one; make it if not.
  local line
  line=$(pg_lsclusters -h | head -n1 || true)
  if [ -z "$line" ]; then
    local ver
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)
    [ -n "$ver" ] || die "no PostgreSQL server version under /usr/lib/postgresql"
    log "creating PostgreSQL cluster $ver/main"
    pg_createcluster "$ver" main >/dev/null
    line=$(pg_lsclusters -h | head -n1)
  fi
  local ver name status
  read -r ver name PG_PORT status _ <<<"$line"
  case "$status" in
    online*) ;;
    *)
      log "starting PostgreSQL $ver/$name on port $PG_PORT"
      pg_ctlcluster "$ver" "$name" start
      ;;
  esac
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL $ver/$name did not become ready on port $PG_PORT"

  if [ "$(pg_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" != "1" ]; then
    log "creating PostgreSQL role $PG_ROLE"
    pg_admin -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  else
    pg_admin -c "ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  fi
  if [ "$(pg_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    pg_admin -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
  fi
  # Databases left by an interrupted earlier run (tests/conftest.py names them
  # flotilla_t_<pid>_<random>); only those whose pytest process is gone.
  local db pid
  while read -r db; do
    [ -n "$db" ] || continue
    pid=$(cut -d_ -f3 <<<"$db")
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      pg_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
    fi
  done < <(pg_admin -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'flotilla\_t\_%'")
  export FLOTILLA_TEST_PG_URL="postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
}

if [ -z "${FLOTILLA_TEST_PG_URL:-}" ]; then
  start_local_postgres
fi
log "PostgreSQL for tests: ${FLOTILLA_TEST_PG_URL%%://*}://…@${FLOTILLA_TEST_PG_URL##*@}"

for helper in scripts/setup-compat.sh scripts/setup-keystone.sh scripts/setup-browser.sh scripts/setup-rabbitmq.sh; do
  if [ -f "$helper" ]; then
    log "$helper"
    bash "$helper"
  fi
done

log ".venv/bin/python -m pytest -q tests $*"
set +e
.venv/bin/python -m pytest -q tests "$@"
rc=$?
set -e
if [ -f "${FLOTILLA_KUBE_BUILD_RC:-/nonexistent}" ]; then
  log "background Kubernetes build: exit $(cat "$FLOTILLA_KUBE_BUILD_RC"); $(grep -E '^(==>|build-kube)' "$FLOTILLA_KUBE_BUILD_LOG" | tail -n1)"
fi
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
