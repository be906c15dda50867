#!/bin/sh
# Flotilla's Kubernetes node supervisor: the node container's main process.
#
# Starts containerd at once and imports the node image's images (pause, CoreDNS), waits
# for /var/lib/flotilla/bootstrap.env (written by the conductor after the node got its
# address and certificates), then runs every service in /etc/flotilla/services (one
# shell snippet each: etcd, kube-apiserver, ... on masters; kubelet, kube-proxy,
# flanneld everywhere), restarting each one a second after it exits (at once when a CA
# rotation stopped it, and not while the rotation holds it: rotate.sh). Logs go to
# /var/log/flotilla/<service>.log; /run/flotilla/state says how far boot got.
set -u
K=/opt/flotilla/kube
export PATH="$K/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOGS=/var/log/flotilla
mkdir -p /run/flotilla
state() { echo "$1" > /run/flotilla/state; }

if [ ! -x "$K/bin/kube" ]; then
    echo "flotilla-node: this node image has no Kubernetes binaries under $K;" \
         "build them (scripts/build-kube.sh) and rebuild the node image (flotilla image-build)" >&2
    state missing-binaries
    exec sleep infinity
fi
[ -e /var/run ] || ln -s ../run /var/run
mkdir -p "$LOGS" /var/lib/flotilla /var/lib/kubelet /var/lib/containerd /etc/cni/net.d \
    /etc/kubernetes/kubelet.conf.d /run/flannel
mount --make-rshared /

# The kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops, which are
# not namespaced: writing them from a node would change the host. Show it the values it
# wants in files bound over those entries (in this node's mount namespace only).
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
    entry=/proc/sys/${kv%%=*}
    shadow=/run/flotilla/sysctl-$(echo "${kv%%=*}" | tr / .)
    echo "${kv#*=}" > "$shadow"
    mount --bind "$shadow" "$entry" 2>/dev/null || true
done
for kv in net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 \
          net.ipv4.conf.all.route_localnet=1; do
    sysctl -qw "$kv" 2>/dev/null || true
done

# held NAME: a CA rotation (rotate.sh handoff-begin) holds service NAME while the process
# whose pid is in /run/flotilla/hold.NAME (the API server's handoff instance) runs.
held() {
    h=$(cat "/run/flotilla/hold.$1" 2>/dev/null) && [ -n "$h" ] && [ -d "/proc/$h" ] &&
        ! grep -q '^State:.*Z' "/proc/$h/status" 2>/dev/null
}

run() {  # run NAME ARGV...: keep ARGV running, log to $LOGS/NAME.log
    name=$1; shift
    (
        while :; do
            "$@" >>"$LOGS/$name.log" 2>&1
            echo "flotilla-node: $name exited with status $?; restarting" >>"$LOGS/$name.log"
            # At once when a CA rotation stopped it to restart it (rotate.sh), else in a second.
            if [ -e "/run/flotilla/restart-now.$name" ]; then rm -f "/run/flotilla/restart-now.$name"; else sleep 1; fi
            while held "$name"; do sleep 0.1; done
        done
    ) &
}

state containerd
run containerd containerd --config /etc/containerd/config.toml
(
    until ctr version >/dev/null 2>&1; do sleep 0.05; done
    # pause first: every pod sandbox needs it; CoreDNS (3 s to import on a busy host) after.
    for image in "$K"/images/pause.tar "$K"/images/*.tar; do
        [ -f "$image" ] && ctr -n k8s.io images import --all-platforms "$image" >>"$LOGS/images.log" 2>&1
    done
    echo ok > /run/flotilla/images
) &

# What the flavor does not give this node is reserved, so allocatable matches the flavor
# (nodes see the host's CPUs and memory).
reserve() {
    total=$(awk '/^MemTotal:/ {printf "%.0f", $2 * 1024}' /proc/meminfo)
    limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)
    mem=0
    case "$limit" in ''|max|*[!0-9]*) ;; *) [ "$limit" -lt "$total" ] && mem=$(( (total - limit) / 1048576 )) ;; esac
    quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || echo -1)
    period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || echo 100000)
    cpu=0
    if [ "$quota" -gt 0 ] 2>/dev/null; then
        cpu=$(( $(nproc) * 1000 - quota * 1000 / period ))
        [ "$cpu" -lt 0 ] && cpu=0
    fi
    {
        echo "apiVersion: kubelet.config.k8s.io/v1beta1"
        echo "kind: KubeletConfiguration"
        echo "systemReserved:"
        echo "  memory: ${mem}Mi"
        echo "  cpu: ${cpu}m"
    } > /etc/kubernetes/kubelet.conf.d/50-flavor.conf
}
reserve

state waiting-for-bootstrap
until [ -f /var/lib/flotilla/bootstrap.env ]; do sleep 0.05; done
. /var/lib/flotilla/bootstrap.env
until [ -S /run/containerd/containerd.sock ]; do sleep 0.05; done

state starting-services
for service in /etc/flotilla/services/*; do
    [ -f "$service" ] && run "$(basename "$service")" sh "$service"
done

# Pod networking: flanneld writes this node's lease; the bridge plugin uses it.
(
    # flanneld starts after the API server is ready (its gate file): until then look
    # seldom (each look forks a sleep: at 20 Hz over a create that is ~1 CPU-s a node).
    until [ -f /run/flotilla/api-ready ]; do sleep 0.5; done
    until [ -f /run/flannel/subnet.env ]; do sleep 0.05; done
    . /run/flannel/subnet.env
    # flannel names the gateway (10.100.1.1/24); host-local wants the network (10.100.1.0/24).
    subnet=$(echo "$FLANNEL_SUBNET" | awk -F'[./]' '{
        ip = (($1 * 256 + $2) * 256 + $3) * 256 + $4; size = 2 ^ (32 - $5); ip -= ip % size
        printf "%d.%d.%d.%d/%d", int(ip / 16777216) % 256, int(ip / 65536) % 256, int(ip / 256) % 256, ip % 256, $5 }')
    cat > /etc/cni/net.d/.10-flannel.conflist <<CNI
{
  "cniVersion": "1.0.0",
  "name": "cbr0",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "mtu": ${FLANNEL_MTU:-1450},
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${subnet}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
    mv /etc/cni/net.d/.10-flannel.conflist /etc/cni/net.d/10-flannel.conflist
    state running
) &
wait
