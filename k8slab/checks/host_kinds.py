"""Assertion kinds for host checks (`labctl doctor`), registered into the shared KINDS registry.

Most host checks are plain data (`matches`, `absent`, `at-least`); the rest read the topology
(node_ip, subnets) or compare one host with the others. Kinds that compare hosts read the
other hosts' outputs through `peers`, which `k8slab.doctor` binds while it grades::

    >>> with across(commands):
    ...     report = verify(lab, topo, commands)

Warnings: the engine knows pass/fail/skip/error only, so a warning is a pass whose evidence
starts with "warning: " (`labctl doctor` counts them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Any

from k8slab import weave
from k8slab.checks import parse
from k8slab.checks.kinds import (
    WARNING,
    CommandFailed,
    Context,
    Outcome,
    _first_line,
    _kind,
    _short,
    cause_line,
)
from k8slab.ssh import Result, SSHError

# Interfaces the cluster itself creates: their addresses and routes are expected to sit in
# the pod subnet once Weave runs.
CLUSTER_INTERFACES = re.compile(r"^(weave|datapath|vethwe|vxlan-6784|kube-ipvs0|cni0)")

_peers: list[Callable[[str, str], Result]] = []


@contextlib.contextmanager
def across(run: Callable[[str, str], Result]) -> Iterator[None]:
    """Let kinds that compare hosts run (or read recorded) commands on the other hosts."""
    _peers.append(run)
    try:
        yield
    finally:
        _peers.remove(run)


class _PeerDown(CommandFailed):
    """Another host could not be reached: it is left out of the comparison (its own rows
    say why), rather than failing the hosts that answered."""


def _peer_text(ctx: Context, host: str, name: str) -> str:
    if not _peers:
        raise CommandFailed("this kind compares hosts and needs `labctl doctor` to run it")
    try:
        r = _peers[-1](host, ctx.commands[name])
    except SSHError as e:
        raise _PeerDown(f"cannot read {host}: {e}") from None
    if not r.ok:
        said = cause_line(r.stderr) or cause_line(r.stdout) or "no output"
        raise CommandFailed(f"{host}: `{_short(ctx.commands[name])}` exited {r.exit_code}: {said}")
    return r.stdout


@_kind("absent", ("output",), ("regex",), ("what",))
def _absent(ctx: Context, p: dict) -> Outcome:
    """No line of the output matches `regex`; the evidence is every offending line."""
    text = ctx.text(p["output"])
    found = [line.strip() for line in text.splitlines() if re.search(p["regex"], line)]
    if found:
        return Outcome(False, f"{p.get('what', 'found')}: {'; '.join(found)}")
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    what = p.get("what", "match")
    cmd = _short(ctx.commands[p["output"]])
    # not the lines themselves: /proc/swaps' header alone read "no active swap in: Filename..."
    if not lines:
        return Outcome(True, f"no {what}: `{cmd}` printed nothing")
    return Outcome(True, f"no {what} in the {_lines(len(lines))} of `{cmd}`")


def _lines(n: int) -> str:
    return "one line" if n == 1 else f"{n} lines"


@_kind("at-least", ("output",), ("regex", "min"), ("unit", "scale", "what"))
def _at_least(ctx: Context, p: dict) -> Outcome:
    """The number captured by `regex` (divided by `scale`) is at least `min` `unit`."""
    text = ctx.text(p["output"])
    m = re.search(p["regex"], text, re.MULTILINE)
    if not m:
        return Outcome(False, f"no {p.get('what', 'value')} in: {_first_line(text)}")
    value = float(m.group(1)) / float(p.get("scale", 1))
    unit = f" {p['unit']}" if p.get("unit") else ""
    what = p.get("what", "value")
    shown = f"{value:g}" if value == int(value) else f"{value:.2f}"
    return Outcome(value >= float(p["min"]), f"{what}: {shown}{unit} (need >= {p['min']}{unit})")


@_kind("disk-headroom", ("output",), ("use_gib", "min_pct"))
def _disk_headroom(ctx: Context, p: dict) -> Outcome:
    """`df -P -k`: once `use_gib` more is used (images, packages), at least `min_pct` of the
    file system is still free."""
    text = ctx.text(p["output"])
    rows = [line.split() for line in text.splitlines()[1:] if len(line.split()) >= 6]
    if not rows or not (rows[0][1].isdigit() and rows[0][3].isdigit()):
        return Outcome(False, f"no df line in: {_first_line(text)}")
    size, free, mount = int(rows[0][1]), int(rows[0][3]), rows[0][5]
    gib = 1 << 20  # KiB
    after = 100 * (free - float(p["use_gib"]) * gib) / size
    ok = after >= float(p["min_pct"])
    return Outcome(
        ok,
        f"{mount}: {free / gib:.1f} GiB free of {size / gib:.1f} GiB ({100 * free / size:.1f}%); "
        f"{after:.1f}% once the cluster's ~{p['use_gib']} GiB are there "
        f"({'above' if ok else 'under'} kubelet's {p['min_pct']}%)",
    )


def _routes(text: str) -> list[tuple[str, str, str]]:
    """`ip -o -4 route`: (destination, device, line)."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        dev = words[words.index("dev") + 1] if "dev" in words[:-1] else ""
        found.append((words[0], dev, line.strip()))
    return found


