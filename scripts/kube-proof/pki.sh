#!/usr/bin/env bash
# pki.sh DIR NODE_NAME NODE_IP [APISERVER_IP]: a cluster CA (kept if DIR/ca.key exists: workers
# get the master's) and every certificate a node needs; kubeconfigs point at APISERVER_IP.
set -euo pipefail
d=$1 name=$2 ip=$3 api=${4:-$3}
mkdir -p "$d" && cd "$d"
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=flotilla-ca" 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
fi
cert() { # cert NAME SUBJECT [SANS] [EKU]
  local n=$1 subj=$2 sans=${3:-} eku=${4:-clientAuth}
  openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subj" 2>/dev/null
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"; [ -n "$sans" ] && echo "subjectAltName=$sans"; } >"$n.ext"
  openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" -days 3650 -extfile "$n.ext" 2>/dev/null
  rm -f "$n.csr" "$n.ext"
}
cert apiserver "/CN=kube-apiserver" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$name,IP:10.254.0.1,IP:127.0.0.1,IP:$ip" serverAuth
cert etcd-server "/CN=$name" "DNS:localhost,DNS:$name,IP:127.0.0.1,IP:$ip" serverAuth,clientAuth
cert etcd-peer "/CN=$name" "DNS:localhost,DNS:$name,IP:127.0.0.1,IP:$ip" serverAuth,clientAuth
cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kube-proxy "/CN=system:kube-proxy"
cert flannel "/CN=flotilla:flannel"
cert kubelet "/O=system:nodes/CN=system:node:$name"
cert kubelet-server "/CN=$name" "DNS:$name,IP:$ip,IP:127.0.0.1" serverAuth
kubeconfig() { # kubeconfig FILE CERT SERVER
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {certificate-authority: $d/ca.crt, server: "$3"}
users:
- name: u
  user: {client-certificate: $d/$2.crt, client-key: $d/$2.key}
contexts:
- name: default
  context: {cluster: c, user: u}
current-context: default
KC
}
kubeconfig admin.conf admin "https://$api:6443"
kubeconfig controller-manager.conf controller-manager "https://127.0.0.1:6443"
kubeconfig scheduler.conf scheduler "https://127.0.0.1:6443"
kubeconfig kube-proxy.conf kube-proxy "https://$api:6443"
kubeconfig kubelet.conf kubelet "https://$api:6443"
kubeconfig flannel.conf flannel "https://$api:6443"
echo "pki ok: $(ls | wc -l) files in $d"
