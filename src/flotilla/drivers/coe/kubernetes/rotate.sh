#!/bin/sh
# Restarts Kubernetes components on a node during a CA rotation (run by the conductor).
#
#   rotate.sh install PATH...  move each staged PATH's new content (.NAME.rotating, written
#                              by the conductor next to it) into place with a rename, so a
#                              process that reloads a file when it changes (the API
#                              server's and kubelet's client CA) never reads half of one
#   rotate.sh restart NAME...  stop each service's process; the node supervisor (node.sh)
#                              starts it again from its service file; wait until every one
#                              of them is back and healthy
#   rotate.sh accepts STEM     wait until the API server accepts the client certificate
#                              $PKI/STEM.crt (it reloads --client-ca-file by itself)
#   rotate.sh serves-new PORT[:STEM]...
#                              wait until this node shows a certificate of the new CA
#                              on each PORT (etcd and the kubelet reload theirs)
#   rotate.sh handoff          restart kube-apiserver without a gap: a second instance
#                              (same flags, its own serving certificate) shares :6443
#                              (--permit-port-sharing, SO_REUSEPORT) while the supervisor's
#                              instance restarts, so the API keeps answering
#   rotate.sh handoff-begin    the first half of that: the second instance serves, the
#                              supervisor's is stopped and held (node.sh) ...
#   rotate.sh handoff-end      ... until this: the supervisor starts its instance again
#                              from the files as they are now, then the second one stops.
#                              Two phases' restarts for one start each. Where the node's
#                              supervisor cannot hold a service, or no second instance
#                              runs, either is a whole handoff.
#
# Several commands run in one call when separated by "--" (one exec into the node).
#
# Stopping a process: SIGTERM, then SIGKILL once it has closed its listening sockets and had
# a moment to finish its requests (the API server then only waits, up to 60 s, for watch
# streams whose clients reconnect anyway; etcd gets that moment at once), or after $GRACE s.
#
# Prints "WHAT at SECONDS" lines (the conductor logs them); exits non-zero with the reason
# and the service's log tail when a service does not come back within $TIMEOUT seconds.
set -u
# The node supervisor's PATH (an exec into the node does not inherit it).
export PATH="/opt/flotilla/kube/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PKI=/etc/kubernetes/pki
SERVICES=/etc/flotilla/services
SUPERVISOR=/etc/flotilla/node.sh
LOGS=/var/log/flotilla
RUN=/run/flotilla
TIMEOUT=${TIMEOUT:-90}
GRACE=${GRACE:-5}
DRAIN_TICKS=${DRAIN_TICKS:-10}  # 0.05 s ticks between closed listeners and SIGKILL
HANDOFF_PID=$RUN/apiserver-handoff.pid
HOLD=$RUN/hold.kube-apiserver
T0=$(cut -d' ' -f1 /proc/uptime)

# took WHAT: one stdout line "WHAT at SECONDS" (since this script started)
took() { echo "$1 at $(awk -v t0="$T0" '{printf "%.2f s", $1 - t0}' /proc/uptime)"; }

# The supervisor restarts a service at once when asked (restart-now.NAME) and holds one
# while a handoff instance serves (hold.NAME); older supervisors wait a second and cannot hold.
supervisor_holds() { grep -q 'hold\.' "$SUPERVISOR" 2>/dev/null; }

# pids NAME: this node's processes (not its pods') running service NAME: argv[0] is NAME,
# or the service's shell snippet still waiting before it execs NAME (flanneld). The
# handoff instance is not the service's.
pids() {
    skip=$(cat "$HANDOFF_PID" 2>/dev/null || true)
    { pgrep --ns $$ --nslist pid -f "^([^ ]*/)?$NAME( |\$)"
      pgrep --ns $$ --nslist pid -f "^sh $SERVICES/$NAME\$"; } 2>/dev/null | grep -vx "${skip:-none}" || true
}

healthy() {  # healthy NAME
    case $1 in
        etcd) curl -fsS --max-time 2 --cacert $PKI/ca.crt --cert $PKI/apiserver-etcd-client.crt \
                  --key $PKI/apiserver-etcd-client.key https://127.0.0.1:2379/health 2>/dev/null \
                  | grep -q '"health":"true"' ;;
        kube-apiserver) [ "$(curl -sk --max-time 2 https://127.0.0.1:6443/readyz 2>/dev/null)" = ok ] ;;
        kube-controller-manager) curl -fsk --max-time 2 -o /dev/null https://127.0.0.1:10257/healthz ;;
        kube-scheduler) curl -fsk --max-time 2 -o /dev/null https://127.0.0.1:10259/healthz ;;
        kubelet) curl -fs --max-time 2 -o /dev/null http://127.0.0.1:10248/healthz ;;
        kube-proxy) curl -s --max-time 2 -o /dev/null http://127.0.0.1:10256/healthz ;;
        *) true ;;
    esac
}

