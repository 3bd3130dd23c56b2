"""The verify bundles recorded on the test bed's real cluster (tests/fixtures/e2e/README.md):
Kubernetes v1.36.2 (OpenShift's fork) built from source, cri-dockerd 0.4.3, CoreDNS 1.14.2,
Weave Net 2.9.0 with a local change for the bed kernel's missing dummy driver. Replayed, each
grades as it did on the cluster: with the lab applied every check passes; before it, every
cluster check passes and every check that needs the lab's objects fails or is skipped."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

E2E = Path(__file__).parent / "fixtures" / "e2e"
LABCTL = str(Path(sys.executable).with_name("labctl"))
CLUSTER_CHECKS = {
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
}


def replay(bundle: str) -> tuple[int, list[dict]]:
    r = subprocess.run(
        [LABCTL, "verify", "--replay", str(E2E / bundle), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout)["checks"]


def evidence(checks: list[dict], check_id: str) -> dict[str, str]:
    return {c["host"]: c["evidence"] for c in checks if c["id"] == check_id}


def test_the_applied_lab_passes_every_check_as_on_the_cluster():
    code, checks = replay("verify-bundle")
    assert code == 0
    assert {c["status"] for c in checks} == {"pass"}
    assert len(checks) == 41
    assert CLUSTER_CHECKS <= {c["id"] for c in checks}
    # What the course prints, seen through the real cluster's outputs.
    assert evidence(checks, "dns.curl")["master"].startswith("Hello World v1")
    assert evidence(checks, "storage.emptydir-serves")["master"].startswith("RUNNING loop seq")
    forward = evidence(checks, "storage.hostpath-forward")["master"]
    assert forward.startswith("printed slave") and "volume-hostpath runs on slave" in forward
    pod_to_pod = evidence(checks, "net.pod-to-pod")
    assert set(pod_to_pod) == {"slave1", "slave2"}
    assert all("Hello World v1" in e for e in pod_to_pod.values())
    nodeport = evidence(checks, "net.nodeport")
    assert nodeport["slave2"] == "10.0.2.5: Hello World v1"
    weave = evidence(checks, "net.weave-connections")
    assert len(weave) == 3 and all("established sleeve mtu=1438" in e for e in weave.values())
    assert "docker://20.10.24" in evidence(checks, "net.nodes")["slave1"]


def test_before_the_lab_every_cluster_check_passes_and_the_labs_fail_or_wait():
    code, checks = replay("verify-bundle-lab-not-applied")
    assert code == 1
    failed = {(c["id"], c["host"]) for c in checks if c["status"] == "fail"}
    assert failed == {
        ("dns.simple-app", "master"),
        ("dns.client-pod", "master"),
        ("storage.emptydir-ready", "master"),
        ("storage.hostpath-file", "slave1"),
        ("storage.hostpath-file", "slave2"),
        ("storage.hostpath-ready", "master"),
    }
    assert CLUSTER_CHECKS <= {c["id"] for c in checks if c["status"] == "pass"}
    assert {c["id"] for c in checks if c["status"] == "skip"} == {
        "dns.curl",
        "net.pod-to-pod",
        "net.nodeport",
        "storage.emptydir-serves",
        "storage.emptydir-counts",
        "storage.hostpath-forward",
    }


def test_the_default_sources_run_passes_every_check_with_the_public_images():
    # Recorded against the stand-ins of the public endpoints (tests/e2e/test_public_endpoints.py).
    bundle = "public-endpoints/verify-bundle"
    code, checks = replay(bundle)
    assert code == 0 and {c["status"] for c in checks} == {"pass"} and len(checks) == 41
    topology = json.loads((E2E / bundle / "bundle.json").read_text())["topology"]
    assert topology["kube_apt_repo"] == "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
    assert topology["docker_source"] == "docker" and topology["image_archives"] is None
    assert topology["labs"] == {} and topology["kube_image_repository"] == "registry.k8s.io"
    # The lab's pods run Docker Hub's names (pulled), not an offline folder's own tags.
    outputs = "".join(p.read_text() for p in (E2E / bundle / "commands").glob("*.out"))
    assert "local/nginx" not in outputs and "local/httpd" not in outputs
    assert re.search(r"^\S+\s+nginx\s+", outputs, re.M), "no container of image nginx"


def test_the_second_minor_passes_every_check_on_its_own_versions():
    # Kubernetes v1.35.6 (microshift's release-4.22 branch) in the VirtualBox shape.
    code, checks = replay("v1.35/verify-bundle")
    assert code == 0 and {c["status"] for c in checks} == {"pass"} and len(checks) == 41
    nodes = evidence(checks, "net.nodes")
    assert set(nodes) == {"master", "slave1", "slave2"}
    assert all("v1.35.6" in e and "docker://20.10.24" in e for e in nodes.values()), nodes
    assert "192.168.58.4" in nodes["slave1"]  # the node_ip, not the NAT's 10.0.2.15
