"""`labctl machines`' verbs over the layers: up, status, start, stop, destroy.

Each says what it does through `say` (one line per step) and returns what the CLI prints last.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from k8slab.machines import MachinesError, base, host, network, nspawn, spec
from k8slab.machines.spec import Cluster, Machine

Say = Callable[[str], None]
Ask = Callable[[str], bool]
# Topology keys that may name a file or folder on this machine, relative to the file.
LOCAL_PATH_KEYS = (
    "kube_apt_repo",
    "kube_apt_key",
    "docker_apt_repo",
    "docker_apt_key",
    "cri_dockerd_url",
    "image_archives",
)


class HostProblems(MachinesError):
    """What this host lacks, one line each (the CLI prints every line)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Up:
    cluster: Cluster
    changed: list[str]  # what this run did; empty: everything was already up
    seconds: float


def up(
    topo,
    name: str = spec.DEFAULT_CLUSTER,
    *,
    offline: bool = False,
    nat_nic: bool = False,
    subnet: str | None = None,
    mirror: str | None = None,
    dns: str | None = None,
    spares: tuple[Machine, ...] = (),
    say: Say = print,
    ask: Ask | None = None,
) -> Up:
    """Make and boot the topology's machines; a re-run with them running changes nothing."""
    t0 = time.monotonic()
    wanted = spec.from_topology(topo, name, subnet, spares)
    if nat_nic and not offline:
        raise MachinesError(
            "--nat-nic needs --offline: the NAT-like interface holds the default route and "
            "leads nowhere on this host"
        )
    if nat_nic and ipaddress.ip_network(wanted.network).overlaps(
        ipaddress.ip_network(spec.NAT_NETWORK)
    ):
        raise MachinesError(
            f"--nat-nic: the machines' {wanted.network} is the NAT's own {spec.NAT_NETWORK}, "
            "as VirtualBox's host-only network cannot be: give --subnet 192.168.56.0/24"
        )
    before = spec.recorded(name)
    if before is not None and (
        before.network != wanted.network or not set(before.all) <= set(wanted.all)
    ):
        raise MachinesError(
            f"cluster {name} has other machines ({_listing(before)}) than {topo.path} asks for "
            f"(adding hosts is fine; changing or removing one is not): destroy it first "
            f"(labctl machines destroy --cluster {name}) or name another --cluster"
        )
    srcs = base.sources(mirror or (before.mirror if before else None))
    cluster = (before or wanted).but(
        machines=wanted.machines,
        spares=wanted.spares,
        source=wanted.source,
        offline=offline,
        nat_nic=nat_nic,
        dns=dns or "",
        mirror=mirror or (before.mirror if before else ""),
    )
    if (
        before is not None
        and (before.offline, before.nat_nic) != (offline, nat_nic)
        and _any_running(before)
    ):
        mode = ("offline" if before.offline else "online") + (
            " with a NAT-like interface" if before.nat_nic else ""
        )
        raise MachinesError(
            f"cluster {name}'s machines run {mode}: labctl machines stop --cluster {name}, "
            "then up again to change that"
        )
    problems = host.problems(
        cluster.network,
        cluster.bridge,
        len([m for m in cluster.machines if not nspawn.has_root(cluster, m.name)]),
        need_base=not base.ready(srcs),
        nat=not offline,
    )
    problems = [_name_other_cluster(p) for p in problems]
    if problems:
        raise HostProblems(problems)
    changed: list[str] = []
    needs = host.probe()
    if not base.ready(srcs):
        base.ensure(srcs, say)
        changed.append("base built")
    loaded = host.load_modules()
    if loaded:
        say(f"loaded kernel modules the machines need: {', '.join(loaded)}")
        changed.append("modules loaded")
    cluster.save()  # from here on, destroy can undo whatever follows
    raised = host.raise_inotify()
    if raised:
        say(f"raised this host's inotify limits for the machines' kubelets ({_pairs(raised)})")
        cluster = cluster.but(inotify_was=cluster.inotify_was or raised)
        cluster.save()
        changed.append("inotify limits")
    nspawn.user_key(cluster)
    nspawn.write_known_hosts(cluster)
    if network.ensure_bridge(cluster):
        say(f"bridge {cluster.bridge} with {cluster.gateway}/{cluster.prefix}")
        changed.append("bridge")
    after_rules = network.add_rules(cluster)
    if after_rules != cluster:
        cluster = after_rules
        cluster.save()
    if network.ensure_service(cluster, base.mirror_hosts(srcs)):
        what = "an apt proxy" if offline else "a DNS forwarder"
        say(f"{what} on {cluster.gateway} for the machines")
        changed.append("gateway service")
    basedir = base.path(srcs)
    for m in cluster.machines:
        if not nspawn.has_root(cluster, m.name):
            nspawn.make_root(cluster, m, basedir, say)
            changed.append(f"{m.name} made")
    for m in cluster.machines:
        if not nspawn.running(cluster, m.name):
            nspawn.start(cluster, m, needs, say)
            changed.append(f"{m.name} started")
    for m in cluster.machines:
        nspawn.wait_ssh(cluster, m.name, say if changed else _quiet)
    cluster = _write_topology(cluster, topo, needs, ask)
    cluster.save()
    nspawn.give_to_invoking_user(
        cluster, [cluster.key, Path(f"{cluster.key}.pub"), cluster.known_hosts, cluster.topology]
    )
    return Up(cluster, changed, time.monotonic() - t0)


