"""The host-prep phase plans under the real pyinfra, with real facts of this machine (@local).

The other phases need systemd and a reachable apt on the target: their plans are checked
against the test bed's hosts in tests/testbed/test_deploy_plans.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k8slab.topology import REPO_ROOT

PYINFRA = Path(sys.executable).with_name("pyinfra")

INVENTORY = """
from k8slab.topology import load
_t = load({config!r})
control_plane = [("@local", {{"lab": _t.host_vars(_t.control_plane), "_sudo": False}})]
"""


@pytest.fixture(scope="module")
def hostprep_run(tmp_path_factory) -> subprocess.CompletedProcess:
    inv = tmp_path_factory.mktemp("plan") / "local_inventory.py"
    inv.write_text(INVENTORY.format(config=str(REPO_ROOT / "inventory" / "lab.yaml")))
    result = subprocess.run(
        [str(PYINFRA), "--dry", "--json", str(inv), "deploys/hostprep.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def hostprep_plan(hostprep_run) -> list[str]:
    return [op["name"].split(" | ", 1)[1] for op in json.loads(hostprep_run.stdout)["plan"]]


def test_pyinfra_says_nothing_of_beta_operations(hostprep_run):
    # pyinfra warns "The `files.block` operation is currently in beta!" once per host: a
    # learner reads it as something wrong with the deploy.
    assert "beta" not in hostprep_run.stderr + hostprep_run.stdout


def test_hostprep_plans_every_step(hostprep_plan):
    for step in (
        "Set the hostname from the topology",
        "List every node in /etc/hosts",
        "Keep swap off after reboot: comment out swap in /etc/fstab",
        "Load overlay and br_netfilter at boot",
        "Keep bridged traffic and forwarding sysctls at boot",
        "Set net.ipv4.ip_forward = 1 now",
        "Install the tools kubeadm and the labs use",
    ):
        assert step in hostprep_plan


def test_modules_are_loaded_before_the_bridge_sysctls(hostprep_plan):
    # net.bridge.* only exists once br_netfilter is loaded; a real kernel with modules
    # would fail "sysctl before modprobe", the test bed's built-in kernel would not notice.
    first_sysctl = min(
        i for i, name in enumerate(hostprep_plan) if "sysctl" in name or name.startswith("Set net.")
    )
    module_steps = [i for i, name in enumerate(hostprep_plan) if "br_netfilter" in name]
    assert module_steps and max(module_steps) < first_sysctl


def _plan(tmp_path: Path, deploy: str, config: Path) -> list[str]:
    inv = tmp_path / "local_inventory.py"
    inv.write_text(INVENTORY.format(config=str(config)))
    result = subprocess.run(
        [str(PYINFRA), "--dry", "--json", str(inv), deploy],
        cwd=REPO_ROOT,
        # @local stands for a node with no image yet, whatever this machine's Docker holds
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [op["name"].split(" | ", 1)[1] for op in json.loads(result.stdout)["plan"]]


@pytest.mark.parametrize("setting", [None, False])
def test_control_plane_decides_weave_datapath_from_the_nodes(tmp_path, setting):
    # The phase reads openvswitch on every node of the inventory (here: this machine alone)
    # when it renders the manifest, before anything runs.
    from k8slab import weave

    config = REPO_ROOT / "inventory" / "lab.yaml"
    if setting is not None:
        config = tmp_path / "lab.yaml"
        text = (REPO_ROOT / "inventory" / "lab.yaml").read_text()
        config.write_text(text + f"weave_fastdp: {str(setting).lower()}\n")
    here = subprocess.run(
        ["sh", "-c", weave.probe_command()], capture_output=True, text=True, check=True
    ).stdout
    state = weave.module_state(here)
    plan = _plan(tmp_path, "deploys/control_plane.py", config)
    (manifest,) = [name for name in plan if name.startswith("Weave Net 2.9.0 manifest, ")]
    if setting is None:
        assert manifest.endswith(weave.why("auto", {"@local": state}))
        mode = "fastdp" if weave.can_fastdp(state) else "sleeve"
        assert manifest.startswith(f"Weave Net 2.9.0 manifest, {mode}")
    else:
        assert manifest == "Weave Net 2.9.0 manifest, sleeve (weave_fastdp false)"


def test_images_phase_sends_master_only_its_archives(tmp_path):
    # @local stands for master (no Docker here: it has no image yet).
    from test_sources import LOCAL_LAB_IMAGES, OFFLINE, docker_save, topology

    (tmp_path / "images").mkdir()
    for name, tags in OFFLINE.items():
        docker_save(tmp_path / "images" / f"{name}.tar", tags)
    config = topology(tmp_path, image_archives="images", labs=LOCAL_LAB_IMAGES)
    plan = _plan(tmp_path, "deploys/images.py", config)
    uploads = sorted(Path(n.split()[-1]).stem for n in plan if n.startswith("Upload /"))
    assert uploads == sorted(
        ["coredns", "kube-proxy", "pause", "weave-kube", "weave-npc"]
        + ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    )
