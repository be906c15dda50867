#!/usr/bin/env bash
# Runs INSIDE a node container: brings up containerd, etcd, the control plane, kubelet,
# flannel and kube-proxy from /opt/kube (the build-kube.sh key dir, bind-mounted read-only).
set -euo pipefail
K=/opt/kube
export PATH=$K/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
P=/etc/kubernetes/pki
L=/var/log/kube
name=$(hostname)
ip=$(ip -4 -o addr show dev eth0 | awk '{split($4,a,"/"); print a[1]; exit}')
role=${ROLE:-master}          # master: everything; worker: containerd, kubelet, flannel, kube-proxy
master=${MASTER_IP:-$ip}
t0=$(date +%s.%N)
step() { printf '[%6.2fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
waitfor() { # waitfor SECONDS DESCRIPTION CMD...
  local n=$1 what=$2; shift 2
  for _ in $(seq $((n * 5))); do "$@" >/dev/null 2>&1 && { step "$what: ok"; return 0; }; sleep 0.2; done
  step "$what: TIMEOUT"; return 1
}
mkdir -p $L /etc/containerd /etc/cni/net.d /var/lib/etcd /var/lib/kubelet /etc/kube-flannel /etc/kubernetes/manifests
mount --make-rshared /
step "node $name ip $ip"

# ---- kernel knobs the kubelet would otherwise write host-wide: shadow them in this node only
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
  f=/proc/sys/${kv%=*}; v=${kv#*=}; shadow=/run/sysctl-$(echo "${kv%=*}" | tr / _)
  echo "$v" >"$shadow"; mount --bind "$shadow" "$f"
done
sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null 2>&1 || true
step "sysctls shadowed: overcommit=$(cat /proc/sys/vm/overcommit_memory) panic=$(cat /proc/sys/kernel/panic) (host untouched)"

bash /opt/prove/pki.sh $P "$name" "$ip" "$master" >/dev/null
step "pki written"

# ---- containerd 2.x
cat >/etc/containerd/config.toml <<'TOML'
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.runtime']
  # Lowering a sandbox's oom_score_adj below containerd's own needs CAP_SYS_RESOURCE, which
  # node containers do not have: without this every pod fails in runc create.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "flotilla.local/pause:3.10"
TOML
nohup containerd --config /etc/containerd/config.toml >$L/containerd.log 2>&1 &
waitfor 20 "containerd socket" ctr version
ctr -n k8s.io images import --all-platforms $K/images/pause.tar >/dev/null
ctr -n k8s.io images import --all-platforms $K/images/coredns.tar >/dev/null
step "images: $(ctr -n k8s.io images ls -q | grep flotilla | tr '\n' ' ')"

A="curl -fsS --cacert $P/ca.crt --cert $P/admin.crt --key $P/admin.key https://$master:6443"
if [ "$role" = master ]; then
# ---- etcd
nohup etcd --name "$name" --data-dir /var/lib/etcd \
  --listen-client-urls "https://127.0.0.1:2379,https://$ip:2379" --advertise-client-urls "https://$ip:2379" \
  --listen-peer-urls "https://$ip:2380" --initial-advertise-peer-urls "https://$ip:2380" \
  --initial-cluster "$name=https://$ip:2380" --initial-cluster-state new \
  --cert-file $P/etcd-server.crt --key-file $P/etcd-server.key --trusted-ca-file $P/ca.crt --client-cert-auth \
  --peer-cert-file $P/etcd-peer.crt --peer-key-file $P/etcd-peer.key --peer-trusted-ca-file $P/ca.crt --peer-client-cert-auth \
  --listen-metrics-urls http://127.0.0.1:2381 >$L/etcd.log 2>&1 &
waitfor 30 "etcd /health" curl -fsS http://127.0.0.1:2381/health

# ---- kube-apiserver
nohup kube-apiserver --advertise-address="$ip" --bind-address=0.0.0.0 --secure-port=6443 \
  --etcd-servers=https://127.0.0.1:2379 --etcd-cafile=$P/ca.crt \
  --etcd-certfile=$P/apiserver-etcd-client.crt --etcd-keyfile=$P/apiserver-etcd-client.key \
  --client-ca-file=$P/ca.crt --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key \
  --kubelet-client-certificate=$P/apiserver-kubelet-client.crt --kubelet-client-key=$P/apiserver-kubelet-client.key \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file=$P/sa.pub --service-account-signing-key-file=$P/sa.key \
  --service-cluster-ip-range=10.254.0.0/16 --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction --allow-privileged=true >$L/kube-apiserver.log 2>&1 &
waitfor 90 "kube-apiserver /readyz" $A/readyz
step "apiserver version: $($A/version | tr -d ' \n')"

# ---- controller-manager, scheduler
nohup kube-controller-manager --kubeconfig=$P/controller-manager.conf \
  --authentication-kubeconfig=$P/controller-manager.conf --authorization-kubeconfig=$P/controller-manager.conf \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --cluster-signing-cert-file=$P/ca.crt --cluster-signing-key-file=$P/ca.key --root-ca-file=$P/ca.crt \
  --service-account-private-key-file=$P/sa.key --allocate-node-cidrs=true --cluster-cidr=10.100.0.0/16 \
  --node-cidr-mask-size=24 --service-cluster-ip-range=10.254.0.0/16 >$L/kube-controller-manager.log 2>&1 &
nohup kube-scheduler --kubeconfig=$P/scheduler.conf --authentication-kubeconfig=$P/scheduler.conf \
  --authorization-kubeconfig=$P/scheduler.conf --bind-address=127.0.0.1 --leader-elect=false >$L/kube-scheduler.log 2>&1 &
waitfor 60 "controller-manager /healthz" curl -fsSk https://127.0.0.1:10257/healthz
waitfor 60 "scheduler /healthz" curl -fsSk https://127.0.0.1:10259/healthz

fi

# ---- kubelet
printf 'nameserver 10.254.0.10\nsearch cluster.local\n' >/dev/null
grep -v '^nameserver 127\.' /etc/resolv.conf >/etc/kubernetes/resolv.conf || true
grep -q nameserver /etc/kubernetes/resolv.conf || echo "nameserver 8.8.8.8" >>/etc/kubernetes/resolv.conf
cat >/var/lib/kubelet/config.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $P/kubelet-server.crt
tlsPrivateKeyFile: $P/kubelet-server.key
clusterDomain: cluster.local
clusterDNS: [10.254.0.10]
resolvConf: /etc/kubernetes/resolv.conf
staticPodPath: /etc/kubernetes/manifests
protectKernelDefaults: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
failSwapOn: false
systemReserved: {cpu: "100m", memory: "256Mi"}
YAML
nohup kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=$P/kubelet.conf \
  --node-ip="$ip" --hostname-override="$name" >$L/kubelet.log 2>&1 &
waitfor 60 "node $name registered" $A/api/v1/nodes/$name

# ---- flannel (kube subnet manager, own identity flotilla:flannel) + CNI config from subnet.env
# 1.37's Node authorizer lets a kubelet read only its own Node: flannel needs list/watch nodes.
$A/apis/rbac.authorization.k8s.io/v1/clusterroles -X POST -H 'Content-Type: application/json' -d '{
 "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "flotilla:flannel"},
 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
           {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
           {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]}' >/dev/null 2>&1 || true  # 409 on the 2nd node
$A/apis/rbac.authorization.k8s.io/v1/clusterrolebindings -X POST -H 'Content-Type: application/json' -d '{
 "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "flotilla:flannel"},
 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "flotilla:flannel"},
 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "flotilla:flannel"}]}' >/dev/null 2>&1 || true
