"""Break the real cluster one thing at a time and record what `labctl verify` says: the fault
bundles of tests/fixtures/e2e/faults/ (replayed by tests/test_faults_replay.py). A script run
by hand on a bed cluster with the lab applied (tests/e2e/README.md), not a test:

    sudo TESTBED_SHAPE=virtualbox .venv/bin/python -m tests.e2e.record_faults \\
        --config /var/lib/k8s-lab/machines/tbvbox/e2e-lab.yaml [--only NAME] [--out DIR]

For each fault: `labctl verify` must pass first; the fault is injected; the script waits for
the state the fault really produces (its `shows` command exits 0: a node NotReady, a pod in
CrashLoopBackOff...); `labctl verify --record OUT/<fault>` records; the fault is undone the
way a learner would; `labctl verify` must pass again before the next one. OUT/faults.json
keeps the seconds each took. Written for the course's hosts (master, slave1, slave2). No
test runs it; it ran on 2026-12-05 against the bed's cluster tbvbox (tests/e2e/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.testbed import bed  # noqa: E402
from tests.testbed.fixtures import Testbed  # noqa: E402

LABCTL = str(Path(sys.executable).with_name("labctl"))
K = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
KS = f"{K} -n kube-system"


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def affinity(op: str, node: str) -> str:
    """A merge patch that keeps a DaemonSet's pods off (NotIn) or only on (In) `node`."""
    term = {"key": "kubernetes.io/hostname", "operator": op, "values": [node]}
    rule = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [term]}]}}  # fmt: skip
    return json.dumps({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": rule}}}}})


DROP_AFFINITY = '\'[{"op": "remove", "path": "/spec/template/spec/affinity"}]\''

# kube-proxy's DaemonSet copied as kube-proxy-slave1 for slave1 only, reading a copy of its
# ConfigMap with the mode misspelt: kube-proxy exits on it at every start.
BROKEN_KUBE_PROXY = f"""
{KS} get cm kube-proxy -o json | python3 -c '
import json, sys
cm = json.load(sys.stdin)
cm["metadata"] = {{"name": "kube-proxy-slave1", "namespace": "kube-system"}}
conf = cm["data"]["config.conf"]
assert "mode: iptables" in conf or "mode: \\"\\"" in conf, conf
conf = conf.replace("mode: iptables", "mode: iptable").replace("mode: \\"\\"", "mode: iptable")
cm["data"]["config.conf"] = conf
print(json.dumps(cm))' | {K} apply -f -
{KS} get ds kube-proxy -o json | python3 -c '
import json, sys
ds = json.load(sys.stdin)
ds["metadata"] = {{"name": "kube-proxy-slave1", "namespace": "kube-system"}}
ds.pop("status", None)
ds["spec"]["selector"] = {{"matchLabels": {{"k8s-app": "kube-proxy-slave1"}}}}
t = ds["spec"]["template"]
t["metadata"]["labels"] = {{"k8s-app": "kube-proxy-slave1"}}
t["spec"]["affinity"] = json.loads(sys.argv[1])["spec"]["template"]["spec"]["affinity"]
for v in t["spec"]["volumes"]:
    if v.get("configMap", {{}}).get("name") == "kube-proxy":
        v["configMap"]["name"] = "kube-proxy-slave1"
print(json.dumps(ds))' '{affinity("In", "slave1")}' | {K} apply -f -
"""

# Corefile's forward plugin misspelt: CoreDNS exits at start ("Unknown directive").
COREFILE = """{KS} get cm coredns -o json | python3 -c '
import json, sys
cm = json.load(sys.stdin)
assert "{old}" in cm["data"]["Corefile"]
cm["data"]["Corefile"] = cm["data"]["Corefile"].replace("{old}", "{new}")
print(json.dumps(cm))' | {K} replace -f - && {KS} delete pod -l k8s-app=kube-dns --wait=false"""


def weave_block(peer: str, undo: bool = False) -> str:
    """iptables on a node: drop Weave's TCP 6783 and UDP 6783-6784 to and from `peer` only
    (both ends of the port, so the established control connection dies too)."""
    if undo:
        return "; ".join(f"iptables {a} F18W" for a in ("-D INPUT -j", "-D OUTPUT -j", "-F", "-X"))
    rules = [
        f"iptables -A F18W {addr} {peer} -p {proto} -m multiport {side} {ports} -j DROP"
        for proto, ports in (("tcp", "6783"), ("udp", "6783,6784"))
        for side in ("--dports", "--sports")
        for addr in ("-s", "-d")
    ]
    return " && ".join(["iptables -N F18W", *rules, "iptables -I INPUT 1 -j F18W",
                        "iptables -I OUTPUT 1 -j F18W"])  # fmt: skip


@dataclass
class Fault:
    name: str
    what: str  # the injection, in words (tests/e2e/README.md's table)
    inject: list[tuple[str, str]]  # (host, root command)
    shows: tuple[str, str]  # (host, command) that exits 0 once the fault has taken effect
    restore: list[tuple[str, str]]  # (host, command); host "labctl" = a labctl command
    placement: dict = field(default_factory=dict)


def faults(ips: dict[str, str], on: dict[str, str]) -> list[Fault]:
    """`on`: where the lab's pods run now (nginx, volume-hostpath), for faults aimed at them."""
    not_ready = f"{K} get node {{}} --no-headers | grep -q NotReady"
    return [
        Fault("kubelet-stopped", "`systemctl stop kubelet` on slave1",
              [("slave1", "systemctl stop kubelet")],
              ("master", not_ready.format("slave1")),
              [("slave1", "systemctl start kubelet")]),
        Fault("docker-stopped", "`systemctl stop docker.socket docker` on slave2 (cri-docker, "
              "which Requires it, stops too)", [("slave2", "systemctl stop docker.socket docker")],
              ("master", not_ready.format("slave2")),
              [("slave2", "systemctl start docker && systemctl restart cri-docker")]),
        Fault("kube-proxy-crashloop", "DaemonSet kube-proxy kept off slave1 (node affinity), "
              "a copy kube-proxy-slave1 on slave1 only reading a ConfigMap copy with "
              "`mode: iptable`; the old pod's rules stay",
              [("master", f"{KS} patch ds kube-proxy --type merge -p "
                f"'{affinity('NotIn', 'slave1')}' && {KS} rollout status ds/kube-proxy "
                "--timeout=600s"),
               ("master", BROKEN_KUBE_PROXY)],
              ("master", f"{KS} get pod -l k8s-app=kube-proxy-slave1 --no-headers | "
               "grep -q CrashLoopBackOff"),
              [("master", f"{KS} delete ds kube-proxy-slave1 && {KS} delete cm kube-proxy-slave1"),
               ("master", f"{KS} patch ds kube-proxy --type json -p {DROP_AFFINITY} && "
                f"{KS} rollout status ds/kube-proxy --timeout=600s")]),
        Fault("weave-pod-down", "DaemonSet weave-net kept off slave2 (node affinity NotIn "
              "slave2): its pod there deleted and not recreated",
              [("master", f"{KS} patch ds weave-net --type merge -p "
                f"'{affinity('NotIn', 'slave2')}' && {KS} rollout status ds/weave-net "
                "--timeout=600s")],
              ("master", f"! {KS} get pod -l name=weave-net -o wide | grep -w slave2"),
              [("master", f"{KS} patch ds weave-net --type json -p {DROP_AFFINITY} && "
                f"{KS} rollout status ds/weave-net --timeout=600s")]),
        Fault("weave-port-blocked", "iptables on slave1 and slave2 drop TCP 6783 and UDP "
              "6783-6784 to and from each other (either port end)",
              [("slave1", weave_block(ips["slave2"])), ("slave2", weave_block(ips["slave1"]))],
              ("slave1", f"curl -s 127.0.0.1:6784/status/connections | grep {ips['slave2']} "
               "| grep -vq established"),
              [("slave1", weave_block("", undo=True)), ("slave2", weave_block("", undo=True))]),
        Fault("coredns-scaled-0", "`kubectl -n kube-system scale deploy coredns --replicas=0`",
              [("master", f"{KS} scale deploy coredns --replicas=0")],
              ("master", f"! {KS} get pod -l k8s-app=kube-dns --no-headers 2>&1 | grep -q coredns"),
              [("master", f"{KS} scale deploy coredns --replicas=2")]),
        Fault("coredns-crashloop", "Corefile's `forward .` misspelt `forwrd .` in ConfigMap "
              "coredns, its pods deleted",
              [("master", COREFILE.format(KS=KS, K=K, old="forward .", new="forwrd ."))],
              ("master", f"{KS} get pod -l k8s-app=kube-dns --no-headers | grep -c "
               "CrashLoopBackOff | grep -qx 2"),
              [("master", COREFILE.format(KS=KS, K=K, old="forwrd .", new="forward ."))]),
        Fault("simple-app-scaled-0", "`kubectl -n gurumee scale deploy simple-app-dep "
              "--replicas=0`",
              [("master", f"{K} -n gurumee scale deploy simple-app-dep --replicas=0")],
              ("master", f"! {K} -n gurumee get pod --no-headers 2>&1 | grep -q simple-app"),
              [("master", f"{K} -n gurumee scale deploy simple-app-dep --replicas=3")]),
        Fault("nginx-deleted", "`kubectl delete pod nginx`",
              [("master", f"{K} delete pod nginx")],
              ("master", f"! {K} get pod nginx"),
              [("labctl", "apply ch09 --only coredns")]),
        Fault("htdocs-removed", f"`rm /var/htdocs/index.html` on {on['volume-hostpath']}, "
              "where volume-hostpath runs",
              [(on["volume-hostpath"], "rm /var/htdocs/index.html")],
              (on["volume-hostpath"], "! test -e /var/htdocs/index.html"),
              [("labctl", "apply ch09 --only hostpath")]),
        Fault("kube-services-flushed", f"`iptables -t nat -F KUBE-SERVICES` on {on['nginx']}, "
              "where the nginx pod runs; recorded at once (kube-proxy writes it again at its "
              "next sync)",
              [(on["nginx"], "iptables -t nat -F KUBE-SERVICES")],
              (on["nginx"], "! iptables -t nat -S KUBE-SERVICES | grep -q -- '-j KUBE-SVC-'"),
              [("master", f"{KS} delete pod -l k8s-app=kube-proxy --field-selector "
                f"spec.nodeName={on['nginx']}")]),
        Fault("kubeconfig-removed", "the SSH user's ~/.kube/config moved away on master",
              [("master", "mv /home/gurumee/.kube/config /root/f18-kubeconfig")],
              ("master", "! test -e /home/gurumee/.kube/config"),
              [("master", "mv /root/f18-kubeconfig /home/gurumee/.kube/config")]),
        Fault("apiserver-manifest-moved", "/etc/kubernetes/manifests/kube-apiserver.yaml moved "
              "to /root on master",
              [("master", "mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/")],
              ("master", "! docker ps --format '{{.Names}}' | grep -q '^k8s_kube-apiserver'"),
              [("master", "mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/")]),
        Fault("wrong-node-ip", "slave1's kubelet restarted with --node-ip=10.0.2.15 (its NAT "
              "address) in /etc/default/kubelet",
              [("slave1", "cp /etc/default/kubelet /root/f18-kubelet && sed -i "
                "'s/--node-ip=[0-9.]*/--node-ip=10.0.2.15/' /etc/default/kubelet && "
                "grep -q node-ip=10.0.2.15 /etc/default/kubelet && systemctl restart kubelet")],
              ("master", f"{K} get node slave1 -o wide --no-headers | grep -q 10.0.2.15"),
              [("slave1", "cp /root/f18-kubelet /etc/default/kubelet && "
                "systemctl restart kubelet")]),
    ]  # fmt: skip


class Driver:
    def __init__(self, config: Path, out: Path):
        self.tb = Testbed(config)
        self.env = {**self.tb.env(), "LAB_CONFIG": str(config)}
        self.out = out

    def run(self, host: str, cmd: str) -> None:
        if host == "labctl":
            r = subprocess.run([LABCTL, *cmd.split()], env=self.env, capture_output=True,
                               text=True, timeout=900)  # fmt: skip
            rc, out, err = r.returncode, r.stdout, r.stderr
        else:
            rc, out, err = self.tb.ssh(host, cmd)
        say(f"  {host}: {' '.join(cmd.split())[:100]} -> {rc}")
        if rc != 0:
            raise SystemExit(f"{host}: `{cmd}` exited {rc}: {(out + err).strip()[-800:]}")

    def wait(self, host: str, cmd: str, timeout: float) -> float:
        t0 = time.monotonic()
        while self.tb.ssh(host, cmd)[0] != 0:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the fault did not show in {timeout} s: {host}: {cmd}")
            time.sleep(3)
        return round(time.monotonic() - t0, 1)

    def verify(self, *args: str) -> tuple[int, dict]:
        r = subprocess.run([LABCTL, "verify", "--format", "json", *args], env=self.env,
                           capture_output=True, text=True, timeout=900)  # fmt: skip
        try:
            return r.returncode, json.loads(r.stdout)
        except json.JSONDecodeError:
            return r.returncode, {"checks": [], "error": (r.stdout + r.stderr)[-500:]}

    def until_passing(self, timeout: float = 900) -> float:
        t0 = time.monotonic()
        while True:
            code, report = self.verify()
            if code == 0:
                return round(time.monotonic() - t0, 1)
            bad = [f"{c['id']}@{c['host']}" for c in report["checks"] if c["status"] != "pass"]
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"verify still fails after {timeout} s: {bad or report}")
            say(f"  not passing yet: {' '.join(bad)[:200]}")
            time.sleep(15)

    def placement(self) -> dict[str, str]:
        _, out, _ = self.tb.ssh("master", f"{K} get pod -o wide --no-headers")
        return {line.split()[0]: line.split()[6] for line in out.splitlines()}

    def one(self, fault: Fault) -> dict:
        say(f"{fault.name}: {fault.what}")
        before = self.until_passing()
        for host, cmd in fault.inject:
            self.run(host, cmd)
        waited = self.wait(*fault.shows, timeout=600)
        say(f"  shows after {waited} s")
        code, report = self.verify("--record", str(self.out / fault.name))
        (self.out / f"{fault.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        for c in report["checks"]:
            if c["status"] != "pass":
                say(f"    {c['status']:5} {c['id']}@{c['host']}: {c['evidence'][:150]}")
        for host, cmd in fault.restore:
            self.run(host, cmd)
        after = self.until_passing()
        say(f"  verify passes again {after} s after the restore")
        return {"fault": fault.name, "what": fault.what, "passing_before_s": before,
                "shows_after_s": waited, "verify_exit": code, "verify_s": report.get("seconds"),
                "totals": report.get("totals"), "passing_again_after_s": after}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", type=Path, required=True, help="the topology the lab runs on")
    ap.add_argument("--out", type=Path, default=Path("/tmp/k8slab-faults"))
    ap.add_argument("--only", action="append", help="a fault's name (repeatable)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with bed.locked(what="tests/e2e/record_faults.py"):
        d = Driver(a.config, a.out)
        ips = d.tb.ips
        known = [f.name for f in faults(ips, {"nginx": "?", "volume-hostpath": "?"})]
        unknown = set(a.only or ()) - set(known)
        if unknown:
            sys.exit(f"unknown fault {sorted(unknown)}; known: {', '.join(known)}")
        summary = a.out / "faults.json"
        done = json.loads(summary.read_text()) if summary.exists() else {}
        for name in [n for n in known if not a.only or n in a.only]:
            # where the lab's pods run now: a restore (labctl apply) may have moved them
            fault = next(f for f in faults(ips, d.placement()) if f.name == name)
            done[name] = d.one(fault)
            summary.write_text(json.dumps(done, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
