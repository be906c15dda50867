#!/bin/sh
# Restarts Kubernetes components on a node during a CA rotation (run by the conductor).
#
#   rotate.sh restart NAME...  stop each service's process; the node supervisor (node.sh)
#                              starts it again a second later from its service file; wait
#                              until every one of them is back and healthy
#   rotate.sh handoff          the same for kube-apiserver without a gap: a second instance
#                              (same flags, its own serving certificate) shares :6443
#                              (--permit-port-sharing, SO_REUSEPORT) while the supervisor's
#                              instance restarts, so the API keeps answering
#
# Exits non-zero with the reason and the service's log tail when a service does not come
# back within $TIMEOUT seconds.
set -u
# The node supervisor's PATH (an exec into the node does not inherit it).
export PATH="/opt/flotilla/kube/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PKI=/etc/kubernetes/pki
SERVICES=/etc/flotilla/services
LOGS=/var/log/flotilla
RUN=/run/flotilla
TIMEOUT=${TIMEOUT:-90}
GRACE=${GRACE:-5}
NS=$(readlink /proc/self/ns/pid)
HANDOFF_PID=$RUN/apiserver-handoff.pid

# pids NAME: this node's processes (not its pods') running service NAME: argv[0] is NAME,
# or the service's shell snippet still waiting before it execs NAME (flanneld). The
# handoff instance is not the service's.
pids() {
    skip=$(cat "$HANDOFF_PID" 2>/dev/null || true)
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [ "$p" = "$skip" ] && continue
        [ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$NS" ] || continue
        args=$(tr '\0' '\n' < "$d/cmdline" 2>/dev/null | head -n 2 | tr '\n' ' ')
        set -- $args
        [ $# -ge 1 ] || continue
        if [ "${1##*/}" = "$NAME" ] || { [ "${1##*/}" = sh ] && [ "${2:-}" = "$SERVICES/$NAME" ]; }; then
            echo "$p"
        fi
    done
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

gone() {  # gone PID...: wait until none of them runs
    for p in "$@"; do
        n=0
        while running "$p"; do
            n=$((n + 1)); [ $n -gt $((TIMEOUT * 20)) ] && return 1
            sleep 0.05
        done
    done
}

# stop PID...: SIGTERM, and SIGKILL what still runs after $GRACE s. The API server closes
# its listener and finishes its short requests at once but then waits up to 60 s for
# watches to end; those clients reconnect to the other instance anyway.
stop() {
    kill "$@" 2>/dev/null
    n=0
    for p in "$@"; do
        while running "$p" && [ $n -lt $((GRACE * 20)) ]; do n=$((n + 1)); sleep 0.05; done
        running "$p" && kill -9 "$p" 2>/dev/null
    done
    gone "$@"
}

# back NAME OLDPIDS: a new process runs the service and it is healthy
back() {
    name=$1; old=" $2 "; n=0
    while :; do
        NAME=$name
        new=$(pids | tr '\n' ' ')
        fresh=""
        for p in $new; do case $old in *" $p "*) ;; *) fresh=$p ;; esac; done
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
    done
    # shellcheck disable=SC2086
    if [ -n "$(echo $all)" ]; then stop $all || fail "$1" "did not stop"; fi
    for name in "$@"; do
        old=$(echo "$olds" | tr ';' '\n' | sed -n "s/^$name=//p")
        back "$name" "$old"
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

handoff() {
    NAME=kube-apiserver
    stale=$(cat "$HANDOFF_PID" 2>/dev/null || true)
    if [ -n "$stale" ]; then  # left by an interrupted handoff
        stop "$stale"; rm -f "$HANDOFF_PID"
    fi
    old=$(pids | tr '\n' ' ')
    set -- $old
    if [ $# -ne 1 ] || ! tr '\0' '\n' < "/proc/$1/cmdline" | grep -qx -- '--permit-port-sharing=true'; then
        echo "kube-apiserver runs without --permit-port-sharing: plain restart (the API pauses)"
        restart kube-apiserver
        return
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
    stop "$1" || fail kube-apiserver "did not stop"
    n=0
    until [ -n "$(pids)" ] && serving kube-apiserver; do
        n=$((n + 1)); [ $n -gt $((TIMEOUT * 10)) ] && fail kube-apiserver "not back within ${TIMEOUT} s"
        sleep 0.1
    done
    stop $tmp
    rm -f "$HANDOFF_PID"
}

cmd=${1:-}
shift || true
case $cmd in
    restart) restart "$@" ;;
    handoff) handoff ;;
    *) echo "usage: rotate.sh restart NAME... | handoff" >&2; exit 2 ;;
esac
