"""The phases that need pkgs.k8s.io, GitHub or container images cannot run here: their plans
(`pyinfra --dry`, real facts from the three test-bed hosts) are what is asserted.

Proven here only on paper: the Docker apt repository, cri-dockerd, the Kubernetes packages,
kubeadm init/join, Weave Net and the readiness wait are not executed by these tests (tests/e2e
runs them for real where an offline folder with a real Kubernetes exists).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k8slab.topology import REPO_ROOT

pytestmark = pytest.mark.testbed
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


# The bed's machine mounts cgroup v1, which kubelet 1.35+ refuses, and its hosts reach no
# download source: the pre-flight says so (test_preflight_stops_the_deploy below); the plans
# are made past it.
SKIP = ("--data", "skip_checks=cgroup-v2,sources")


def dry_run(
    testbed, tmp_path, *args: str, check=True, **topology_changes
) -> subprocess.CompletedProcess:
    topo = yaml.safe_load(Path(testbed.config).read_text())
    topo.update(topology_changes)
    config = tmp_path / "lab.yaml"
    config.write_text(yaml.safe_dump(topo))
    env = {**testbed.env(), "LAB_CONFIG": str(config), "LAB_KNOWN_HOSTS": str(testbed.known_hosts)}
    result = subprocess.run(
        [PYINFRA, "--dry", *args, "inventory/lab.py", "deploys/cluster.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def plan(testbed, tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("plan")
    return json.loads(dry_run(testbed, tmp, "--json", *SKIP, docker_source="docker").stdout)["plan"]


def ops(plan, phase: str) -> dict[str, set[str]]:
    """Operation name -> hosts it would run on, for one phase."""
    return {
        op["name"].split(" | ", 1)[-1]: set(
            op["hosts_with_change"] + op["hosts_with_conditional_change"]
        )
        for op in plan
        if op["name"].startswith(phase)
    }


ALL = {"master", "slave1", "slave2"}


def test_docker_from_dockers_signed_repository(plan):
    docker = ops(plan, "Docker Engine")
    assert docker["Docker's apt repository: signing key"] == ALL
    assert docker["Docker's apt repository: apt source, signed-by its key"] == ALL
    check = "Docker's apt repository: apt-get update of it alone passes (signature, reachability)"
    assert docker[check] == ALL
    assert docker["Install Docker Engine from Docker's repository"] == ALL


def test_cri_dockerd_pinned_release_and_units(plan):
    cri = ops(plan, "cri-dockerd")
    assert cri["Download cri-dockerd 0.4.3 (amd64)"] == ALL
    assert cri["Install cri-dockerd 0.4.3 to /usr/local/bin/cri-dockerd"] == ALL
    assert cri["cri-docker.socket is enabled and running"] == ALL


def test_kubernetes_packages_from_the_minors_repo_and_held(plan):
    kube = ops(plan, "Kubernetes packages")
    assert kube["Kubernetes v1.36 apt repository: signing key"] == ALL
    assert kube["Kubernetes v1.36 apt repository: apt source, signed-by its key"] == ALL
    assert kube["Install kubelet, kubeadm and kubectl v1.36"] == ALL
    assert kube["Hold them: an apt upgrade must never move the cluster's version"] == ALL
    assert kube["cri-dockerd's pod sandboxes use the pause image kubeadm pulls"] == ALL


def test_init_only_on_master_join_only_on_workers_and_after_init(plan):
    names = [op["name"] for op in plan]
    assert ops(plan, "Control plane")["kubeadm init"] == {"master"}
    assert ops(plan, "Join workers")["kubeadm join with a fresh token"] == {"slave1", "slave2"}
    assert ops(plan, "Cluster ready") == {
        "Wait up to 10 min for nodes, weave-net and coredns": {"master"}
    }
    init = names.index("Control plane | kubeadm init")
    weave = names.index("Control plane | Apply Weave Net")
    join = names.index("Join workers | kubeadm join with a fresh token")
    wait = names.index("Cluster ready | Wait up to 10 min for nodes, weave-net and coredns")
    assert init < weave < join < wait


def test_a_run_limited_to_new_workers_still_waits_for_the_cluster(testbed, tmp_path):
    # `--limit NEWHOST` leaves the control plane out of the run: the first worker waits
    # through the control plane's connection, so the run does not end at "joined".
    result = dry_run(testbed, tmp_path, "--json", *SKIP, "--limit", "slave2")
    plan = json.loads(result.stdout)["plan"]
    assert ops(plan, "Join workers") == {"kubeadm join with a fresh token": {"slave2"}}
    assert ops(plan, "Cluster ready") == {
        "Wait up to 10 min for nodes, weave-net and coredns (on master)": {"slave2"}
    }


def created_files(diff_output: str) -> dict[tuple[str, str], str]:
    """(host, path) -> content of each file pyinfra --diff says it will create."""
    files, current = {}, None
    for line in diff_output.splitlines():
        head = re.match(r"\s*\[(\S+)\] Will (?:create|modify) (\S+)", line)
        if head:
            current = head.groups()
            files[current] = ""
        elif current and re.match(r"\s+\+ ?", line) and not line.strip().startswith("+++"):
            files[current] += re.sub(r"^\s+\+ ?", "", line) + "\n"
        elif current and not re.match(r"\s+(@@|-)", line):
            current = None
    return files


def test_kubeadm_config_and_kubelet_get_each_hosts_node_ip(testbed, tmp_path):
    # pyinfra shows no diff for a file whose directory does not exist yet; the deploy makes
    # /etc/k8s-lab anyway (its barrier operations), so make it here first.
    for host in testbed.hosts:
        testbed.ssh(host, "mkdir -p /etc/k8s-lab")
    result = dry_run(testbed, tmp_path, "--diff", *SKIP)
    files = created_files(result.stdout + result.stderr)
    docs = {
        d["kind"]: d
        for d in yaml.safe_load_all(files[("master", "/etc/k8s-lab/kubeadm-config.yaml")])
    }
    assert docs["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == "10.0.2.15"
    assert docs["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "10.0.2.15"}
    ]
    assert docs["InitConfiguration"]["nodeRegistration"]["criSocket"] == (
        "unix:///var/run/cri-dockerd.sock"
    )
    assert [host for host, path in files if "kubeadm" in path] == ["master"]
    for host, ip in testbed.ips.items():
        assert f'KUBELET_EXTRA_ARGS="--node-ip={ip}"' in files[(host, "/etc/default/kubelet")]


def test_preflight_stops_the_deploy_before_any_change(testbed, tmp_path):
    # as a VM's topology would be: cgroup v1 not allowed (labctl machines allows it)
    result = dry_run(testbed, tmp_path, check=False, allow_cgroup_v1=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    # labctl doctor's table, then one line naming what failed where and how to skip it.
    assert re.search(r"^cgroup-v2\s+master\s+FAIL\s", out, re.M), out[-3000:]
    assert (
        "pre-flight failed, nothing was changed: cgroup-v2 on master, slave1, slave2; "
        "sources on master, slave1, slave2. Fix it (hints above); sources: the hosts cannot "
        "download what the deploy needs, so point the topology's keys at a mirror"
    ) in out
    # skipping sources would only move its failure into the deploy: not offered
    assert out.rstrip().endswith("or skip a check you accept: --data skip_checks=cgroup-v2")
    assert "pyinfra error in" not in out
    assert "Starting operation" not in out and "Detected changes" not in out


def test_an_unknown_skipped_check_is_one_line(testbed, tmp_path):
    result = dry_run(testbed, tmp_path, "--data", "skip_checks=cgroup-v3", check=False)
    assert result.returncode != 0
    assert "k8s-lab: preflight: no check 'cgroup-v3'" in result.stderr
    assert "Traceback" not in result.stderr
