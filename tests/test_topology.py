"""The topology file: defaults load, and every bad value is one line naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k8slab.topology import REPO_ROOT, TopologyError, load

DEFAULT = REPO_ROOT / "inventory" / "lab.yaml"


def write(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(DEFAULT.read_text())
    edit(data)
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_course_cluster():
    topo = load(DEFAULT)
    assert [(h.name, h.role, h.node_ip) for h in topo.hosts] == [
        ("master", "control-plane", "10.0.2.15"),
        ("slave1", "worker", "10.0.2.4"),
        ("slave2", "worker", "10.0.2.5"),
    ]
    assert topo.kube_pod_subnet == "10.32.0.0/12"
    assert topo.kube_service_subnet == "10.96.0.0/12"
    assert topo.kube_version == "1.36"
    assert topo.control_plane.ssh_host == "10.0.2.15" and topo.control_plane.ssh_port == 22
    assert topo.weave_image_repo == "docker.io/rajchaudhuri"


def test_ssh_address_and_port_may_differ_from_node_ip(tmp_path):
    def edit(d):
        d["hosts"][1].update(ssh_host="127.0.0.1", ssh_port=2222, ssh_user="vagrant")

    host = load(write(tmp_path, edit)).host("slave1")
    assert (host.node_ip, host.ssh_host, host.ssh_port, host.ssh_user) == (
        "10.0.2.4",
        "127.0.0.1",
        2222,
        "vagrant",
    )


def test_any_number_of_workers(tmp_path):
    def edit(d):
        d["hosts"].append({"name": "slave3", "role": "worker", "node_ip": "10.0.2.6"})

    topo = load(write(tmp_path, edit))
    assert [h.name for h in topo.workers] == ["slave1", "slave2", "slave3"]
    assert [n["name"] for n in topo.cluster_vars()["nodes"]][-1] == "slave3"


def _host(i, **kv):
    def edit(d):
        d["hosts"][i].update(kv)

    return edit


def _top(**kv):
    def edit(d):
        d.update(kv)

    return edit


BAD = [
    (
        _host(1, node_ip="10.0.2.300"),
        "hosts[1] (slave1).node_ip: '10.0.2.300' is not an IPv4 address",
    ),
    (_host(2, node_ip="10.0.2.4"), "hosts[2].node_ip: 10.0.2.4 is also used by hosts[1]"),
    (_host(2, name="slave1"), "hosts[2].name: slave1 is also used by hosts[1]"),
    (_host(0, role="worker"), "hosts: exactly one host needs role: control-plane (found: none)"),
    (_host(1, role="boss"), "hosts[1] (slave1).role: 'boss' is not one of control-plane, worker"),
    (_host(1, name="Slave_1"), "hosts[1].name: 'Slave_1' is not a valid hostname"),
    (_host(1, ssh_port=70000), "hosts[1] (slave1).ssh_port: 70000 is not a TCP port"),
    (_host(1, node_ipp="10.0.2.9"), "hosts[1] (slave1).node_ipp: unknown key (did you mean"),
    (_top(kube_version="1.24"), "kube_version: '1.24' is not a supported minor (supported: 1.35"),
    (_top(kube_pod_subnet="10.96.0.0/16"), "kube_service_subnet: 10.96.0.0/12 overlaps"),
    (_top(kube_pod_subnet="10.0.0.0/8"), "kube_service_subnet: 10.96.0.0/12 overlaps"),
    (
        _top(kube_pod_subnet="10.0.0.0/16", kube_service_subnet="10.96.0.0/12"),
        "kube_pod_subnet: 10.0.0.0/16 contains node_ip 10.0.2.15 of host master",
    ),
    (_top(kube_service_subnet="10.0.2.0/24"), "contains node_ip 10.0.2.15 of host master"),
    (_top(kube_pod_subnet="10.32.0.0/33"), "kube_pod_subnet: '10.32.0.0/33' is not an IPv4 CIDR"),
    (_top(docker_source="snap"), "docker_source: 'snap' is not one of docker, distro"),
    (_top(weave_iptables_backend="auto"), "weave_iptables_backend: 'auto' is not one of nft"),
    (_top(cri_dockerd_version="latest"), "cri_dockerd_version: 'latest' is not a version"),
    (_top(cri_dockerd_sha256="abc"), "cri_dockerd_sha256: expected 64 lowercase hex digits"),
    (_top(kube_verison="1.35"), "kube_verison: unknown key (did you mean 'kube_version'?)"),
    (_top(hosts=[]), "hosts: expected a list of hosts"),
]


@pytest.mark.parametrize(
    "edit,message", BAD, ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_bad_value_is_one_line_naming_the_key(tmp_path, edit, message):
    path = write(tmp_path, edit)
    with pytest.raises(TopologyError) as err:
        load(path)
    text = str(err.value)
    assert message in text
    assert text.startswith(str(path))
    assert "\n" not in text


def test_no_worker_is_rejected(tmp_path):
    path = write(tmp_path, lambda d: d.update(hosts=d["hosts"][:1]))
    with pytest.raises(TopologyError, match="at least one host needs role: worker"):
        load(path)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - name: master\n    role: [control-plane\n")
    with pytest.raises(TopologyError, match=r"lab.yaml: line \d+: malformed YAML"):
        load(path)


def test_missing_file_says_where_it_looked(tmp_path):
    with pytest.raises(TopologyError, match="not found .looked at: --config, \\$LAB_CONFIG"):
        load(tmp_path / "nope.yaml")


def run_inventory(config: Path) -> subprocess.CompletedProcess:
    """Load inventory/lab.py the way pyinfra does, in a fresh interpreter."""
    env = {**os.environ, "LAB_CONFIG": str(config)}
    code = "import runpy; runpy.run_path('inventory/lab.py')"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_inventory_rejects_a_bad_file_in_one_line_without_traceback(tmp_path):
    result = run_inventory(write(tmp_path, _host(1, node_ip="300.1.1.1")))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"k8s-lab: {tmp_path / 'lab.yaml'}: hosts[1] (slave1).node_ip: "
        "'300.1.1.1' is not an IPv4 address"
    ]


def test_inventory_groups_and_host_data_come_from_the_file(tmp_path):
    def edit(d):
        d["hosts"][0].update(ssh_host="127.0.0.1", ssh_port=2200)

    env = {**os.environ, "LAB_CONFIG": str(write(tmp_path, edit))}
    code = (
        "import json, runpy; g = runpy.run_path('inventory/lab.py'); "
        "print(json.dumps({k: g[k] for k in ('control_plane', 'workers')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    groups = yaml.safe_load(out.stdout)
    ((name, data),) = groups["control_plane"]
    assert name == "master"
    assert (data["ssh_hostname"], data["ssh_port"]) == ("127.0.0.1", 2200)
    assert data["lab"]["node_ip"] == "10.0.2.15"
    assert data["lab"]["kube_api_address"] == "10.0.2.15"
    assert [n for n, _ in groups["workers"]] == ["slave1", "slave2"]
