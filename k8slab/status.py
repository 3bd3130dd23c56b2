"""What the cluster looks like now (`labctl status`): nodes, Weave peers, the lab's objects.

Read-only. Needs a running cluster, which the test bed cannot give: it is tested only on
recorded outputs (tests/test_status.py), never against a live cluster::

    >>> s = status.collect(Commands(fleet.run), topo, lab)
    >>> [n.name for n in s.nodes]
    ['master', 'slave1', 'slave2']
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass

from k8slab.checks.kinds import cause_line
from k8slab.checks.parse import Node, TableError, nodes
from k8slab.labs import Lab, render_manifests
from k8slab.ssh import Result, SSHError
from k8slab.topology import Topology

Run = Callable[[str, str], Result]
WEAVE_STATUS = "curl -s --max-time 5 http://127.0.0.1:6784/status"


@dataclass(frozen=True)
class Weave:
    host: str
    ok: bool
    connections: int | None
    established: int | None
    peers: int | None
    detail: str


@dataclass(frozen=True)
class LabObject:
    ref: str  # kind/name -n namespace
    present: bool
    line: str


@dataclass(frozen=True)
class Status:
    nodes: tuple[Node, ...]
    nodes_error: str
    weave: tuple[Weave, ...]
    lab: str
    objects: tuple[LabObject, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def weave(host: str, r: Result) -> Weave:
    """Weave's status page: "Connections: 2 (2 established)", "Peers: 3 (with 6 ...)"."""
    if not r.ok or "Connections:" not in r.stdout:
        said = cause_line(f"{r.stderr}\n{r.stdout}") or f"curl exited {r.exit_code}"
        return Weave(host, False, None, None, None, f"no weave status on :6784 ({said})")
    conn = re.search(r"Connections:\s+(\d+)(?:\s+\((\d+) established)?", r.stdout)
    peers = re.search(r"Peers:\s+(\d+)", r.stdout)
    total = int(conn.group(1)) if conn else None
    est = int(conn.group(2)) if conn and conn.group(2) else (0 if total == 0 else None)
    line = next((x.strip() for x in r.stdout.splitlines() if "Connections:" in x), "")
    return Weave(host, True, total, est, int(peers.group(1)) if peers else None, line)


def collect(run: Run, topo: Topology, lab: Lab | None) -> Status:
    master = topo.control_plane.name
    kubectl = lab.values["kubectl"] if lab else "kubectl"
    try:
        r = run(master, f"{kubectl} get nodes -o wide")
    except SSHError as e:
        # No master, no cluster view: the Weave rows of the other hosts still tell something.
        r, lab = Result("", str(e), 255), None
    found: list[Node] = []
    error = "" if r.ok else cause_line(f"{r.stderr}\n{r.stdout}") or "?"
    if r.ok:
        try:
            found = nodes(r.stdout)
        except TableError as e:
            error = str(e)
    peers = []
    for h in topo.hosts:
        try:
            peers.append(weave(h.name, run(h.name, WEAVE_STATUS)))
        except SSHError as e:
            peers.append(Weave(h.name, False, None, None, None, str(e)))
    objects = []
    for m in render_manifests(lab, topo) if lab else []:
        ns = m.namespace or "default"
        ref = f"{m.kind.lower()}/{m.name} -n {ns}"
        if m.kind == "Namespace":
            ref = f"namespace/{m.name}"
        got = run(
            master,
            f"{kubectl} get {m.kind.lower()}/{shlex.quote(m.name)}"
            + ("" if m.kind == "Namespace" else f" -n {shlex.quote(ns)}")
            + " --no-headers --ignore-not-found",
        )
        line = " ".join(got.stdout.split())
        objects.append(LabObject(ref, got.ok and bool(line), line or "not found"))
    return Status(tuple(found), error, tuple(peers), lab.id if lab else "", tuple(objects))


def render_table(s: Status, topo: Topology) -> str:
    out = ["NODES (kubectl get nodes -o wide on master)"]
    if s.nodes_error:
        out.append(f"  cannot list nodes: {s.nodes_error}")
    rows = [("NAME", "STATUS", "VERSION", "INTERNAL-IP", "RUNTIME")]
    rows += [(n.name, n.status, n.version, n.internal_ip, n.runtime) for n in s.nodes]
    listed = {n.name for n in s.nodes}
    rows += [
        (h.name, "(not registered)", "", h.node_ip, "") for h in topo.hosts if h.name not in listed
    ]
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        out += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
    out.append("WEAVE (127.0.0.1:6784/status on each node)")
    want = len(topo.hosts) - 1
    for w in s.weave:
        if not w.ok:
            out.append(f"  {w.host}: {w.detail}")
            continue
        flag = "" if w.established == want else f"  <- expected {want} established"
        out.append(
            f"  {w.host}: {w.established} of {w.connections} connections established, "
            f"{w.peers} peers{flag}"
        )
    if s.lab:
        out.append(f"LAB {s.lab} objects")
        for o in s.objects:
            out.append(f"  {o.ref}: {o.line if o.present else 'not found'}")
    return "\n".join(out)
