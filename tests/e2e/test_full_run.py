"""The whole chapter on a real kubeadm cluster, on the test bed, as a learner runs it.

Runs only when an offline folder is there (see offline.py and README.md here): the
Kubernetes packages, cri-dockerd and every image come from it, never from the internet.
The steps depend on each other and run in order; a step whose predecessor failed is skipped.
What the project's own commands print is kept in $K8SLAB_E2E_OUT (default tests/e2e/.out).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from . import offline, runs
from .runs import kubectl, labctl

pytestmark = [pytest.mark.testbed, pytest.mark.e2e]

OUT = runs.OUT


@pytest.fixture(scope="module")
def cluster(testbed, offline_dir):
    """Fresh hosts (new roots from the base) and a topology that installs from offline_dir."""
    testbed.renew_roots()
    cgroup_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    raw = yaml.safe_load(testbed.config.read_text())
    raw.update(offline.source_keys(offline_dir, cgroup_v1))
    config = testbed.state / "e2e-lab.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    OUT.mkdir(parents=True, exist_ok=True)
    testbed.e2e_config = config
    return testbed


def deploy(cluster, name: str, *extra: str) -> dict:
    return runs.deploy(cluster, runs.e2e_env(cluster), OUT, name, *extra)


def diagnosis(cluster, name: str) -> str:
    return runs.diagnosis(cluster, OUT, name)


def test_deploy_from_bare_hosts(cluster):
    r = deploy(cluster, "deploy-1")
    print(json.dumps({k: v for k, v in r.items() if k != "output"}, indent=2))
    assert r["exit_code"] == 0, r["output"][-3000:] + diagnosis(cluster, "deploy-1")
    nodes = kubectl(cluster, "get nodes -o wide --no-headers")
    (OUT / "nodes.txt").write_text(nodes)
    ready = {line.split()[0]: line.split()[1] for line in nodes.splitlines()}
    assert ready == {h: "Ready" for h in cluster.hosts}, nodes
    # Every pod sandbox runs the pause image kubeadm pulled, none of cri-dockerd's default.
    _, listed, _ = cluster.ssh(
        "master",
        "kubeadm config images list --kubernetes-version "
        '"$(kubeadm version -o short)" | grep /pause:',
    )
    pause = listed.strip()
    for host in cluster.hosts:
        _, args, _ = cluster.ssh(host, "ps -o args= -C cri-dockerd")
        assert f"--pod-infra-container-image={pause}" in args, (host, args)
        _, images, _ = cluster.ssh(host, "docker ps --filter name=k8s_POD --format '{{.Image}}'")
        assert set(images.split()) == {pause}, (host, images)


def test_second_run_changes_nothing(cluster):
    r = deploy(cluster, "deploy-2")
    print(f"no-op re-run of cluster.py: {r['seconds']} s")
    assert r["exit_code"] == 0, r["output"][-6000:]
    assert not r["changes"], r["output"][-6000:]


def test_labctl_apply(cluster):
    r = labctl(cluster, "apply", "ch09")
    (OUT / "apply.log").write_text(r.stdout + r.stderr)
    print(f"labctl apply ch09: {r.seconds} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    # The optional step too, so that every check has something to grade.
    nodeport = labctl(cluster, "apply", "ch09", "--only", "nodeport")
    (OUT / "apply-nodeport.log").write_text(nodeport.stdout + nodeport.stderr)
    assert nodeport.returncode == 0, nodeport.stdout + nodeport.stderr
    timings = {"apply ch09": r.seconds, "apply ch09 --only nodeport": nodeport.seconds}
    (OUT / "apply.json").write_text(json.dumps(timings, indent=2) + "\n")


def test_labctl_verify(cluster):
    bundle = OUT / "verify-bundle"
    r = labctl(cluster, "verify", "--record", str(bundle), "--format", "json")
    (OUT / "verify.json").write_text(r.stdout)
    report = json.loads(r.stdout)
    print(f"labctl verify: {r.seconds} s, totals {report['totals']}")
    (OUT / "verify-seconds.txt").write_text(f"{r.seconds}\n")
    failed = [f"{c['id']}@{c['host']}: {c['evidence']}" for c in report["checks"]]
    failed = [f for f, c in zip(failed, report["checks"], strict=True) if c["status"] != "pass"]
    assert r.returncode == 0 and not failed, "\n".join(failed) + r.stderr


def test_labctl_status(cluster):
    r = labctl(cluster, "status", "--format", "json")
    (OUT / "status.json").write_text(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    status = json.loads(r.stdout)
    assert status, r.stdout


def test_master_peak_memory(cluster):
    peak = cluster.peak_memory("master")
    (OUT / "master-peak-memory.txt").write_text(f"{peak}\n")
    print(f"master peak memory: {peak / 2**20:.0f} MiB")


def test_labctl_delete(cluster):
    r = labctl(cluster, "delete", "ch09", "--yes")
    (OUT / "delete.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    # delete waits: nothing of the lab is left when it returns, the images it built included.
    left = kubectl(cluster, "get pod -A --no-headers")
    assert not re.search(r"\b(nginx|volume-empty-dir|volume-hostpath|simple-app)", left), left
    assert "gurumee" not in kubectl(cluster, "get namespace --no-headers")
    assert "kept:" not in r.stdout, r.stdout
    for host in ("slave1", "slave2"):
        rc, out, _ = cluster.ssh(host, "docker images --format '{{.Repository}}' k8s-lab/*")
        assert rc == 0 and out.strip() == "", f"{host}: {out}"


def test_add_a_fourth_host_with_limit(cluster):
    cluster.add_spare("slave3")
    raw = yaml.safe_load(cluster.e2e_config.read_text())
    slave3 = {"name": "slave3", "role": "worker", "node_ip": cluster.spare_ips["slave3"]}
    raw["hosts"].append(slave3)
    cluster.e2e_config.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = deploy(cluster, "deploy-add-slave3", "--limit", "slave3")
    assert r["exit_code"] == 0, r["output"][-3000:] + diagnosis(cluster, "deploy-add-slave3")
    assert set(r["changes"]) == {"slave3"}, r["changes"]
    # The deploy itself waits for the cluster, so the node is Ready when it ends.
    out = kubectl(cluster, "wait --for=condition=Ready node/slave3 --timeout=10s")
    assert "condition met" in out, out


def test_reset_then_fresh_deploy(cluster):
    r = labctl(cluster, "reset", "--yes")
    (OUT / "reset.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    rc, out, _ = cluster.ssh("master", "ls /etc/kubernetes/admin.conf")
    assert rc != 0, out
    for host in (*cluster.hosts, "slave3"):
        _, chains, _ = cluster.ssh(host, "iptables-save | grep -E '^:(KUBE|WEAVE)-' || true")
        assert chains == "", f"{host} still has {chains}"
    r = deploy(cluster, "deploy-after-reset")
    assert r["exit_code"] == 0, r["output"][-3000:] + diagnosis(cluster, "deploy-after-reset")
    nodes = kubectl(cluster, "get nodes --no-headers")
    assert all(line.split()[1] == "Ready" for line in nodes.splitlines()), nodes