step "flannel RBAC created"
podcidr() { $A/api/v1/nodes/$name | python3 -c 'import json,sys; sys.exit(not json.load(sys.stdin)["spec"].get("podCIDR"))'; }
waitfor 60 "node podCIDR allocated (flanneld exits without one)" podcidr
cat >/etc/kube-flannel/net-conf.json <<JSON
{"Network": "10.100.0.0/16", "SubnetLen": 24, "Backend": {"Type": "${FLANNEL_BACKEND:-vxlan}"}}
JSON
NODE_NAME=$name nohup flanneld --kube-subnet-mgr --kubeconfig-file=$P/flannel.conf --iface=eth0 --ip-masq \
  --net-config-path=/etc/kube-flannel/net-conf.json >$L/flanneld.log 2>&1 &
waitfor 60 "flannel subnet.env" test -s /run/flannel/subnet.env
. /run/flannel/subnet.env
# FLANNEL_SUBNET is the gateway address (10.100.0.1/24): host-local wants the network.
pod_net=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)" "$FLANNEL_SUBNET")
cat >/etc/cni/net.d/10-flannel.conflist <<JSON
{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "hairpinMode": true, "mtu": $FLANNEL_MTU,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_net"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
step "cni: subnet $pod_net mtu $FLANNEL_MTU"

# ---- kube-proxy
cat >/var/lib/kube-proxy.yaml <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $P/kube-proxy.conf}
mode: iptables
clusterCIDR: 10.100.0.0/16
conntrack: {maxPerCore: 0}
hostnameOverride: $name
YAML
nohup kube-proxy --config=/var/lib/kube-proxy.yaml >$L/kube-proxy.log 2>&1 &
waitfor 30 "kube-proxy /healthz" curl -fsS http://127.0.0.1:10256/healthz

ready() { $A/api/v1/nodes/$name | python3 -c 'import json,sys; c={x["type"]:x["status"] for x in json.load(sys.stdin)["status"]["conditions"]}; sys.exit(c.get("Ready")!="True")'; }
waitfor 90 "node $name Ready" ready
step "done: node Ready"
