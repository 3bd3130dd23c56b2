"""The verify bundle recorded on the test bed's real cluster (tests/fixtures/e2e/README.md):
Kubernetes v1.36.2 (OpenShift's fork) built from source, Weave Net 2.9.0 with a local change
for the bed kernel's missing dummy driver, the ch09 lab not applied. Replayed, it grades the
same: every cluster check passes, every check that needs the lab's objects fails or waits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BUNDLE = Path(__file__).parent / "fixtures" / "e2e" / "verify-bundle"
LABCTL = str(Path(sys.executable).with_name("labctl"))
NEEDS_THE_LAB = {
    ("dns.simple-app", "master"),
    ("dns.client-pod", "master"),
    ("storage.emptydir-ready", "master"),
    ("storage.hostpath-file", "slave1"),
    ("storage.hostpath-file", "slave2"),
    ("storage.hostpath-ready", "master"),
}


def test_the_real_clusters_bundle_replays_with_its_verdicts():
    r = subprocess.run(
        [LABCTL, "verify", "--replay", str(BUNDLE), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr
    checks = json.loads(r.stdout)["checks"]
    failed = {(c["id"], c["host"]) for c in checks if c["status"] == "fail"}
    assert failed == NEEDS_THE_LAB
    passed = {c["id"] for c in checks if c["status"] == "pass"}
    assert {
        "cluster.api",
        "net.nodes",
        "net.pause",
        "net.control-plane-pods",
        "net.node-pods",
        "net.weave-ds",
        "net.weave-connections",
        "net.weave-ipalloc",
        "net.svc-iptables",
        "dns.coredns",
    } <= passed
    weave = [c for c in checks if c["id"] == "net.weave-connections"]
    assert len(weave) == 3 and all("established sleeve mtu=1438" in c["evidence"] for c in weave)
    nodes = {c["host"]: c["evidence"] for c in checks if c["id"] == "net.nodes"}
    assert "10.0.2.4" in nodes["slave1"] and "docker://20.10.24" in nodes["slave1"]
    skipped = {c["id"] for c in checks if c["status"] == "skip"}
    assert skipped == {
        "dns.curl",
        "net.pod-to-pod",
        "net.nodeport",
        "storage.emptydir-serves",
        "storage.emptydir-counts",
        "storage.hostpath-forward",
    }