fail() {  # fail NAME MESSAGE
    echo "$1: $2; its log ends: $(tail -n 5 "$LOGS/$1.log" 2>/dev/null | cut -c1-300)" >&2
    exit 1
}

running() {  # running PID: alive and not a zombie
    [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# listening PID: the process holds a listening TCP socket
listening() {
    own=" $(ls -l "/proc/$1/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' ' ') "
    [ "$own" != "  " ] || return 1
    awk -v own="$own" '$4 == "0A" && index(own, " " $10 " ") { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

gone() {  # gone PID...: wait until none of them runs
    for p in "$@"; do
        n=0
        while running "$p"; do
            n=$((n + 1)); [ $n -gt $((TIMEOUT * 20)) ] && return 1
            sleep 0.05
        done
    done
}

# stop PID...: SIGTERM; SIGKILL what still runs $DRAIN_TICKS ticks after it closed the
# listening sockets it had, or after $GRACE s. etcd gets $DRAIN_TICKS ticks in any case: it
# keeps its listening sockets while it waits (7 s) for watch streams and serves nothing new.
stop() {
    listeners=" "; brief=" "
    for p in "$@"; do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = etcd ]; then brief="$brief$p "
        elif listening "$p"; then listeners="$listeners$p "; fi
    done
    kill "$@" 2>/dev/null
    n=0
    for p in "$@"; do
        quiet=0
        while running "$p" && [ $n -lt $((GRACE * 20)) ] && [ $quiet -le "$DRAIN_TICKS" ]; do
            case $listeners in *" $p "*) listening "$p" || quiet=$((quiet + 1)) ;; esac
            case $brief in *" $p "*) quiet=$((quiet + 1)) ;; esac
            n=$((n + 1)); sleep 0.05
        done
        running "$p" && kill -9 "$p" 2>/dev/null
    done
    gone "$@"
}

# back NAME OLDPIDS: a new process runs the service and it is healthy
back() {
    name=$1; old=" $2 "; n=0
    while :; do
        NAME=$name
        fresh=""
        for p in $(pids); do case $old in *" $p "*) ;; *) fresh=$p ;; esac; done
        [ -n "$fresh" ] && healthy "$name" && return 0
        n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail "$name" "not back within ${TIMEOUT} s"
        sleep 0.1
    done
}

restart() {
    olds=""; all=""
    for name in "$@"; do
        NAME=$name
        old=$(pids | tr '\n' ' ')
        olds="$olds$name=$old;"
        all="${all:-} $old"
        if [ -n "$old" ] && supervisor_holds; then : > "$RUN/restart-now.$name"; fi
    done
    # shellcheck disable=SC2086
    if [ -n "$(echo $all)" ]; then stop $all || fail "$1" "did not stop"; fi
    took "stopped $*"
    for name in "$@"; do
        old=$(echo "$olds" | tr ';' '\n' | sed -n "s/^$name=//p")
        back "$name" "$old"
        took "$name healthy"
    done
}

install() {
    for path in "$@"; do
        staged="$(dirname "$path")/.$(basename "$path").rotating"
        [ -f "$staged" ] && mv -f "$staged" "$path"
    done
    return 0
}

# accepts STEM: the API server authenticates the client certificate STEM (401 until then)
accepts() {
    n=0
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert $PKI/ca.crt --cert "$PKI/$1.crt" \
                --key "$PKI/$1.key" https://127.0.0.1:6443/version 2>/dev/null)" = 200 ]; do
        n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail kube-apiserver "still refuses $1.crt after ${TIMEOUT} s"
        sleep 0.1
    done
    took "kube-apiserver accepts $1.crt"
}

# serves_new PORT[:STEM]...: this node's address shows on each PORT a certificate of the
# new CA ($PKI/rotation-ca.crt; as client STEM where given): etcd and the kubelet reload
# their serving certificates by themselves
serves_new() {
    . /var/lib/flotilla/bootstrap.env
    for spec in "$@"; do
        port=${spec%%:*}; auth=""
        [ "$port" = "$spec" ] || auth="--cert $PKI/${spec#*:}.crt --key $PKI/${spec#*:}.key"
        n=0
        # shellcheck disable=SC2086
        until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert $PKI/rotation-ca.crt $auth \
                    "https://$NODE_IP:$port/" 2>/dev/null)" != 000 ]; do
            n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail "port $port" "no certificate of the new CA within ${TIMEOUT} s"
            sleep 0.1
        done
        took "port $port shows a certificate of the new CA"
    done
}

