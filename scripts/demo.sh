#!/usr/bin/env bash
# The main job on the embedded default: set up this machine, start `flotilla serve`
# (SQLite, API + conductor, the local Docker provider), build the node image, create a
# template and a real TLS cluster, and show how to reach it with the plain docker CLI.
#
#   env: FLOTILLA_DATA_DIR (default ~/.local/share/flotilla)  DEMO_COE (docker|swarm|kubernetes, default swarm)
#        DEMO_NODES (workers for swarm, default 2)  FLOTILLA_BIND (default 127.0.0.1:9511)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export FLOTILLA_DATA_DIR=${FLOTILLA_DATA_DIR:-$HOME/.local/share/flotilla}
BIND=${FLOTILLA_BIND:-127.0.0.1:9511}
COE=${DEMO_COE:-swarm}
NODES=${DEMO_NODES:-2}
FL=".venv/bin/flotilla --data-dir $FLOTILLA_DATA_DIR"
mkdir -p "$FLOTILLA_DATA_DIR"
LOG="$FLOTILLA_DATA_DIR/serve.log"
PIDFILE="$FLOTILLA_DATA_DIR/serve.pid"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "==> flotilla serve already running (pid $(cat "$PIDFILE"))"
else
  echo "==> starting flotilla serve on $BIND (log: $LOG)"
  nohup .venv/bin/flotilla --data-dir "$FLOTILLA_DATA_DIR" serve --bind "$BIND" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
fi
for _ in $(seq 1 100); do
  curl -sf "http://$BIND/" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://$BIND/" >/dev/null || { echo "server did not start; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }

echo "==> building the node image (once; reused afterwards)"
$FL image-build flotilla-node --os-distro debian

if ! $FL keypair-show demo >/dev/null 2>&1; then
  $FL keypair-create demo >/dev/null
fi

TEMPLATE=demo-$COE-template
if ! $FL cluster-template-show "$TEMPLATE" >/dev/null 2>&1; then
  echo "==> creating cluster template $TEMPLATE"
  if [ "$COE" = kubernetes ]; then
    # masters run etcd + the control plane: 2 GB; containerd keeps its data on the 5 GB volume
    $FL cluster-template-create "$TEMPLATE" --coe kubernetes --image flotilla-node --keypair demo \
      --external-network public --flavor m1.small --master-flavor m1.medium \
      --network-driver flannel --docker-volume-size 5 >/dev/null
  else
    $FL cluster-template-create "$TEMPLATE" --coe "$COE" --image flotilla-node --keypair demo \
      --external-network public --flavor m1.small --master-flavor m1.small \
      --docker-storage-driver overlay2 --docker-volume-size 5 >/dev/null
  fi
fi

CLUSTER=demo-$COE
if ! $FL cluster-show "$CLUSTER" >/dev/null 2>&1; then
  echo "==> creating cluster $CLUSTER"
  if [ "$COE" = docker ]; then
    $FL cluster-create "$CLUSTER" --cluster-template "$TEMPLATE" --node-count 1 --wait
  else
    $FL cluster-create "$CLUSTER" --cluster-template "$TEMPLATE" --master-count 1 --node-count "$NODES" --wait
  fi
fi

CERTS="$FLOTILLA_DATA_DIR/clusters/$CLUSTER"
mkdir -p "$CERTS"
eval "$($FL cluster-config "$CLUSTER" --dir "$CERTS" --force)"
echo "==> the cluster answers over TLS:"
if [ "$COE" = kubernetes ]; then
  CLIENT="kubectl"
  .venv/bin/kubectl version 2>/dev/null | sed -n 's/^Server Version: /server /p'
  .venv/bin/kubectl get nodes -o wide
else
  CLIENT="docker"
  docker version --format 'server {{.Server.Version}} at '"$DOCKER_HOST"
  [ "$COE" = docker ] || docker node ls
fi

cat <<MSG

Flotilla is running (pid $(cat "$PIDFILE"), log $LOG) with cluster $CLUSTER.
Reach it with the plain $CLIENT CLI (kubectl is .venv/bin/kubectl):

  eval \$($FL cluster-config $CLUSTER --dir $CERTS --force)
  $([ "$COE" = kubernetes ] && echo "kubectl get pods -A" || echo "docker info")

More: $FL cluster-show $CLUSTER, $FL --help, the dashboard at http://$BIND/dashboard/
Clean up: $FL cluster-delete $CLUSTER --wait && kill \$(cat $PIDFILE) && $FL engine-stop
MSG
