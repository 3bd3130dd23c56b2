"""`labctl machines` without making any: the machines a topology describes, the topology file
`up` writes for them, and bad input through the real CLI (one line, exit 2, nothing made).
Making, booting and destroying machines is tested on the bed (tests/testbed/test_machines*.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import COURSE_TOPOLOGY, course_topology

from k8slab.machines import MachinesError, host, manage, nspawn, spec
from k8slab.topology import load

LABCTL = str(Path(sys.executable).with_name("labctl"))


def topology(tmp_path: Path, **changes) -> Path:
    raw = {**course_topology(), **changes}
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_course_topology_gives_three_machines_on_its_network():
    c = spec.from_topology(load(COURSE_TOPOLOGY))
    assert [(m.name, m.role, m.ip) for m in c.machines] == [
        ("master", "control-plane", "10.0.2.15"),
        ("slave1", "worker", "10.0.2.4"),
        ("slave2", "worker", "10.0.2.5"),
    ]
    assert (c.network, c.gateway, c.bridge, c.user) == (
        "10.0.2.0/24",
        "10.0.2.1",
        "k8slab-default",
        "gurumee",
    )


def test_a_subnet_moves_the_machines_keeping_their_last_number():
    c = spec.from_topology(load(COURSE_TOPOLOGY), "two", "10.0.3.0/24")
    assert [m.ip for m in c.machines] == ["10.0.3.15", "10.0.3.4", "10.0.3.5"]
    assert (c.gateway, c.bridge) == ("10.0.3.1", "k8slab-two")


@pytest.mark.parametrize(
    ("node_ips", "name", "subnet", "says"),
    [
        ({"slave1": "10.0.3.4"}, "default", None, "share one /24 network"),
        ({"master": "10.0.2.1"}, "default", None, "is the machines' gateway"),
        (None, "Class_A", None, "cluster name 'Class_A': use 1 to 8 lower-case"),
        (None, "toolongname", None, "use 1 to 8 lower-case letters"),
        (None, "two", "10.0.0.0/16", "--subnet 10.0.0.0/16: give an IPv4 /24"),
        (None, "two", "ten", "--subnet ten: not a network"),
    ],
)
def test_machines_the_topology_cannot_give(tmp_path, node_ips, name, subnet, says):
    raw = course_topology(node_ips) if node_ips else course_topology()
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(MachinesError, match=says.replace("(", r"\(").replace(".", r"\.")):
        spec.from_topology(load(path), name, subnet)


def test_the_written_topology_is_what_the_deploy_needs_of_a_container_host(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "STATE_ROOT", tmp_path / "state")
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "cri-dockerd.tgz").write_bytes(b"stand-in")
    source = topology(tmp_path, cri_dockerd_url="offline/cri-dockerd.tgz", docker_source="docker")
    c = spec.from_topology(load(source)).but(offline=True)
    c.state.mkdir(parents=True)
    needs = host.Needs(False, False, True, True, (), False)
    c = manage._write_topology(c, load(source), needs, ask=None)

    written = load(c.topology)
    assert written.hosts[0].ssh_key == str(c.key) and written.hosts[0].ssh_user == "gurumee"
    assert [h.ssh_host for h in written.hosts] == ["10.0.2.15", "10.0.2.4", "10.0.2.5"]
    assert written.allow_cgroup_v1 and not written.kube_proxy_tune_conntrack
    assert not written.weave_fastdp and written.docker_source == "distro"
    raw = yaml.safe_load(c.topology.read_text())
    assert raw["cri_dockerd_url"] == str(tmp_path / "offline" / "cri-dockerd.tgz")  # absolute


def test_an_edited_topology_is_kept_unless_the_user_agrees(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "STATE_ROOT", tmp_path / "state")
    source = load(topology(tmp_path))
    needs = host.Needs(True, False, False, False, (), True)
    c = spec.from_topology(source)
    c.state.mkdir(parents=True)
    c = manage._write_topology(c, source, needs, ask=None)
    again = manage._write_topology(c, source, needs, ask=None)  # unedited: rewritten quietly
    assert again.topology_digest == c.topology_digest
    c.topology.write_text(c.topology.read_text() + "# my note\n")
    with pytest.raises(MachinesError, match="was edited since up wrote it: kept as it is"):
        manage._write_topology(c, source, needs, ask=lambda q: False)
    assert c.topology.read_text().endswith("# my note\n")
    manage._write_topology(c, source, needs, ask=lambda q: True)
    assert "# my note" not in c.topology.read_text()
    assert "allow_cgroup_v1: false" in c.topology.read_text()  # cgroup v2 host


def test_the_virtualbox_shape_puts_the_default_route_on_a_nat_interface(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "STATE_ROOT", tmp_path / "state")
    c = spec.from_topology(load(COURSE_TOPOLOGY), "vbox", "192.168.56.0/24").but(offline=True)
    needs = host.Needs(False, False, False, False, (), False)

    def network_files(c: spec.Cluster) -> dict[str, str]:
        root = nspawn.root_of(c, "slave1")
        (root / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/passwd").write_text("gurumee:x:1000:1000::/home/gurumee:/bin/sh\n")
        (root / "home/gurumee/.ssh").mkdir(parents=True, exist_ok=True)
        nspawn.user_key(c)
        nspawn.configure(c, c.machine("slave1"), needs)
        return {p.name: p.read_text() for p in (root / "etc/systemd/network").iterdir()}

    plain = network_files(c)
    assert list(plain) == ["80-container-host0.network"]
    assert "Address=192.168.56.4/24" in plain["80-container-host0.network"]
    assert "Destination=0.0.0.0/0" in plain["80-container-host0.network"]
    assert not any(
        a.startswith("--network-veth-extra") for a in nspawn.nspawn_argv(c, c.machines[1], needs)
    )

    vbox = c.but(nat_nic=True)
    files = network_files(vbox)
    host0, nat0 = files["80-container-host0.network"], files["81-container-nat0.network"]
    assert "Address=192.168.56.4/24" in host0 and "[Route]" not in host0
    assert "Name=nat0" in nat0
    assert "Address=10.0.2.15/24" in nat0 and "Gateway=10.0.2.2" in nat0
    assert "--network-veth-extra=nat-vbox-1:nat0" in nspawn.nspawn_argv(
        vbox, vbox.machines[1], needs
    )
    assert len(vbox.nat_link("slave1")) <= 15
    # back to one interface at the next boot
    assert list(network_files(c)) == ["80-container-host0.network"]


def labctl(tmp_path: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    env["K8SLAB_MACHINES_STATE"] = str(tmp_path / "state")
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run(
        [*prefix, LABCTL, "--config", str(COURSE_TOPOLOGY), "machines", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("status", "--cluster", "nosuch"), "Error: no machines cluster 'nosuch' on this host"),
        (("destroy", "--cluster", "nosuch", "--yes"), "Error: no machines cluster 'nosuch'"),
        (("ssh", "--cluster", "nosuch", "master"), "Error: no machines cluster 'nosuch'"),
        (("up", "--cluster", "Bad_Name"), "Error: cluster name 'Bad_Name': use 1 to 8"),
        (("up", "--subnet", "10.0.0.0/16"), "Error: --subnet 10.0.0.0/16: give an IPv4 /24"),
        (("up", "--nat-nic"), "Error: --nat-nic needs --offline: the NAT-like interface"),
        (
            ("up", "--nat-nic", "--offline"),
            "Error: --nat-nic: the machines' 10.0.2.0/24 is the NAT's own 10.0.2.0/24, as "
            "VirtualBox's host-only network cannot be: give --subnet 192.168.56.0/24",
        ),
    ],
)
def test_bad_input_is_one_line_and_makes_nothing(tmp_path, args, says):
    r = labctl(tmp_path, *args)
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == [r.stderr.splitlines()[0]] and r.stderr.startswith(says), r
    assert not (tmp_path / "state").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_up_without_root_says_so_first_and_makes_nothing(tmp_path):
    tmp_path.chmod(0o777)
    r = labctl(tmp_path, "up", user="65534")
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert lines[0] == "Error: root: lab machines need root (a bridge, containers): run with sudo"
    assert all(line.startswith("Error: ") for line in lines) and "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()


def test_a_state_file_with_fields_a_newer_labctl_wrote_still_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "STATE_ROOT", tmp_path / "state")
    c = spec.from_topology(load(COURSE_TOPOLOGY), "old")
    c.save()
    path = c.state / "machines.json"
    path.write_text(path.read_text().replace('"name": "old"', '"name": "old", "later": 1', 1))
    assert spec.recorded("old") == c


def test_inotify_limits_are_raised_once_and_put_back_as_found(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "PROC_SYS", tmp_path)
    (tmp_path / "fs" / "inotify").mkdir(parents=True)
    (tmp_path / "fs/inotify/max_user_instances").write_text("128\n")
    (tmp_path / "fs/inotify/max_user_watches").write_text("1048576\n")  # already above
    found = host.raise_inotify()
    assert found == (("fs/inotify/max_user_instances", "128"),)
    assert (tmp_path / "fs/inotify/max_user_instances").read_text() == "512\n"
    assert host.raise_inotify() == ()  # a second cluster finds them raised
    host.restore_inotify(found)
    assert (tmp_path / "fs/inotify/max_user_instances").read_text() == "128\n"
    assert (tmp_path / "fs/inotify/max_user_watches").read_text() == "1048576\n"


def test_a_root_removal_cut_short_leaves_a_root_the_next_up_makes_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "STATE_ROOT", tmp_path / "state")
    c = spec.from_topology(load(COURSE_TOPOLOGY), "cut", None)
    root = nspawn.root_of(c, "slave1")
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("slave1\n")
    (root / ".k8s-lab-machine").write_text("cut slave1\n")
    assert nspawn.has_root(c, "slave1")

    def interrupted(path, *a, **kw):  # Ctrl-C while the tree is half gone
        (Path(path) / "etc/hostname").unlink()
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(nspawn.shutil, "rmtree", interrupted)
        with pytest.raises(KeyboardInterrupt):
            nspawn.remove_root(c, "slave1")
    assert root.exists() and not nspawn.has_root(c, "slave1")
    nspawn.remove_root(c, "slave1")
    assert not root.exists()
