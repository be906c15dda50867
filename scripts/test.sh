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

# Everything but the Kubernetes build first; that build (Go, ~33 CPU-min cold, a no-op once
# cached) runs in the background, next to the tests that do not need it. Tests marked `kube`
# run in their own pytest lane (below) and wait for it (tests/conftest.py); a failed build
# fails them.
FLOTILLA_KUBE_BUILD=0 scripts/setup.sh
kube_pid=
bg_lanes=() # pids of the pytest lanes running in the background
kube_state=$(mktemp -d /tmp/flotilla-kube-build.XXXXXX)
stop_kube_build() {
  local pid
  for pid in "${bg_lanes[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid" 2>/dev/null || true # pytest's own clean-up (clusters, its dockerd) runs on SIGINT
      wait "$pid" 2>/dev/null || true
    fi
  done
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

# The venv builders (pip) run next to the apt-based ones (apt takes one lock at a time anyway);
# each one's output is printed when it ends, and any failure stops the run.
setup_pids=()
setup_names=()
for helper in scripts/setup-compat.sh scripts/setup-keystone.sh; do
  [ -f "$helper" ] || continue
  # its log ends with how long it took (setup is on the cold run's critical path)
  (
    start=$SECONDS
    rc=0
    bash "$helper" || rc=$?
    echo "==> $helper took $((SECONDS - start)) s"
    exit "$rc"
  ) >"$kube_state/$(basename "$helper").log" 2>&1 &
  setup_pids+=($!)
  setup_names+=("$helper")
done
for helper in scripts/setup-browser.sh scripts/setup-rabbitmq.sh; do
  if [ -f "$helper" ]; then
    log "$helper"
    start=$SECONDS
    bash "$helper"
    log "$helper took $((SECONDS - start)) s"
  fi
done
for i in "${!setup_pids[@]}"; do
  helper=${setup_names[$i]}
  rc=0
  wait "${setup_pids[$i]}" || rc=$?
  log "$helper (next to the others), exit $rc:"
  cat "$kube_state/$(basename "$helper").log"
  [ "$rc" = 0 ] || die "$helper failed"
done

# Several pytest processes at once when the Kubernetes build is part of this run and the caller
# did not pick markers: the `kube` tests (each waits for the build, then runs real clusters) in
# one, the compat tests (real clients: mostly waiting on their Python start-up) in another, the
# other e2e tests (real swarm clusters and faults: mostly waiting on them) in a third, and
# everything else in the foreground. Each process runs its own dockerd under its own data dir, so
# they share nothing but the machine; the background lanes' output is printed when all have
# ended. With `-m ...` in the arguments (or FLOTILLA_TEST_LANES=1) it is one process, kube tests
# last; FLOTILLA_TEST_LANES=2 or 3 keeps e2e (and with 2, compat) in the foreground lane.
has_marker=0
for a in "$@"; do
  case "$a" in
    -m | -m* | --markexpr*) has_marker=1 ;;
  esac
done
lanes=${FLOTILLA_TEST_LANES:-4}
if [ "${FLOTILLA_KUBE_BUILD:-1}" = 0 ] || [ "$has_marker" = 1 ]; then lanes=1; fi

# run_lane NAME PYTEST-ARGS...: a background lane; its log is $kube_state/pytest-NAME.log.
bg_names=()
run_lane() {
  local name=$1
  shift
  local extra=()
  for a in "$@"; do
    case "$a" in --basetemp*) extra=(--basetemp "$kube_state/basetemp-$name") ;; esac # lanes must not share one
  done
  # set -m: its own process group, where SIGINT is not ignored (a non-interactive shell's `&`
  # would ignore it), so an interrupted run can stop it with SIGINT and pytest still cleans up.
  set -m
  .venv/bin/python -m pytest -q --durations=10 "$@" "${extra[@]}" >"$kube_state/pytest-$name.log" 2>&1 &
  bg_lanes+=($!)
  set +m
  bg_names+=("$name")
}

set +e
if [ "$lanes" = 1 ]; then
  log ".venv/bin/python -m pytest -q tests $*"
  .venv/bin/python -m pytest -q tests "$@"
  rc=$?
else
  main_sel=(tests -m "not kube")
  run_lane kube tests -m kube "$@"
  if [ "$lanes" -ge 3 ]; then
    run_lane compat tests/compat -m "not kube" "$@"
    main_sel+=(--ignore=tests/compat)
  fi
  if [ "$lanes" -ge 4 ]; then
    run_lane e2e tests/e2e -m "not kube" "$@"
    main_sel+=(--ignore=tests/e2e)
  fi
  log "$lanes lanes: ${bg_names[*]} in the background (logs: $kube_state/pytest-*.log), the rest here, args: $*"
  # --durations: each lane's slowest tests, to see which lane a run waited for and why.
  .venv/bin/python -m pytest -q --durations=10 "${main_sel[@]}" "$@"
  rc_all=($?)
  for i in "${!bg_lanes[@]}"; do
    wait "${bg_lanes[$i]}"
    lane_rc=$?
    rc_all+=("$lane_rc")
    log "the ${bg_names[$i]} lane, exit $lane_rc:"
    cat "$kube_state/pytest-${bg_names[$i]}.log"
  done
  # 5 = a lane collected nothing (e.g. -k selected only another lane's tests): a failure only
  # when every lane did.
  rc=5
  for r in "${rc_all[@]}"; do
    if [ "$r" != 0 ] && [ "$r" != 5 ]; then
      rc=$r
      break
    fi
    [ "$r" = 0 ] && rc=0
  done
fi
set -e
if [ -f "${FLOTILLA_KUBE_BUILD_RC:-/nonexistent}" ]; then
  log "background Kubernetes build: exit $(cat "$FLOTILLA_KUBE_BUILD_RC"); $(grep -E '^(==>|build-kube)' "$FLOTILLA_KUBE_BUILD_LOG" | tail -n1)"
fi
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; treating that as a failure" >&2
  exit 1
fi
exit "$rc"