@_kind("node-ip-present", ("addrs",))
def _node_ip_present(ctx: Context, p: dict) -> Outcome:
    """The host's node_ip (from the topology) is an address of one of its interfaces."""
    want = ctx.host.node_ip
    for dev, addr in parse.addresses(ctx.text(p["addrs"])):
        if str(addr.ip) == want:
            return Outcome(True, f"{want} on {dev} ({addr})")
    have = ", ".join(f"{d} {a}" for d, a in parse.addresses(ctx.text(p["addrs"]))) or "none"
    return Outcome(False, f"node_ip {want} is not on this host (addresses: {have})")


def _default_route_addresses(addrs: str, routes: str) -> list[str]:
    devs = {dev for dst, dev, _ in _routes(routes) if dst == "default"}
    return [str(a.ip) for dev, a in parse.addresses(addrs) if dev in devs]


@_kind("not-shared-nat", ("addrs", "routes"), (), ("address",))
def _not_shared_nat(ctx: Context, p: dict) -> Outcome:
    """Warns when node_ip is `address` (10.0.2.15, VirtualBox NAT) and the default-route
    interface of several hosts has it too: every VM behind plain NAT gets the same IP. Beside
    another node_ip (NAT plus host-only adapter) it is expected: the evidence says so."""
    nat = p.get("address", "10.0.2.15")
    mine = _default_route_addresses(ctx.text(p["addrs"]), ctx.text(p["routes"]))
    if nat not in mine:
        return Outcome(True, f"node_ip {ctx.host.node_ip} is not a shared NAT address")
    sharing = [ctx.host.name]
    for other in ctx.topology.hosts:
        if other.name == ctx.host.name:
            continue
        try:
            theirs = _default_route_addresses(
                _peer_text(ctx, other.name, p["addrs"]), _peer_text(ctx, other.name, p["routes"])
            )
        except _PeerDown:
            continue
        if nat in theirs:
            sharing.append(other.name)
    if len(sharing) < 2:
        return Outcome(True, f"{nat} is on the default-route interface of {ctx.host.name} only")
    sharing = [h.name for h in ctx.topology.hosts if h.name in sharing]
    if ctx.host.node_ip == nat:
        return Outcome(
            True,
            f"{WARNING}{nat} is the default-route address of {', '.join(sharing)}: that is "
            "VirtualBox's NAT address, the same on every VM; use a NAT network or host-only "
            "adapter IP as node_ip",
        )
    # NAT plus a host-only adapter, the README's advice: no warning, the evidence says why.
    return Outcome(
        True,
        f"node_ip {ctx.host.node_ip} is not a shared NAT address; the default route leaves by "
        f"{nat}, VirtualBox's NAT address on {', '.join(sharing)}, which the deploy never "
        "uses: kubelet and the API server get node_ip",
    )


@_kind("subnets-clear", ("addrs", "routes"))
def _subnets_clear(ctx: Context, p: dict) -> Outcome:
    """kube_pod_subnet and kube_service_subnet overlap no address or route of the host
    (Weave's own interfaces and routes excepted)."""
    topo = ctx.topology
    nets = {
        "kube_pod_subnet": ipaddress.IPv4Network(topo.kube_pod_subnet),
        "kube_service_subnet": ipaddress.IPv4Network(topo.kube_service_subnet),
    }
    checked = 0
    for dev, addr in parse.addresses(ctx.text(p["addrs"])):
        if CLUSTER_INTERFACES.match(dev) or addr.ip.is_loopback:
            continue
        checked += 1
        for key, net in nets.items():
            if addr.network.overlaps(net):
                return Outcome(False, f"{key} {net} overlaps {addr} on {dev}")
    for dst, dev, line in _routes(ctx.text(p["routes"])):
        if dst == "default" or CLUSTER_INTERFACES.match(dev):
            continue
        try:
            route = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        checked += 1
        for key, net in nets.items():
            if route.overlaps(net):
                return Outcome(False, f"{key} {net} overlaps route: {line}")
    return Outcome(
        True,
        f"{topo.kube_pod_subnet} and {topo.kube_service_subnet} clear of "
        f"{checked} host addresses and routes",
    )


