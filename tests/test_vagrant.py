"""The top-level Vagrantfile and `labctl vagrant`: Vagrant 2.3.4 validates the VMs made from the
shipped and a four-host topology for both providers, refuses bad ones with the topology's own
line, and the VMs' SSH details (`vagrant ssh-config`) land in the topology file.

No VM runs here: VirtualBox is not installed (its block is read back through the
Vagrantfile's LAB_VAGRANT_SHOW), and the `vagrant ssh-config` outputs are Vagrant's own
template rendered with a provider's values (tests/fixtures/README.md)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import FIXTURES

from k8slab import vagrant as vg
from k8slab.cli import main
from k8slab.topology import TopologyError, load

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "inventory" / "vagrant.yaml"
MADE_HERE = FIXTURES / "made-here"
SIZE_VARS = [*vg.SIZE_ENV["control-plane"], *vg.SIZE_ENV["worker"], vg.BOX_ENV]

needs_vagrant = pytest.mark.skipif(
    shutil.which("vagrant") is None and os.environ.get("CI") != "true",
    reason="vagrant is not installed (CI installs Debian's vagrant and vagrant-libvirt)",
)


@pytest.fixture(autouse=True)
def _no_size_overrides(monkeypatch):
    for var in SIZE_VARS:
        monkeypatch.delenv(var, raising=False)


def four_hosts(tmp_path: Path) -> Path:
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["hosts"].append({"name": "slave3", "role": "worker", "node_ip": "192.168.56.13"})
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def vagrant(tmp_path: Path, topology: Path, *args: str, provider: str, **env: str):
    """`vagrant ARGS` on the clone's Vagrantfile with `topology`, its state kept in tmp_path;
    returns the run and what the Vagrantfile handed each provider (one row per VM)."""
    show = tmp_path / f"show-{provider}.jsonl"
    show.unlink(missing_ok=True)
    run = subprocess.run(
        ["vagrant", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            **env,
            "LAB_CONFIG": str(topology),
            "LAB_PYTHON": sys.executable,
            "LAB_VAGRANT_SHOW": str(show),
            "VAGRANT_DEFAULT_PROVIDER": provider,
            "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),
            "VAGRANT_HOME": str(tmp_path.parent / "vagrant-home"),
            "VAGRANT_NO_COLOR": "1",
        },
    )
    rows = [json.loads(line) for line in show.read_text().splitlines()] if show.exists() else []
    shown = {(r["vm"], r["provider"]): r for r in rows}  # Vagrant evaluates each block often
    return run, shown


# --- vagrant validate -------------------------------------------------------------------


@needs_vagrant
@pytest.mark.parametrize("topology", ["shipped", "four hosts"])
def test_libvirt_validates_its_provider_block(tmp_path, topology):
    path = SHIPPED if topology == "shipped" else four_hosts(tmp_path)
    run, shown = vagrant(tmp_path, path, "validate", provider="libvirt")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Vagrantfile validated successfully." in run.stdout
    assert "Ignoring provider config" not in run.stdout  # libvirt's own checks ran
    expected = {vm.name: vm for vm in vg.plan(load(path)).vms}
    assert {vm for vm, p in shown if p == "libvirt"} == set(expected)
    for name, vm in expected.items():
        row = shown[name, "libvirt"]
        assert row["settings"] == {"cpus": vm.cpus, "memory": vm.memory}
        assert row["networks"] == [["private_network", {"ip": vm.node_ip, "protocol": "tcp"}]]


@needs_vagrant
@pytest.mark.parametrize("topology", ["shipped", "four hosts"])
def test_virtualbox_block_holds_the_topologys_values(tmp_path, topology):
    # VBoxManage is missing, so Vagrant validates all but the provider block, which the
    # Vagrantfile shows: the modifyvm arguments VirtualBox would get, per VM.
    path = SHIPPED if topology == "shipped" else four_hosts(tmp_path)
    run, shown = vagrant(tmp_path, path, "validate", "--ignore-provider", provider="virtualbox")
    assert run.returncode == 0, run.stdout + run.stderr
    names = ["master", "slave1", "slave2"] + (["slave3"] if topology == "four hosts" else [])
    ips = [f"192.168.56.{10 + i}" for i in range(len(names))]
    assert sorted(vm for vm, p in shown if p == "virtualbox") == sorted(names)
    for name, ip in zip(names, ips, strict=True):
        row = shown[name, "virtualbox"]
        cpus, memory = (2, "2048") if name == "master" else (1, "1024")
        assert row["settings"] == [
            ["pre-boot", ["modifyvm", "id", "--cpus", cpus]],
            ["pre-boot", ["modifyvm", "id", "--memory", memory]],
        ]
        assert row["networks"] == [["private_network", {"ip": ip, "protocol": "tcp"}]]
        assert row["hostname"] == name
        assert row["provision"] == [["student"]]


@needs_vagrant
def test_sizes_and_box_are_overridden_from_the_environment(tmp_path):
    env = {"LAB_VM_WORKER_MEMORY": "1536", "LAB_VM_CONTROL_PLANE_CPUS": "4"}
    run, shown = vagrant(
        tmp_path, SHIPPED, "validate", "--ignore-provider", provider="virtualbox", **env
    )
    assert run.returncode == 0, run.stderr
    assert ["pre-boot", ["modifyvm", "id", "--cpus", 4]] in shown["master", "virtualbox"][
        "settings"
    ]
    assert ["pre-boot", ["modifyvm", "id", "--memory", "1536"]] in shown["slave2", "virtualbox"][
        "settings"
    ]
    assert vg.plan(load(SHIPPED), {"LAB_VM_BOX": "bento/ubuntu-24.04"}).box == "bento/ubuntu-24.04"


def bad_topologies(tmp_path: Path) -> dict[str, Path]:
    raw = yaml.safe_load(SHIPPED.read_text())
    cases = {
        "course's 10.0.2.x": ROOT / "inventory" / "lab.yaml",
        "not an address": {1: {"node_ip": "192.168.56.300"}},
        "two subnets": {2: {"node_ip": "192.168.57.12"}},
        "this computer's .1": {0: {"node_ip": "192.168.56.1"}},
        "libvirt's management network": {1: {"node_ip": "192.168.121.11"}},
        "no control plane": {0: {"role": "worker"}},
    }
    paths = {}
    for case, change in cases.items():
        if isinstance(change, Path):
            paths[case] = change
            continue
        edited = json.loads(json.dumps(raw))
        for i, keys in change.items():
            edited["hosts"][i].update(keys)
        paths[case] = tmp_path / f"{case.replace(' ', '-')}.yaml"
        paths[case].write_text(yaml.safe_dump(edited))
    return paths


def expected_lines(path: Path) -> list[str]:
    try:
        vg.plan(load(path))
    except TopologyError as e:
        return str(e).splitlines()
    raise AssertionError(f"{path} was accepted")


@needs_vagrant
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_a_bad_topology_is_refused_with_the_topologys_own_line(tmp_path, provider):
    # the Vagrantfile passes on whatever labctl says: a problem only Vagrant has, several
    # lines, and one of the topology's own checks; the others are asserted below, in Python
    cases = bad_topologies(tmp_path)
    for case in ("course's 10.0.2.x", "not an address", "no control plane"):
        path = cases[case]
        run, shown = vagrant(tmp_path, path, "validate", provider=provider)
        assert run.returncode != 0, case
        lines = expected_lines(path)
        assert run.stderr.splitlines() == [f"k8s-lab: {line}" for line in lines], case
        assert shown == {}, case


def test_the_refusals_name_the_key_and_the_fix(tmp_path):
    said = {case: expected_lines(path) for case, path in bad_topologies(tmp_path).items()}
    assert len(said["course's 10.0.2.x"]) == 3
    assert said["course's 10.0.2.x"][0] == (
        f"{ROOT}/inventory/lab.yaml: hosts[0] (master).node_ip: 10.0.2.15 is in 10.0.2.0/24, "
        "Vagrant's NAT adapter (10.0.2.15 on every VM): give the VMs another private range, "
        "e.g. export LAB_CONFIG=inventory/vagrant.yaml (192.168.56.x)"
    )
    assert said["not an address"] == [
        f"{tmp_path}/not-an-address.yaml: hosts[1] (slave1).node_ip: '192.168.56.300' is not "
        "an IPv4 address"
    ]
    assert said["two subnets"] == [
        f"{tmp_path}/two-subnets.yaml: hosts[2] (slave2).node_ip: 192.168.57.12 is not in "
        "master's 192.168.56.0/24: Vagrant makes one network per /24, so the VMs would not "
        "reach each other"
    ]
    assert "is the .0, .1 or .255 of 192.168.56.0/24" in said["this computer's .1"][0]
    assert "vagrant-libvirt's management network" in said["libvirt's management network"][0]
    assert said["no control plane"][0].endswith(
        "hosts: exactly one host needs role: control-plane (found: none)"
    )


@pytest.mark.parametrize(
    "var, value, problem",
    [
        ("LAB_VM_CONTROL_PLANE_CPUS", "1", "1 is below the 2 CPUs a control-plane needs"),
        ("LAB_VM_CONTROL_PLANE_MEMORY", "1024", "1024 is below the 2048 MiB"),
        ("LAB_VM_WORKER_MEMORY", "1G", "'1G' is not a whole number of MiB"),
    ],
)
def test_a_size_below_kubeadms_is_one_line(monkeypatch, var, value, problem):
    monkeypatch.setenv(var, value)
    result = CliRunner().invoke(main, ["--config", str(SHIPPED), "vagrant", "plan"])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: {var}: {problem}")


def test_plan_json_is_what_the_vagrantfile_reads():
    result = CliRunner().invoke(
        main, ["--config", str(SHIPPED), "vagrant", "plan", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["box"] == "debian/bookworm64"
    assert [(v["name"], v["node_ip"], v["cpus"], v["memory"]) for v in data["vms"]] == [
        ("master", "192.168.56.10", 2, 2048),
        ("slave1", "192.168.56.11", 1, 1024),
        ("slave2", "192.168.56.12", 1, 1024),
    ]
    assert {v["ssh_user"] for v in data["vms"]} == {"student"}


# --- labctl vagrant ssh-config ----------------------------------------------------------


def fake_vagrant(tmp_path: Path, stdout: Path | None, stderr: Path | None = None, rc=0) -> Path:
    """A `vagrant` on PATH that prints a fixture (what it was asked is logged beside it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "vagrant"
    out = f"/bin/cat '{stdout}'" if stdout else ":"
    err = f"/bin/cat '{stderr}' >&2" if stderr else ":"
    exe.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/asked"\n{out}\n{err}\nexit {rc}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def labctl_ssh_config(topology: Path, bin_dir: Path | None, *names: str):
    path = str(bin_dir) if bin_dir else "/nonexistent"
    return CliRunner().invoke(
        main, ["--config", str(topology), "vagrant", "ssh-config", *names], env={"PATH": path}
    )


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt"])
def test_ssh_config_writes_each_hosts_address_port_and_key(tmp_path, provider):
    topology = tmp_path / "vagrant.yaml"
    shutil.copy(SHIPPED, topology)
    fixture = MADE_HERE / f"vagrant-ssh-config.{provider}.txt"
    result = labctl_ssh_config(topology, fake_vagrant(tmp_path, fixture))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "asked").read_text() == "ssh-config master slave1 slave2\n"
    topo = load(topology)
    got = {h.name: (h.ssh_host, h.ssh_port, h.ssh_key, h.ssh_user) for h in topo.hosts}
    if provider == "virtualbox":
        folder = "/Users/minsu/Documents/k8s lab/.vagrant/machines"
        ports = {"master": 2222, "slave1": 2200, "slave2": 2201}
        want = {
            n: ("127.0.0.1", p, f"{folder}/{n}/virtualbox/private_key", "student")
            for n, p in ports.items()
        }
    else:
        folder = "/home/student/k8s-lab/.vagrant/machines"
        addresses = {"master": "57", "slave1": "112", "slave2": "203"}
        want = {
            n: (f"192.168.121.{a}", 22, f"{folder}/{n}/libvirt/private_key", "student")
            for n, a in addresses.items()
        }
    assert got == want
    assert [h.node_ip for h in topo.hosts] == ["192.168.56.10", "192.168.56.11", "192.168.56.12"]
    text = topology.read_text()
    assert text.startswith(SHIPPED.read_text().split("hosts:")[0])  # the comments stay
    assert "master: " in result.output and "(written)" in result.output
    again = labctl_ssh_config(topology, fake_vagrant(tmp_path, fixture))
    assert again.exit_code == 0 and "(written)" not in again.output
    assert topology.read_text() == text


