"""Vagrant VMs made from the topology: what the top-level Vagrantfile makes (plan), and the
VMs' SSH details (`vagrant ssh-config`) written into the topology file (write_ssh).

The Vagrantfile asks `python -m k8slab.cli vagrant plan` rather than reading the YAML itself,
so a file Vagrant accepts is one labctl and the deploy accept too::

    >>> from k8slab.topology import load
    >>> [vm.name for vm in plan(load("inventory/vagrant.yaml")).vms]
    ['master', 'slave1', 'slave2']
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from k8slab.errors import LabctlError
from k8slab.topology import Host, Topology, TopologyError, parse, parse_yaml

BOX = "debian/bookworm64"
BOX_ENV = "LAB_VM_BOX"
# Least and default sizes, in CPUs and MiB: kubeadm init refuses fewer than 2 CPUs and about
# 1.7 GiB; a worker runs Docker, kubelet, kube-proxy and Weave in 1 GiB.
SIZES = {"control-plane": (2, 2048), "worker": (1, 1024)}
SIZE_ENV = {
    "control-plane": ("LAB_VM_CONTROL_PLANE_CPUS", "LAB_VM_CONTROL_PLANE_MEMORY"),
    "worker": ("LAB_VM_WORKER_CPUS", "LAB_VM_WORKER_MEMORY"),
}
# Every VirtualBox VM's NAT adapter is 10.0.2.15 in 10.0.2.0/24, and vagrant-libvirt's
# management network is 192.168.121.0/24: a private network there collides with them.
TAKEN = {
    ipaddress.IPv4Network("10.0.2.0/24"): "Vagrant's NAT adapter (10.0.2.15 on every VM)",
    ipaddress.IPv4Network("192.168.121.0/24"): "vagrant-libvirt's management network",
}
NOT_INSTALLED = (
    'vagrant not found on PATH: install Vagrant (README, "With Vagrant"), then vagrant up'
)


class VagrantError(LabctlError):
    """Vagrant is missing, a VM is not up, or its SSH details cannot be written."""


@dataclass(frozen=True)
class VM:
    name: str
    role: str
    node_ip: str
    cpus: int
    memory: int
    ssh_user: str


@dataclass(frozen=True)
class Plan:
    topology: str
    box: str
    vms: tuple[VM, ...]

    def as_dict(self) -> dict:
        return {"topology": self.topology, "box": self.box, "vms": [asdict(v) for v in self.vms]}


def plan(topo: Topology, env: Mapping[str, str] | None = None) -> Plan:
    """One VM per host, sized by role ($LAB_VM_*), on one private /24 that Vagrant can make.
    A node_ip Vagrant cannot give is one line naming the host, as the topology's own are."""
    env = os.environ if env is None else env
    sizes = {role: _size(role, env) for role in SIZES}
    errors = []
    first = ipaddress.IPv4Interface(f"{topo.hosts[0].node_ip}/24").network
    for i, h in enumerate(topo.hosts):
        try:
            _check_ip(h, first, topo.hosts[0].name)
        except ValueError as e:
            errors.append(f"{topo.path}: hosts[{i}] ({h.name}).node_ip: {e}")
    if errors:
        raise TopologyError("\n".join(errors))
    vms = tuple(
        VM(h.name, h.role, h.node_ip, *sizes[h.role], ssh_user=_user(h)) for h in topo.hosts
    )
    return Plan(str(topo.path), env.get(BOX_ENV) or BOX, vms)


def _user(h: Host) -> str:
    # The user labctl logs in as (k8slab.ssh): the topology's, else the local one.
    return h.ssh_user or os.environ.get("USER") or "root"


def _size(role: str, env: Mapping[str, str]) -> tuple[int, int]:
    values = []
    for var, least, unit in zip(SIZE_ENV[role], SIZES[role], ("CPUs", "MiB"), strict=True):
        raw = env.get(var) or str(least)
        if not raw.isdigit():
            raise VagrantError(f"{var}: {raw!r} is not a whole number of {unit}")
        if int(raw) < least:
            raise VagrantError(f"{var}: {raw} is below the {least} {unit} a {role} needs")
        values.append(int(raw))
    return values[0], values[1]


def _check_ip(h: Host, net: ipaddress.IPv4Network, first: str) -> None:
    ip = ipaddress.IPv4Address(h.node_ip)
    for taken, what in TAKEN.items():
        if ip in taken:
            raise ValueError(
                f"{ip} is in {taken}, {what}: give the VMs another private range, e.g. "
                "export LAB_CONFIG=inventory/vagrant.yaml (192.168.56.x)"
            )
    if ip not in net:
        raise ValueError(
            f"{ip} is not in {first}'s {net}: Vagrant makes one network per /24, so the VMs "
            "would not reach each other"
        )
    if int(ip) & 0xFF in (0, 1, 255):
        raise ValueError(
            f"{ip} is the .0, .1 or .255 of {net}: .1 is this computer's address on the VMs' "
            "network; use .2 to .254"
        )


# --- the VMs' SSH details --------------------------------------------------------------