@_kind("ports-free", ("output",), ("ports",))
def _ports_free(ctx: Context, p: dict) -> Outcome:
    """`ss -Htlnp`: each of `ports` ({port: owner}) is free or held by its owner process."""
    sockets = [s for s in parse.sockets(ctx.text(p["output"])) if s.state == "LISTEN"]
    said = []
    for port, owner in p["ports"].items():
        held = [s for s in sockets if s.local[1] == int(port)]
        strangers = [s for s in held if s.process != owner]
        if strangers:
            who = strangers[0].process or "an unknown process"
            return Outcome(False, f"port {port} is held by {who} (want free or {owner})")
        said.append(f"{port} {'held by ' + owner if held else 'free'}")
    return Outcome(True, ", ".join(said))


_VALUES: dict[str, Callable[[str, Context], str]] = {
    "text": lambda text, ctx: text.strip(),
}


def _node_ip_mac(text: str, ctx: Context) -> str:
    """From `ip -o -4 addr; ip -o link`: the MAC of the interface holding node_ip."""
    macs = {link.name: link.mac for link in parse.links(text)}
    for dev, addr in parse.addresses(text):
        if str(addr.ip) == ctx.host.node_ip:
            return macs.get(dev, "")
    return ""


_VALUES["node-ip-mac"] = _node_ip_mac


@_kind("unique-across-hosts", ("output",), ("what",), ("value", "missing"))
def _unique(ctx: Context, p: dict) -> Outcome:
    """The output (or `value: node-ip-mac`) differs from every other host's. An empty value
    fails; the output `missing` (e.g. no such file on a container) is only a warning."""
    pick = _VALUES[p.get("value", "text")]
    mine = pick(ctx.text(p["output"]), ctx)
    if p.get("missing") and mine == p["missing"]:
        return Outcome(True, f"{WARNING}no {p['what']} on {ctx.host.name}: cannot compare")
    if not mine:
        return Outcome(False, f"no {p['what']} found on {ctx.host.name}")
    same, compared = [], 1
    for other in ctx.topology.hosts:
        if other.name == ctx.host.name:
            continue
        try:
            theirs = pick(_peer_text(ctx, other.name, p["output"]), _as(ctx, other))
        except _PeerDown:
            continue
        compared += 1
        if theirs == mine:
            same.append(other.name)
    if same:
        return Outcome(False, f"{p['what']} {mine} is also that of {', '.join(same)}")
    return Outcome(True, f"{p['what']} {mine} (unique among {compared} hosts)")


def _as(ctx: Context, host: Any) -> Context:
    return Context(host, ctx.topology, ctx.commands, ctx.results)


CLOCK_MARK = "labctl-local-clock:"
CLOCK_COMMAND = "date +%s.%N"


@_kind("clock-in-sync", ("output",), ("max_skew",))
def _clock_in_sync(ctx: Context, p: dict) -> Outcome:
    """`date +%s.%N` on the host lies within `max_skew` seconds of the local clock, read
    before and after the command (`labctl doctor` appends "labctl-local-clock: T0 T1")."""
    text = ctx.text(p["output"])
    m = re.search(rf"^{CLOCK_MARK}\s*(\S+)\s+(\S+)", text, re.MULTILINE)
    try:
        remote = float(text.split()[0])
    except (ValueError, IndexError):
        return Outcome(False, f"not a time: {_first_line(text)}")
    if not m:
        return Outcome(False, "no local clock reading next to the host's time")
    before, after = float(m.group(1)), float(m.group(2))
    skew = 0.0 if before <= remote <= after else min(abs(remote - before), abs(remote - after))
    limit = float(p["max_skew"])
    return Outcome(
        skew <= limit,
        f"clock {'ahead' if remote > after else 'behind' if remote < before else 'in step'}"
        f" by {skew:.1f}s (round trip {after - before:.2f}s, allowed {limit:g}s)",
    )


@_kind("weave-datapath", ("output",))
def _weave_datapath(ctx: Context, p: dict) -> Outcome:
    """Which Weave data path this node will get (k8slab.weave) and why, from the openvswitch
    probe here and on the other nodes (auto is decided cluster-wide). A warning where
    weave_fastdp is true and this node cannot do fastdp."""
    setting = ctx.topology.weave_fastdp
    states = {ctx.host.name: weave.module_state(ctx.text(p["output"]))}
    if setting == "auto":
        for other in ctx.topology.hosts:
            if other.name == ctx.host.name:
                continue
            try:
                states[other.name] = weave.module_state(_peer_text(ctx, other.name, p["output"]))
            except _PeerDown:
                continue
    warn, line = weave.evidence(setting, ctx.host.name, states)
    return Outcome(True, f"{WARNING}{line}" if warn else line)