def test_ssh_config_replaces_values_and_keeps_a_flow_style_file(tmp_path):
    topology = tmp_path / "lab.yaml"
    topology.write_text(
        "ssh_user: student   # mine\n"
        "hosts:\n"
        "  - {name: master, role: control-plane, node_ip: 192.168.56.10, ssh_port: 2221}\n"
        "  - {name: slave1, role: worker,        node_ip: 192.168.56.11}  # the first worker\n"
        "  - name: slave2\n"
        "    role: worker\n"
        "    node_ip: 192.168.56.12   # last\n"
        "    ssh_host: 127.0.0.1\n"
        "# the end\n"
    )
    fixture = MADE_HERE / "vagrant-ssh-config.virtualbox.txt"
    result = labctl_ssh_config(topology, fake_vagrant(tmp_path, fixture), "slave1", "slave2")
    assert result.exit_code == 0, result.output
    key = "/Users/minsu/Documents/k8s lab/.vagrant/machines/{}/virtualbox/private_key"
    assert topology.read_text() == (
        "ssh_user: student   # mine\n"
        "hosts:\n"
        "  - {name: master, role: control-plane, node_ip: 192.168.56.10, ssh_port: 2221}\n"
        "  - {name: slave1, role: worker,        node_ip: 192.168.56.11"
        f', ssh_host: "127.0.0.1", ssh_port: 2200, ssh_key: "{key.format("slave1")}"}}'
        "  # the first worker\n"
        "  - name: slave2\n"
        "    role: worker\n"
        "    node_ip: 192.168.56.12   # last\n"
        '    ssh_host: "127.0.0.1"\n'
        "    ssh_port: 2201\n"
        f'    ssh_key: "{key.format("slave2")}"\n'
        "# the end\n"
    )