@dataclass(frozen=True)
class SSH:
    host: str
    port: int
    key: str | None


def parse_ssh_config(text: str) -> dict[str, SSH]:
    """`vagrant ssh-config`'s Host blocks: where each VM's sshd is and the key Vagrant made."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts[0].lower(), parts[1].strip()
        if key == "host":
            current = found.setdefault(value, {})
        elif current is not None:
            # the first IdentityFile is the key Vagrant inserted; later ones are fallbacks
            current.setdefault(key, value[1:-1] if value.startswith('"') else value)
    return {
        name: SSH(v.get("hostname", name), int(v.get("port", "22")), v.get("identityfile"))
        for name, v in found.items()
    }


def ssh_config(names: list[str], vagrant: str = "vagrant") -> dict[str, SSH]:
    """Run `vagrant ssh-config NAME...` here; a VM that is not up is one line naming it."""
    exe = shutil.which(vagrant)
    if exe is None:
        raise VagrantError(NOT_INSTALLED)
    done = subprocess.run(
        [exe, "ssh-config", *names], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    found = parse_ssh_config(done.stdout)
    if done.returncode != 0:
        missing = next((n for n in names if n not in found), names[0] if names else "")
        why = " ".join(done.stderr.split()) or f"exit {done.returncode}"
        if "not yet ready for SSH" in why:
            why = "the VM is not running (vagrant status says why)"
        elif "isn't usable on this system" in why:
            why = why.split("The reason is shown below: ", 1)[-1].split("!")[0]
        elif "target machine is required" in why:
            why = "no Vagrantfile here or above: run it from the k8s-lab folder"
        raise VagrantError(
            f"{missing}: vagrant ssh-config failed: {why}; try: vagrant up {missing}"
        )
    absent = [n for n in names if n not in found]
    if absent:
        raise VagrantError(
            f"{absent[0]}: vagrant ssh-config has no Host {absent[0]}: is the Vagrantfile made "
            "from this topology file ($LAB_CONFIG)?"
        )
    return found


def write_ssh(path: Path, details: Mapping[str, SSH]) -> list[str]:
    """Set ssh_host, ssh_port and ssh_key of the named hosts in the topology file, keeping
    the rest of it (comments, order) as written; returns the hosts whose values changed.
    Several VMs' triggers write at once (vagrant-libvirt brings them up in parallel), so the
    file is read, edited and rewritten under a lock on itself."""
    import fcntl

    with open(path, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read()
        new = set_host_keys(text, path, details)
        topo = parse(parse_yaml(new.encode(), path), path, check_files=False)
        wrong = [
            n
            for n, s in details.items()
            if (topo.host(n).ssh_host, topo.host(n).ssh_port, topo.host(n).ssh_key)
            != (s.host, s.port, s.key)
        ]
        if wrong:
            raise VagrantError(f"{path}: could not set the SSH keys of {', '.join(wrong)}")
        old = parse(parse_yaml(text.encode(), path), path, check_files=False)
        if new != text:
            f.seek(0)
            f.write(new)
            f.truncate()
        return [n for n in details if old.host(n) != topo.host(n)]


def set_host_keys(text: str, path: Path, details: Mapping[str, SSH]) -> str:
    """`text` with each named host's ssh_host/ssh_port/ssh_key set: a value already there is
    replaced in place, a missing key added to the host's mapping (block or flow style)."""
    root = yaml.compose(text)
    hosts = _value(root, "hosts") if isinstance(root, yaml.MappingNode) else None
    if not isinstance(hosts, yaml.SequenceNode):
        raise TopologyError(f"{path}: hosts: expected a list of hosts (name, role, node_ip)")
    edits: list[tuple[int, int, str]] = []
    seen = set()
    for node in hosts.value:
        name = _value(node, "name") if isinstance(node, yaml.MappingNode) else None
        if not isinstance(name, yaml.ScalarNode) or name.value not in details:
            continue
        seen.add(name.value)
        ssh = details[name.value]
        missing = []
        for key, value in (("ssh_host", ssh.host), ("ssh_port", ssh.port), ("ssh_key", ssh.key)):
            old = _value(node, key)
            if old is None:
                missing.append((key, json.dumps(value)))
            else:
                edits.append((old.start_mark.index, old.end_mark.index, json.dumps(value)))
        if missing:
            edits.append(_insert(text, node, missing))
    for name in details:
        if name not in seen:
            raise TopologyError(f"{path}: hosts: no host named {name!r}")
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((v for k, v in mapping.value if k.value == key), None)


def _insert(text: str, mapping: yaml.MappingNode, pairs: list[tuple[str, str]]):
    if mapping.flow_style:
        close = text.rindex("}", 0, mapping.end_mark.index)
        return close, close, "".join(f", {k}: {v}" for k, v in pairs)
    # after the line (and its comment) that ends the mapping's last value
    last = mapping.value[-1][1].end_mark.index
    eol = text.find("\n", last)
    eol = len(text) if eol == -1 else eol
    indent = " " * mapping.value[0][0].start_mark.column
    return eol, eol, "".join(f"\n{indent}{k}: {v}" for k, v in pairs)
