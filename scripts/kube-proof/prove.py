"""Prove the kube build in a real node container (single node, every role), by hand:

    flock /tmp/flotilla-engine.lock .venv/bin/python scripts/kube-proof/prove.py /var/cache/flotilla/kube/current

Starts a Flotilla-owned dockerd (PROOF_ENGINE_DIR), one hostroot node container running node.sh,
then CoreDNS through kubectl and DNS queries through the service IP; removes everything at the end.
KEEP=SECONDS keeps the node for poking; SHOW_LOGS=1 prints component log tails.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from flotilla.drivers.providers.local import Engine
from flotilla.drivers.providers.local.images import build_hostroot_image

keydir = Path(sys.argv[1]).resolve()
prove = Path(__file__).resolve().parent
data = Path(os.environ.get("PROOF_ENGINE_DIR", "/tmp/kube-proof-engine"))
NAME, NET, VOL = "kbprove-n1", "kbprove-net", "kbprove-var"
WORKER, WVOL = "kbprove-n2", "kbprove-var2"
two = os.environ.get("NODES", "1") == "2"  # NODES=2: a worker joins; a pod on it uses DNS on n1
kubectl = str(Path(sys.executable).parent / "kubectl")

t0 = time.monotonic()
def say(msg: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

eng = Engine.connect(None, data)
say(f"engine {eng.host}")
def d(*argv: str, check: bool = True, timeout: float = 600) -> str:
    r = eng.run(list(argv), check=check, timeout=timeout)
    return r.stdout + (r.stderr if not check else "")

try:
    image = build_hostroot_image(eng, force=True)
    say(f"node image {image}")
    d("network", "create", NET)
    def node(name: str, vol: str) -> None:
        d("volume", "create", vol)
        d("run", "-d", "--name", name, "--hostname", name, "--privileged", "--cgroupns=private",
          "--security-opt", "seccomp=unconfined", "--tmpfs", "/run", "--tmpfs", "/tmp",
          "-v", f"{vol}:/var", "-v", "/usr:/usr:ro", "-v", f"{keydir}:/opt/kube:ro",
          "-v", f"{prove}:/opt/prove:ro", "--network", NET, image, "sleep", "infinity")
    node(NAME, VOL)
    say("node container up")
    proc = subprocess.run(["docker", "exec", "-e", "FLANNEL_BACKEND=" + os.environ.get("FLANNEL_BACKEND", "vxlan"), NAME, "bash", "/opt/prove/node.sh"], env=eng.env,
                          timeout=600)
    say(f"node.sh exit {proc.returncode}")
    if two and proc.returncode == 0:
        node(WORKER, WVOL)
        master_ip = d("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NAME).strip()
        d("exec", WORKER, "mkdir", "-p", "/etc/kubernetes/pki")
        for f in ("ca.crt", "ca.key"):  # the worker signs its own node certs with the cluster CA
            data = d("exec", NAME, "cat", f"/etc/kubernetes/pki/{f}")
            eng.run(["exec", "-i", WORKER, "sh", "-c", f"cat >/etc/kubernetes/pki/{f}"], input=data)
        proc = subprocess.run(["docker", "exec", "-e", "ROLE=worker", "-e", f"MASTER_IP={master_ip}",
                               "-e", "FLANNEL_BACKEND=" + os.environ.get("FLANNEL_BACKEND", "vxlan"),
                               WORKER, "bash", "/opt/prove/node.sh"], env=eng.env, timeout=600)
        say(f"worker node.sh exit {proc.returncode}")
    out = Path(os.environ.get("PROOF_OUT", "/tmp/kube-proof")); out.mkdir(exist_ok=True)
    kc = out / "admin.conf"
    ip = d("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NAME).strip()
    pki = "/etc/kubernetes/pki"
    conf = d("exec", NAME, "cat", f"{pki}/admin.conf")
    for f in ("ca.crt", "admin.crt", "admin.key"):
        (out / f).write_text(d("exec", NAME, "cat", f"{pki}/{f}"))
    kc.write_text(conf.replace(pki, str(out)))
    k = lambda *a: subprocess.run([kubectl, "--kubeconfig", str(kc), *a], capture_output=True, text=True, timeout=150)
    r = k("get", "nodes", "-o", "wide"); print(r.stdout, r.stderr)
    r = k("version"); print(r.stdout, r.stderr)
    if proc.returncode == 0:
        coredns = "flotilla.local/coredns:" + dict(
            line.split("=", 1) for line in (keydir / "VERSIONS").read_text().split())["coredns"]
        manifest = (prove / "dns.yaml").read_text().replace("COREDNS_IMAGE", coredns)
        r = subprocess.run([kubectl, "--kubeconfig", str(kc), "apply", "-f", "-"], input=manifest,
                           capture_output=True, text=True); print(r.stdout, r.stderr)
        r = k("-n", "kube-system", "rollout", "status", "deploy/coredns", "--timeout=90s"); print(r.stdout, r.stderr)
        say(f"coredns rollout exit {r.returncode}")
        if r.returncode:
            r = k("-n", "kube-system", "describe", "pods"); print(r.stdout[-4000:], r.stderr)
            r = k("get", "events", "-A"); print(r.stdout[-3000:], r.stderr)
        r = k("get", "pods", "-A", "-o", "wide"); print(r.stdout, r.stderr)
        for q in ("kubernetes.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local"):
            print(d("exec", NAME, "busybox", "nslookup", q, "10.254.0.10", check=False))
        say("dns queried")
        if two:
            pod = f"""{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "dnstest"}},
              "spec": {{"nodeName": "{WORKER}", "restartPolicy": "Never", "containers": [{{"name": "t",
              "image": "{coredns}", "imagePullPolicy": "Never", "command": ["/coredns", "-version"]}}]}}}}"""
            r = subprocess.run([kubectl, "--kubeconfig", str(kc), "apply", "-f", "-"], input=pod,
                               capture_output=True, text=True); print(r.stdout, r.stderr)
            r = k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/dnstest", "--timeout=60s"); print(r.stdout, r.stderr)
            r = k("logs", "dnstest"); print("dnstest logs:", r.stdout, r.stderr)
            r = k("get", "pods", "-A", "-o", "wide"); print(r.stdout, r.stderr)
            # cross-node: from the worker's network namespace to the CoreDNS pod IP on n1 (VXLAN)
            dns_ip = k("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[0].status.podIP}").stdout
            print(d("exec", WORKER, "busybox", "nslookup", "kubernetes.default.svc.cluster.local", dns_ip, check=False))
            print(d("exec", WORKER, "busybox", "nslookup", "kube-dns.kube-system.svc.cluster.local", "10.254.0.10", check=False))
            say("cross-node checked")
        print(d("exec", NAME, "sh", "-c", "ip -br addr; ip route", check=False))
    print(d("exec", NAME, "sh", "-c", "ps -eo rss,comm --sort=-rss | head -12; free -m", check=False))
    if proc.returncode != 0 or os.environ.get("SHOW_LOGS"):
        print(d("exec", NAME, "sh", "-c", "for f in /var/log/kube/*.log; do echo == $f; tail -n 25 $f; done", check=False))
    keep = int(os.environ.get("KEEP", "0"))
    if keep:
        say(f"keeping for {keep}s: DOCKER_HOST={eng.host} docker exec -it {NAME} bash")
        time.sleep(keep)
finally:
    d("rm", "-f", "-v", NAME, WORKER, check=False)
    d("network", "rm", NET, check=False)
    d("volume", "rm", VOL, WVOL, check=False)
    eng.stop()
    say("cleaned up, engine stopped")
