#!/bin/sh
# runc-capfix: the OCI runtime wrapper of Flotilla's own dockerd. Two jobs:
#
# 1. Host devices: a privileged container (a cluster node) gets every host device
#    node in its /dev. Keep only the devices nodes may use (NODE_DEVICES in
#    devices.py, substituted below when the wrapper is installed); the node's parent
#    cgroup denies the rest anyway, this keeps host disks out of sight.
#
# 2. Capabilities, for hosts whose capability bounding set is smaller than the full
#    set (e.g. VMs without CAP_SYS_RESOURCE):
#
# Docker 20.10 `--privileged` asks runc for every capability the kernel knows;
# runc then fails with "unable to apply caps: operation not permitted" because
# a process can never gain a capability outside its bounding set. This wrapper
# finds the OCI spec runc is about to read -- `--bundle DIR` (DIR/config.json,
# for create/run) or `--process FILE` (for exec) -- drops every CAP_* that is
# not in our bounding set from all capability lists, and then execs the real
# runc with the unchanged arguments.
#
# Installed by flotilla's local provider as DATA_DIR/docker/runc-capfix and
# registered with `dockerd --add-runtime capfix=... --default-runtime capfix`.
# (The runtime keeps its old name: existing containers record it.)
set -eu

RUNC=${FLOTILLA_REAL_RUNC:-/usr/sbin/runc}
PYTHON=${FLOTILLA_CAPFIX_PYTHON:-/usr/bin/python3}

spec=""
bundle=""
want=""
for arg in "$@"; do
    case "$want" in
        bundle) bundle=$arg; want=""; continue ;;
        process) spec=$arg; want=""; continue ;;
    esac
    case "$arg" in
        --bundle|-b) want=bundle ;;
        --bundle=*) bundle=${arg#--bundle=} ;;
        --process|-p) want=process ;;
        --process=*) spec=${arg#--process=} ;;
    esac
done
if [ -z "$spec" ] && [ -n "$bundle" ]; then
    spec=$bundle/config.json
fi

if [ -n "$spec" ] && [ -f "$spec" ]; then
    "$PYTHON" - "$spec" <<'PY'
import json
import sys

NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]
path = sys.argv[1]
bnd = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("CapBnd:"):
            bnd = int(line.split()[1], 16)
allowed = {"CAP_" + name for bit, name in enumerate(NAMES) if bnd >> bit & 1}
known = {"CAP_" + name for name in NAMES}
NODE_DEVICES = json.loads('@NODE_DEVICES@')
with open(path) as f:
    doc = json.load(f)
changed = False

linux = doc.get("linux") or {}
rules = (linux.get("resources") or {}).get("devices") or []
privileged = any(r.get("allow") and r.get("type", "a") in ("a", None) for r in rules)
if privileged and isinstance(linux.get("devices"), list):
    def node_may_use(dev):
        return any(
            dev.get("type") == kind and dev.get("major") == major and minor in (None, dev.get("minor"))
            for kind, major, minor in NODE_DEVICES
        )
    kept_devices = [d for d in linux["devices"] if node_may_use(d)]
    if kept_devices != linux["devices"]:
        linux["devices"] = kept_devices
        changed = True

caps = doc.get("process", doc).get("capabilities") or {}
for key, values in list(caps.items()):
    if not isinstance(values, list):
        continue
    # Unknown names (newer kernels) are left alone; runc decides about them.
    kept = [c for c in values if c in allowed or c not in known]
    if kept != values:
        caps[key] = kept
        changed = True
if changed:
    with open(path, "w") as f:
        json.dump(doc, f)
PY
fi

exec "$RUNC" "$@"