# serving CN: /readyz answered "ok" by an instance whose serving certificate has CN
serving() {
    curl -sv --max-time 2 --cacert $PKI/ca.crt -o $RUN/readyz.body https://127.0.0.1:6443/readyz \
        2>$RUN/readyz.err || return 1
    grep -Eq "subject: *CN *= *$1\$" $RUN/readyz.err && [ "$(cat $RUN/readyz.body)" = ok ]
}

wait_serving() {  # wait_serving CN PID
    n=0
    until serving "$1"; do
        [ -d "/proc/$2" ] || fail kube-apiserver "the instance serving as $1 exited"
        n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail kube-apiserver "no instance ready as $1 within ${TIMEOUT} s"
        sleep 0.1
    done
}

# The supervisor's instance is back (started from the files as they are) and serves.
supervised_back() {
    NAME=kube-apiserver; n=0
    until [ -n "$(pids)" ] && serving kube-apiserver; do
        n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail kube-apiserver "not back within ${TIMEOUT} s"
        sleep 0.1
    done
    took "supervised instance ready"
}

# A handoff instance runs: the supervisor's instance comes back (released if held), then it stops.
settle() {
    h=$(cat "$HANDOFF_PID" 2>/dev/null || true)
    if [ -n "$h" ] && running "$h"; then
        rm -f "$HOLD"
        supervised_back
        stop "$h"
        took "handoff instance stopped"
    fi
    rm -f "$HANDOFF_PID" "$HOLD"
}

# start_handoff: the second instance runs and serves; its pid in $HANDOFF_PID. Fails when
# the supervisor's instance does not share its port (a plain restart is the caller's).
start_handoff() {
    NAME=kube-apiserver
    old=$(pids | tr '\n' ' ')
    set -- $old
    if [ $# -ne 1 ] || ! tr '\0' '\n' < "/proc/$1/cmdline" | grep -qx -- '--permit-port-sharing=true'; then
        echo "kube-apiserver runs without --permit-port-sharing: plain restart (the API pauses)"
        return 1
    fi
    # A connection queued on the instance that stops moves to the other one instead of
    # being reset (this node's network namespace only).
    sysctl -qw net.ipv4.tcp_migrate_req=1 2>/dev/null || true
    sed -e "s#$PKI/apiserver.crt#$PKI/apiserver-handoff.crt#" -e "s#$PKI/apiserver.key#$PKI/apiserver-handoff.key#" \
        "$SERVICES/kube-apiserver" > $RUN/apiserver-handoff.sh
    setsid sh $RUN/apiserver-handoff.sh >>"$LOGS/kube-apiserver-handoff.log" 2>&1 </dev/null &
    tmp=$!
    echo $tmp > "$HANDOFF_PID"
    wait_serving kube-apiserver-handoff $tmp
    took "handoff instance ready"
    supervised=$1
}

handoff() {
    settle
    start_handoff || { restart kube-apiserver; return; }
    supervisor_holds && : > "$RUN/restart-now.kube-apiserver"
    stop "$supervised" || fail kube-apiserver "did not stop"
    took "supervised instance stopped"
    supervised_back
    stop "$tmp"
    rm -f "$HANDOFF_PID"
    took "handoff instance stopped"
}

handoff_begin() {
    supervisor_holds || { handoff; return; }
    settle
    start_handoff || { restart kube-apiserver; return; }
    echo "$tmp" > "$HOLD"
    stop "$supervised" || fail kube-apiserver "did not stop"
    took "supervised instance stopped and held"
}

handoff_end() {
    h=$(cat "$HANDOFF_PID" 2>/dev/null || true)
    if [ -n "$h" ] && running "$h" && [ -f "$HOLD" ]; then
        settle
    else
        handoff
    fi
}

# one COMMAND ARGS...: run one command
one() {
    cmd=${1:-}
    shift || true
    case $cmd in
        install) install "$@" ;;
        restart) restart "$@" ;;
        accepts) accepts "$1" ;;
        serves-new) serves_new "$@" ;;
        handoff) handoff ;;
        handoff-begin) handoff_begin ;;
        handoff-end) handoff_end ;;
        *) echo "usage: rotate.sh COMMAND [-- COMMAND]...; COMMAND: install PATH... | restart NAME... |" \
                "accepts STEM | serves-new PORT[:STEM]... | handoff | handoff-begin | handoff-end" >&2
           exit 2 ;;
    esac
}

# COMMAND [-- COMMAND]...: one after another (one exec into the node for several)
args=""
for a in "$@"; do
    if [ "$a" = -- ]; then
        eval "one $args"; args=""
    else
        args="$args '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
    fi
done
eval "one $args"
