#!/usr/bin/env bash
# Install (Debian's rabbitmq-server) and start a local RabbitMQ for the `amqp` tests.
#
# Idempotent: does nothing when the package is installed and the broker answers
# `rabbitmqctl status`. The broker listens on 127.0.0.1:5672 only, node name
# rabbit@localhost (so it starts whatever the container's hostname resolves to), and
# runs as its own `rabbitmq` user. The default guest/guest account works on loopback:
#   amqp://guest:guest@127.0.0.1:5672/      (tests/integration/test_amqp_sink.py)
#
#   usage: scripts/setup-rabbitmq.sh        (as root: it installs a package and starts a daemon)
#   env:   RABBITMQ_WAIT_SECONDS            how long to wait for the broker (default 120)
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup-rabbitmq.sh: %s\n' "$*" >&2; exit 1; }

WAIT="${RABBITMQ_WAIT_SECONDS:-120}"
ENV_CONF=/etc/rabbitmq/rabbitmq-env.conf

installed() { dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed"; }
answering() { timeout 20 rabbitmqctl -q status >/dev/null 2>&1; }

if ! installed; then
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install rabbitmq-server"
  log "apt-get install rabbitmq-server"
  mkdir -p /etc/rabbitmq
  # Written before the package so its post-install start (where there is an init system)
  # already uses them; dpkg keeps an existing conffile.
  if [ ! -f "$ENV_CONF" ]; then
    printf 'NODENAME=rabbit@localhost\nNODE_IP_ADDRESS=127.0.0.1\n' >"$ENV_CONF"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
fi

if [ ! -f "$ENV_CONF" ] || ! grep -q '^NODENAME=' "$ENV_CONF"; then
  [ "$(id -u)" -eq 0 ] || die "need root to write $ENV_CONF"
  printf 'NODENAME=rabbit@localhost\nNODE_IP_ADDRESS=127.0.0.1\n' >>"$ENV_CONF"
fi

if answering; then
  log "RabbitMQ is running"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "need root to start rabbitmq-server"
if pgrep -u rabbitmq -f 'beam.*rabbit' >/dev/null 2>&1; then
  log "rabbitmq-server is starting already; waiting for it"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  log "starting rabbitmq-server (systemd)"
  systemctl start rabbitmq-server
else
  # No init system (a container): the Debian wrapper drops to the rabbitmq user itself.
  log "starting rabbitmq-server -detached"
  rabbitmq-server -detached
fi

deadline=$((SECONDS + WAIT))
until answering; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "last lines of the RabbitMQ log:"
    tail -n 30 /var/log/rabbitmq/*.log 2>/dev/null || true
    die "RabbitMQ did not answer 'rabbitmqctl status' within ${WAIT}s"
  fi
  sleep 1
done
log "RabbitMQ is running (amqp://guest:guest@127.0.0.1:5672/)"