def test_no_vagrant_is_one_line(tmp_path):
    topology = tmp_path / "vagrant.yaml"
    shutil.copy(SHIPPED, topology)
    result = labctl_ssh_config(topology, None)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        'Error: vagrant not found on PATH: install Vagrant (README, "With Vagrant"), then '
        "vagrant up"
    ]
    assert topology.read_text() == SHIPPED.read_text()


@pytest.mark.parametrize(
    "fixture, why",
    [
        ("not-ready", "the VM is not running (vagrant status says why)"),
        ("no-virtualbox", "Vagrant could not detect VirtualBox"),
        ("no-vagrantfile", "no Vagrantfile here or above: run it from the k8s-lab folder"),
    ],
)
def test_a_vm_that_is_not_up_is_one_line_naming_it(tmp_path, fixture, why):
    topology = tmp_path / "vagrant.yaml"
    shutil.copy(SHIPPED, topology)
    # master's block printed, then Vagrant stopped at slave1, as it does
    master = tmp_path / "master.txt"
    master.write_text(
        (MADE_HERE / "vagrant-ssh-config.virtualbox.txt").read_text().split("\nHost slave1")[0]
    )
    stderr = MADE_HERE / f"vagrant-ssh-config.{fixture}.err"
    result = labctl_ssh_config(topology, fake_vagrant(tmp_path, master, stderr, rc=1))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"Error: slave1: vagrant ssh-config failed: {why}; try: vagrant up slave1"
    ]
    assert topology.read_text() == SHIPPED.read_text()


