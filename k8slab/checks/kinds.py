"""The registry of assertion kinds a lab's checks can use (`expect: [{kind: ..., ...}]`).

A kind reads command outputs (named by the check's `run:` keys) and returns pass/fail with
evidence: the line that proved it, or what was wrong. Kinds never change anything. A new
chapter adds Python only when it needs a new kind here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k8slab.checks import parse
from k8slab.ssh import Result
from k8slab.topology import Host, Topology


class CommandFailed(Exception):
    """A command an assertion reads exited non-zero; the message is the evidence."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    evidence: str


@dataclass
class Context:
    host: Host
    topology: Topology
    commands: dict[str, str]
    results: dict[str, Result]

    def text(self, name: str) -> str:
        r = self.results[name]
        if not r.ok:
            said = (r.stderr.strip() or r.stdout.strip()).splitlines()
            first = said[0] if said else "no output"
            raise CommandFailed(f"`{_short(self.commands[name])}` exited {r.exit_code}: {first}")
        return r.stdout


Evaluator = Callable[[Context, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class Kind:
    evaluate: Evaluator
    # Parameters that name a `run:` entry; checked against the check when the lab loads.
    outputs: tuple[str, ...]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    doc: str


KINDS: dict[str, Kind] = {}


# A pass whose evidence starts so is a warning (labctl doctor counts them).
WARNING = "warning: "


def _kind(name: str, outputs: tuple[str, ...], required=(), optional=()):
    def register(fn: Evaluator) -> Evaluator:
        KINDS[name] = Kind(fn, outputs, outputs + tuple(required), tuple(optional), fn.__doc__)
        return fn

    return register


def _short(cmd: str, width: int = 60) -> str:
    cmd = " ".join(cmd.split())
    return cmd if len(cmd) <= width else cmd[: width - 3] + "..."


def matching_line(text: str, regex: str) -> str | None:
    """The first line of `text` that `regex` matches, stripped."""
    return next((line.strip() for line in text.splitlines() if re.search(regex, line)), None)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(empty output)"


@_kind("pause-sandboxes", ("pods", "containers"))
def _pause_sandboxes(ctx: Context, p: dict) -> Outcome:
    """Each Running pod on this node has exactly one running k8s_POD_<pod>_<ns>_ container."""
    here = [
        pod
        for pod in parse.pods(ctx.text(p["pods"]))
        if pod.node == ctx.host.name and pod.status == "Running"
    ]
    if not here:
        return Outcome(False, f"no Running pod is scheduled on {ctx.host.name}")
    running = [c for c in parse.containers(ctx.text(p["containers"])) if c.up]
    example = ""
    for pod in here:
        prefix = f"k8s_POD_{pod.name}_{pod.namespace}_"
        found = [c for c in running if c.name.startswith(prefix)]
        if len(found) != 1:
            return Outcome(
                False, f"{pod.namespace}/{pod.name}: {len(found)} running {prefix}* containers"
            )
        example = example or found[0].line
    return Outcome(True, f"{len(here)} pods, one pause each, e.g. {example}")


@_kind("pods-running", ("pods",), ("namespace",), ("name", "prefix", "node", "min"))
def _pods_running(ctx: Context, p: dict) -> Outcome:
    """Pods `name` (or starting with `prefix`), on `node` if given, are Running and ready."""
    want = p.get("name") or f"{p.get('prefix')}*"
    match = [
        pod
        for pod in parse.pods(ctx.text(p["pods"]))
        if pod.namespace == p["namespace"]
        and (pod.name == p["name"] if p.get("name") else pod.name.startswith(p.get("prefix", "")))
        and (not p.get("node") or pod.node == p["node"])
    ]
    where = f" on {p['node']}" if p.get("node") else ""
    if len(match) < int(p.get("min", 1)):
        return Outcome(False, f"no pod {p['namespace']}/{want}{where}")
    for pod in match:
        if not pod.is_ready:
            return Outcome(False, pod.line)
    return Outcome(True, match[0].line)


@_kind("daemonset-ready", ("output",))
def _daemonset_ready(ctx: Context, p: dict) -> Outcome:
    """`kubectl get ds NAME`: DESIRED = READY = the number of hosts in the topology."""
    text = ctx.text(p["output"])
    lines = [line for line in text.splitlines() if line.strip()]
    row = parse.table_row(text, lines[1].split()[0]) if len(lines) > 1 else None
    if not row or not row.get("DESIRED", "").isdigit():
        return Outcome(False, f"no DaemonSet row in: {_first_line(text)}")
    nodes = len(ctx.topology.hosts)
    ok = int(row["DESIRED"]) == int(row["READY"]) == nodes
    return Outcome(ok, f"{row['_line']} ({nodes} nodes in the topology)")


@_kind("listening", ("output",), ("process", "address"))
def _listening(ctx: Context, p: dict) -> Outcome:
    """`process` listens on `address` (":PORT" for any address, or "IP:PORT")."""
    host, _, port = p["address"].rpartition(":")
    for s in parse.sockets(ctx.text(p["output"])):
        if (
            s.state == "LISTEN"
            and s.process == p["process"]
            and s.local[1] == int(port)
            and (not host or s.local[0] == host)
        ):
            return Outcome(True, s.line)
    return Outcome(False, f"no {p['process']} listening on {p['address']}")


@_kind("peer-connections", ("output",), ("process", "port"))
def _peer_connections(ctx: Context, p: dict) -> Outcome:
    """`process` has an ESTABLISHED connection on `port` (either end) with every other host."""
    port = int(p["port"])
    established = [
        s
        for s in parse.sockets(ctx.text(p["output"]))
        if s.state == "ESTABLISHED"
        and s.process == p["process"]
        and port in (s.local[1], s.peer[1])
    ]
    missing, lines = [], []
    for other in ctx.topology.hosts:
        if other.name == ctx.host.name:
            continue
        conn = next((s for s in established if s.peer[0] == other.node_ip), None)
        if conn:
            lines.append(conn.line)
        else:
            missing.append(f"{other.name} ({other.node_ip})")
    if missing:
        return Outcome(False, f"no {p['process']} connection on {port} to {', '.join(missing)}")
    return Outcome(True, "; ".join(lines))


def _capture(ctx: Context, spec: dict) -> tuple[str | None, str]:
    text = ctx.text(spec["output"])
    m = re.search(spec["regex"], text, re.MULTILINE)
    return (m.group(1), m.group(0)) if m else (None, "")


def _same_value(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


@_kind("same-capture", (), ("first", "second"))
def _same_capture(ctx: Context, p: dict) -> Outcome:
    """Group 1 of `first.regex` in `first.output` equals that of `second` (CIDRs compared)."""
    a, a_text = _capture(ctx, p["first"])
    b, b_text = _capture(ctx, p["second"])
    if a is None or b is None:
        spec = p["first"] if a is None else p["second"]
        return Outcome(False, f"no match for {spec['regex']!r} in `{spec['output']}`")
    return Outcome(_same_value(a, b), f"{a_text} vs {b_text}")


@_kind("service-rules", ("services", "rules"), ("required",), ("optional",))
def _service_rules(ctx: Context, p: dict) -> Outcome:
    """Each port of the `required` (and existing `optional`) ns/name Services has a rule."""
    listed = {f"{s.namespace}/{s.name}": s for s in parse.services(ctx.text(p["services"]))}
    rules = {(r.ip, r.proto, r.port): r for r in parse.service_rules(ctx.text(p["rules"]))}
    for want in p["required"]:
        if want not in listed:
            return Outcome(False, f"Service {want} is not in `kubectl get svc -A`")
    checked = [listed[w] for w in [*p["required"], *p.get("optional", [])] if w in listed]
    example = ""
    for svc in checked:
        for port, proto in svc.ports:
            rule = rules.get((svc.cluster_ip, proto, port))
            if not rule:
                return Outcome(
                    False,
                    f"no KUBE-SERVICES rule for {svc.namespace}/{svc.name} "
                    f"{svc.cluster_ip}:{port}/{proto}",
                )
            example = example or rule.line
    count = sum(len(s.ports) for s in checked)
    return Outcome(True, f"{count} ClusterIP ports have rules, e.g. {example}")


@_kind("ready-endpoints", ("output",), (), ("min", "max"))
def _ready_endpoints(ctx: Context, p: dict) -> Outcome:
    """Lines "IP true|false" (an EndpointSlice jsonpath): between min and max are ready."""
    ready = [
        line.split()[0]
        for line in ctx.text(p["output"]).splitlines()
        if line.split()[1:] == ["true"]
    ]
    low, high = int(p.get("min", 1)), int(p.get("max", 1 << 30))
    return Outcome(low <= len(ready) <= high, f"{len(ready)} ready endpoints: {', '.join(ready)}")


@_kind("deployment-ready", ("output",), ("replicas",))
def _deployment_ready(ctx: Context, p: dict) -> Outcome:
    """`kubectl get deploy NAME`: READY is replicas/replicas."""
    text = ctx.text(p["output"])
    lines = [line for line in text.splitlines() if line.strip()]
    row = parse.table_row(text, lines[1].split()[0]) if len(lines) > 1 else None
    if not row or "READY" not in row:
        return Outcome(False, f"no Deployment row in: {_first_line(text)}")
    n = int(p["replicas"])
    return Outcome(row["READY"] == f"{n}/{n}", row["_line"])


@_kind("matches", ("output",), ("regex",), ("warning",))
def _matches(ctx: Context, p: dict) -> Outcome:
    """A line of the output matches `regex`; the evidence is that line. With a non-empty
    `warning`, no match passes too, its evidence "warning: <warning> (printed: ...)"."""
    text = ctx.text(p["output"])
    line = matching_line(text, p["regex"])
    if line is not None:
        return Outcome(True, line)
    if p.get("warning"):
        return Outcome(True, f"{WARNING}{p['warning']} (printed: {_first_line(text)})")
    return Outcome(False, f"`{_short(ctx.commands[p['output']])}` printed: {_first_line(text)}")


@_kind("increases", ("output",), ("regex",))
def _increases(ctx: Context, p: dict) -> Outcome:
    """The number captured by `regex` is larger in the last matching line than the first."""
    values = [int(m.group(1)) for m in re.finditer(p["regex"], ctx.text(p["output"]))]
    if len(values) < 2:
        seen = f"only {values[0]}" if values else "nothing"
        return Outcome(False, f"read {seen}; the value did not change in time")
    return Outcome(values[-1] > values[0], f"{values[0]} -> {values[-1]}")


@_kind("same-text", ("output", "expected"))
def _same_text(ctx: Context, p: dict) -> Outcome:
    """The output equals the `expected` command's output (surrounding whitespace ignored)."""
    got, want = ctx.text(p["output"]).strip(), ctx.text(p["expected"]).strip()
    return Outcome(got == want, f"{got or '(empty)'!s} (expected {want})")


@_kind("prints-pod-node", ("output", "pods"), ("pod",))
def _prints_pod_node(ctx: Context, p: dict) -> Outcome:
    """The output is the name of the node `pod` runs on (from a `kubectl get pod -o wide`)."""
    pod = next((x for x in parse.pods(ctx.text(p["pods"])) if x.name == p["pod"]), None)
    if pod is None:
        return Outcome(False, f"pod {p['pod']} not found")
    got = ctx.text(p["output"]).strip()
    return Outcome(got == pod.node, f"printed {got or '(nothing)'}; {p['pod']} runs on {pod.node}")
