#!/usr/bin/env bash
# Set up a fresh Debian bookworm machine for Flotilla: system packages (the node image is
# built from the host's /usr, so docker.io, haproxy, sshd and docker-registry are what the
# nodes run) and the Python venv. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io haproxy busybox-static postgresql openssh-client openssh-server docker-registry iproute2 procps curl)
# Kubernetes nodes (also built from the host's /usr): CNI plugins, the kube-proxy/kubelet tools;
# gcc + libc6-dev link flanneld's (C) udp backend; time measures the kube build.
APT_PACKAGES+=(containernetworking-plugins conntrack iptables nftables socat ethtool gcc libc6-dev time)
# bench/api.py drives the server with wrk (a C load generator, so the client does not steal the
# server's CPU on a small machine).
APT_PACKAGES+=(wrk)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.flotilla-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> install -e '.[dev,keystone,amqp]' (scripts/pyinstall.sh: uv, else pip)"
  scripts/pyinstall.sh .venv -q -e '.[dev,keystone,amqp]'
  touch "$stamp"
fi
# The project's own modules, byte-compiled (a second; stale files are ignored by Python): with
# PYTHONDONTWRITEBYTECODE set, every `flotilla` process would compile them again (0.35 s each).
.venv/bin/python -m compileall -q -j 0 src >/dev/null
# Kubernetes binaries (kubelet, apiserver, etcd, containerd, flannel, CoreDNS) from Go modules:
# cached by source hash, so this is a no-op after the first (33 CPU-minutes cold, about 20 min on 2 idle cores) build.
# FLOTILLA_KUBE_BUILD=0 skips it on machines that will not run Kubernetes clusters.
if [ "${FLOTILLA_KUBE_BUILD:-1}" != 0 ]; then
  scripts/build-kube.sh
fi
echo "==> setup done"