def test_a_host_vagrant_does_not_know_is_one_line(tmp_path):
    topology = four_hosts(tmp_path)
    fixture = MADE_HERE / "vagrant-ssh-config.libvirt.txt"
    result = labctl_ssh_config(topology, fake_vagrant(tmp_path, fixture))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: slave3: vagrant ssh-config has no Host slave3: is the Vagrantfile made from "
        "this topology file ($LAB_CONFIG)?"
    ]


def test_the_vagrantfile_runs_the_command_after_up_and_reload():
    text = (ROOT / "Vagrantfile").read_text()
    assert "node.trigger.after :up, :reload do |t|" in text
    assert 'labctl("vagrant", "ssh-config", vm["name"])' in text


def test_vms_writing_at_once_lose_no_host(tmp_path, monkeypatch):
    # vagrant-libvirt brings the VMs up in parallel, each trigger writing its own host: three
    # processes that each take 0.3 s between reading and writing the file
    import multiprocessing
    import time

    topology = tmp_path / "vagrant.yaml"
    shutil.copy(SHIPPED, topology)
    found = vg.parse_ssh_config((MADE_HERE / "vagrant-ssh-config.libvirt.txt").read_text())
    edit = vg.set_host_keys

    def slow(*args):
        time.sleep(0.3)
        return edit(*args)

    monkeypatch.setattr(vg, "set_host_keys", slow)
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=vg.write_ssh, args=(topology, {n: s})) for n, s in found.items()]
    for w in writers:
        w.start()
    for w in writers:
        w.join(10)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    assert {h.name: h.ssh_host for h in load(topology).hosts} == {
        "master": "192.168.121.57",
        "slave1": "192.168.121.112",
        "slave2": "192.168.121.203",
    }
