"""Which machines a cluster has, its network, and where its files live.

A cluster is made from the topology file once (``from_topology``) and recorded in its state
folder (``machines.json``), so ``status``, ``stop`` or ``destroy`` act on what ``up`` made even
after the topology changed, and ``destroy`` knows exactly what to undo.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from k8slab.machines import MachinesError

DEFAULT_CLUSTER = "default"
# Overridable for tests and for hosts whose /var is small; the same for every cluster.
STATE_ROOT = Path(os.environ.get("K8SLAB_MACHINES_STATE") or "/var/lib/k8s-lab/machines")
CACHE_ROOT = Path(os.environ.get("K8SLAB_MACHINES_CACHE") or "/var/cache/k8s-lab/machines")
DEFAULT_USER = "k8slab"
# What VirtualBox's NAT adapter gives every VM (its DHCP), the same on each.
NAT_ADDRESS, NAT_GATEWAY, NAT_NETWORK = "10.0.2.15", "10.0.2.2", "10.0.2.0/24"
# Bridge names are at most 15 characters: "k8slab-" leaves 8 for the cluster's name.
_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Machine:
    name: str
    role: str
    ip: str


@dataclass(frozen=True)
class Cluster:
    name: str
    network: str  # the /24 the machines share, e.g. 10.0.2.0/24
    user: str  # the topology's ssh_user, with NOPASSWD sudo on every machine
    machines: tuple[Machine, ...]
    # Machines made and booted on request only (`start NAME`), not in the topology written:
    # a worker to add later, as a learner adds a VM to a running cluster.
    spares: tuple[Machine, ...] = ()
    source: str = ""  # the topology file it was made from
    offline: bool = False
    mirror: str = ""  # the Debian mirror the roots and the machines' apt use
    dns: str = ""  # the resolver the machines' DNS forwarder asks ("" = this host's)
    # What `up` changed on this host, undone by `destroy`: iptables rules (table, rule args)
    # and the ip_forward value it found, when it had to turn forwarding on.
    added_rules: tuple[tuple[str, ...], ...] = ()
    ip_forward_was: str | None = None
    inotify_was: tuple[tuple[str, str], ...] = ()  # the limits up raised, as it found them
    topology_digest: str = ""  # sha256 of the lab.yaml `up` wrote (edited since = ask)
    # VirtualBox's shape: a second interface per machine holding NAT_ADDRESS and the default
    # route, as the NAT adapter gives every VM; the node_ip stays on the bridge.
    nat_nic: bool = False

    @property
    def all(self) -> tuple[Machine, ...]:
        return self.machines + self.spares

    def machine(self, name: str) -> Machine:
        for m in self.all:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.all)
        raise MachinesError(f"no machine {name!r} in cluster {self.name} (machines: {names})")

    @property
    def bridge(self) -> str:
        return f"k8slab-{self.name}"

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.network)[1])

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.network).prefixlen

    @property
    def state(self) -> Path:
        return state_dir(self.name)

    @property
    def roots(self) -> Path:
        return self.state / "roots"

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def topology(self) -> Path:
        return self.state / "lab.yaml"

    def nat_link(self, name: str) -> str:
        """The host end of a machine's NAT-like interface (at most 15 characters)."""
        return f"nat-{self.name}-{[m.name for m in self.all].index(name)}"

    @property
    def cgroup(self) -> str:
        return f"k8s-lab/{self.name}"

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        tmp = self.state / "machines.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.rename(self.state / "machines.json")

    def but(self, **changes: Any) -> Cluster:
        return replace(self, **changes)


def state_dir(name: str) -> Path:
    return STATE_ROOT / name


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise MachinesError(
            f"cluster name {name!r}: use 1 to 8 lower-case letters and digits, starting with a "
            "letter (it names the bridge k8slab-NAME)"
        )
    return name


def recorded(name: str) -> Cluster | None:
    """The cluster `up` made under this name, or None."""
    path = state_dir(check_name(name)) / "machines.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise MachinesError(f"{path}: unreadable ({e}); remove the folder by hand") from None
    raw["machines"] = tuple(Machine(**m) for m in raw["machines"])
    raw["spares"] = tuple(Machine(**m) for m in raw.get("spares", ()))
    raw["added_rules"] = tuple(tuple(r) for r in raw.get("added_rules", ()))
    raw["inotify_was"] = tuple(tuple(r) for r in raw.get("inotify_was", ()))
    # A newer labctl may have recorded more: what this one does not know, it leaves alone.
    known = {f.name for f in fields(Cluster)}
    return Cluster(**{k: v for k, v in raw.items() if k in known})


def existing(name: str) -> Cluster:
    cluster = recorded(name)
    if cluster is None:
        others = clusters()
        also = f" (clusters here: {', '.join(others)})" if others else ""
        raise MachinesError(
            f"no machines cluster {name!r} on this host{also}; make it with: labctl machines up"
        )
    return cluster


def clusters() -> list[str]:
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.parent.name for p in STATE_ROOT.glob("*/machines.json"))


def from_topology(
    topo,
    name: str = DEFAULT_CLUSTER,
    subnet: str | None = None,
    spares: tuple[Machine, ...] = (),
) -> Cluster:
    """The machines the topology's hosts describe, with their node_ip; `subnet` (a /24) moves
    them there, keeping each address's last number (a second cluster beside the course's)."""
    check_name(name)
    hosts = [Machine(h.name, h.role, h.node_ip) for h in topo.hosts]
    nets = {ipaddress.ip_network(f"{m.ip}/24", strict=False) for m in hosts + list(spares)}
    if len(nets) != 1:
        raise MachinesError(
            f"{topo.path}: the machines share one /24 network, but the hosts' node_ip are in "
            f"{', '.join(sorted(map(str, nets)))}; put them in one (the course: 10.0.2.0/24)"
        )
    (net,) = nets
    if subnet:
        try:
            new = ipaddress.ip_network(subnet)
        except ValueError:
            raise MachinesError(f"--subnet {subnet}: not a network such as 10.0.3.0/24") from None
        if new.version != 4 or new.prefixlen != 24:
            raise MachinesError(f"--subnet {subnet}: give an IPv4 /24, such as 10.0.3.0/24")
        base = int(new.network_address)

        def move(m: Machine) -> Machine:
            last = int(ipaddress.ip_address(m.ip)) & 0xFF
            return replace(m, ip=str(ipaddress.ip_address(base + last)))

        hosts, spares, net = [move(m) for m in hosts], tuple(map(move, spares)), new
    gateway = str(net[1])
    for m in hosts + list(spares):
        if m.ip == gateway:
            raise MachinesError(
                f"{topo.path}: {m.name}'s node_ip {m.ip} is the machines' gateway (the bridge "
                f"on this host takes {gateway}); give {m.name} another address"
            )
        if m.ip == str(net.broadcast_address) or m.ip == str(net.network_address):
            raise MachinesError(f"{topo.path}: {m.name}'s node_ip {m.ip} cannot be a machine's")
    users = {h.ssh_user for h in topo.hosts if h.ssh_user}
    if len(users) > 1:
        raise MachinesError(
            f"{topo.path}: the hosts name different ssh_user ({', '.join(sorted(users))}); "
            "machines have one user: set ssh_user once at the top"
        )
    user = users.pop() if users else DEFAULT_USER
    if not _USER.match(user) or user == "root":
        raise MachinesError(f"{topo.path}: ssh_user {user!r} cannot be a machine's user")
    return Cluster(
        name=name,
        network=str(net),
        user=user,
        machines=tuple(hosts),
        spares=tuple(spares),
        source=str(topo.path),
    )