def _pairs(found: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k.replace('/', '.')} {v} -> {host.INOTIFY[k]}" for k, v in found)


def start_spare(cluster: Cluster, name: str, say: Say = print, fresh: bool = False) -> None:
    """Boot a spare machine (made when it has no root, or anew with `fresh`)."""
    m = cluster.machine(name)
    if fresh:
        nspawn.stop(cluster, name, say)
        nspawn.remove_root(cluster, name)
    srcs = base.sources(cluster.mirror or None)
    nspawn.make_root(cluster, m, base.ensure(srcs, say), say)
    nspawn.start(cluster, m, host.probe(), say)
    nspawn.wait_ssh(cluster, name, say)


def start(cluster: Cluster, names: list[str], say: Say = print) -> list[str]:
    """Boot stopped machines (all the cluster's when `names` is empty); those started."""
    targets = [cluster.machine(n) for n in names] or list(cluster.machines)
    if not network.bridge_up(cluster):
        raise MachinesError(f"cluster {cluster.name}'s bridge is gone: labctl machines up")
    needs = host.probe()
    started = [m for m in targets if not nspawn.running(cluster, m.name)]
    for m in started:
        nspawn.start(cluster, m, needs, say)
    for m in started:
        nspawn.wait_ssh(cluster, m.name, say)
    return [m.name for m in started]


def stop(cluster: Cluster, names: list[str], say: Say = print, hard: bool = False) -> list[str]:
    targets = [cluster.machine(n) for n in names] or list(cluster.all)
    stopped = [m.name for m in targets if nspawn.running(cluster, m.name)]
    for n in stopped:
        nspawn.stop(cluster, n, say, hard=hard)
    return stopped


def destroy(cluster: Cluster, say: Say = print) -> None:
    """Everything `up` made for the cluster, away: machines, their roots, the gateway's
    program, the bridge, the iptables rules it added (ip_forward and, with the last cluster,
    the inotify limits as they were). The cache (the
    base and the machines' host keys) stays for the next up."""
    for m in cluster.all:
        nspawn.stop(cluster, m.name, say)
    network.stop_service(cluster)
    others = [spec.recorded(n) for n in spec.clusters() if n != cluster.name]
    living = [o for o in others if o]
    if cluster.inotify_was and living:  # that cluster puts the limits back when it goes
        living[0].but(inotify_was=living[0].inotify_was or cluster.inotify_was).save()
    elif cluster.inotify_was:  # the last one: the limits as the first up found them
        host.restore_inotify(cluster.inotify_was)
    cluster = network.remove_rules(cluster, any(o and not o.offline for o in others))
    cluster.save()
    network.remove_bridge(cluster)
    nspawn.remove_cgroups(cluster)
    for m in cluster.all:
        nspawn.remove_root(cluster, m.name)
    base.umount_under(cluster.state)
    for f in sorted(cluster.state.rglob("*"), key=lambda p: -len(p.parts)):
        f.rmdir() if f.is_dir() and not f.is_symlink() else f.unlink()
    cluster.state.rmdir()
    for d in (spec.STATE_ROOT, spec.STATE_ROOT.parent):  # made by up, unless others use them
        try:
            d.rmdir()
        except OSError:
            break
    say(f"cluster {cluster.name} destroyed (the cached base stays in {spec.CACHE_ROOT})")


@dataclass(frozen=True)
class MachineStatus:
    name: str
    role: str
    ip: str
    state: str  # running, stopped, not made
    ssh: str  # ok, no answer, -
    memory: int | None  # bytes in use now


def status(cluster: Cluster) -> list[MachineStatus]:
    rows = []
    for m in cluster.all:
        if nspawn.running(cluster, m.name):
            rc, _, _ = nspawn.ssh(cluster, m.name, "true", root=False, timeout=5)
            state, ssh = "running", "ok" if rc == 0 else "no answer"
        else:
            made = nspawn.has_root(cluster, m.name)
            state, ssh = ("stopped" if made else "not made"), "-"
        rows.append(
            MachineStatus(m.name, m.role, m.ip, state, ssh, nspawn.memory_now(cluster, m.name))
        )
    return rows


def _write_topology(cluster: Cluster, topo, needs: host.Needs, ask: Ask | None) -> Cluster:
    """The topology file the deploy and labctl read for these machines: the source's keys,
    the machines' addresses, user and key, and what a container host needs. Rewritten while
    nobody edited it; an edited one is replaced only when `ask` says yes."""
    raw = yaml.safe_load(Path(topo.path).read_text()) if Path(topo.path).is_file() else None
    raw = raw if isinstance(raw, dict) else {}
    here = Path(topo.path).resolve().parent
    for key in LOCAL_PATH_KEYS:  # the written file lives elsewhere: its folders made absolute
        value = raw.get(key)
        if isinstance(value, str) and "://" not in value and not value.startswith("file:"):
            raw[key] = str(here / Path(value).expanduser())
    raw["ssh_user"] = cluster.user
    raw["ssh_key"] = str(cluster.key)
    raw.pop("ssh_port", None)
    raw["hosts"] = [{"name": m.name, "role": m.role, "node_ip": m.ip} for m in cluster.machines]
    # cgroup v1: kubelet 1.35+ refuses it unless told; conntrack sysctls are the host's and
    # read-only in a container; no openvswitch in a container, and Weave's fallback bridge
    # does not survive a restart (weaveworks/weave#3634): sleeve from the start.
    raw["allow_cgroup_v1"] = not needs.cgroup2
    raw["kube_proxy_tune_conntrack"] = False
    raw["weave_fastdp"] = False
    if cluster.offline:
        raw["docker_source"] = "distro"  # Debian's docker.io, through the gateway's apt proxy
    text = (
        f"# Written by `labctl machines up` for the machines of cluster {cluster.name}, from\n"
        f"# {Path(topo.path).resolve()}. Rewritten by every up while unedited; an edited\n"
        "# file is kept unless you agree to replace it.\n" + yaml.safe_dump(raw, sort_keys=False)
    )
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = cluster.topology
    if path.exists():
        now = hashlib.sha256(path.read_bytes()).hexdigest()
        edited = now not in (cluster.topology_digest, digest)
        if edited and not (ask and ask(f"{path} was edited since up wrote it. Replace it?")):
            raise MachinesError(
                f"{path} was edited since up wrote it: kept as it is (machines are up); "
                "move it away and run up again for a fresh one"
            )
    path.write_text(text)
    return cluster.but(topology_digest=digest)


def _any_running(c: Cluster) -> bool:
    return any(nspawn.running(c, m.name) for m in c.all)


def _listing(c: Cluster) -> str:
    return ", ".join(f"{m.name} {m.ip}" for m in c.all)


def _name_other_cluster(line: str) -> str:
    """A bridge of another machines cluster named as such, with the command that frees it."""
    for other in spec.clusters():
        bridge = f"k8slab-{other}"
        if f" on {bridge}:" in line:
            return line.split(":", 1)[0] + (
                f": cluster {other}'s machines use it: labctl machines destroy --cluster "
                f"{other}, or choose another --subnet"
            )
    return line


def _quiet(_line: str) -> None:
    pass
