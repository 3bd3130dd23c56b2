"""The map as text for a terminal: every line wrapped to `width`, colour only when asked."""

from __future__ import annotations

import textwrap

from k8slab.clustermap import Fault, Map, Node, Service, Volume

UNKNOWN = "unknown"
_RED, _DIM, _BOLD, _OFF = "\033[31m", "\033[2m", "\033[1m", "\033[0m"


class _Out:
    def __init__(self, width: int, colour: bool):
        self.width, self.colour, self.lines = width, colour, []

    def line(self, text: str = "", indent: int = 0, hang: int = 4) -> None:
        if not text:
            self.lines.append("")
            return
        self.lines += textwrap.wrap(
            text,
            self.width,
            initial_indent=" " * indent,
            subsequent_indent=" " * (indent + hang),
            break_on_hyphens=False,
        )

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_OFF}" if self.colour else text

    def head(self, text: str) -> None:
        self.lines += ["", self.paint(text, _BOLD)]

    def broken(self, fault: Fault | None) -> str:
        if fault is None:
            return ""
        owner = f" [{fault.check}]" if fault.check else ""
        return " " + self.paint(f"BROKEN: {fault.what}{owner}", _RED)


def render(m: Map, width: int = 80, colour: bool = False) -> str:
    out = _Out(width, colour)
    out.line(f"labctl map {m.lab}: {m.title}")
    out.line(f"source: {m.source}")
    out.head("NODES 노드 | pod 파드, pause, veth, weave")
    for n in m.nodes:
        _node(out, n)
    out.head("SERVICES 서비스 | ClusterIP -> KUBE-SVC -> KUBE-SEP -> pod")
    for s in m.services:
        _service(out, s)
    out.head("VOLUMES 볼륨 | emptyDir, hostPath")
    for v in m.volumes:
        _volume(out, v)
    faults = m.faults()
    out.head(f"BROKEN 고장: {len(faults) or 'nothing'}")
    for where, f in faults:
        out.line(f"- {where}:{out.broken(f)}", 0, 2)
    if m.unknown:
        out.head(f"UNKNOWN 알 수 없음: {len(m.unknown)} outputs could not be read")
        for why in m.unknown:
            out.line(f"- {why}", 0, 2)
    return "\n".join(out.lines)


def _node(out: _Out, n: Node) -> None:
    out.line("")
    status = n.status or UNKNOWN
    out.line(out.paint(f"{n.name}  {n.ip}  ({n.role}, {status})", _BOLD) + out.broken(n.fault))
    out.line(f"bridge: {n.bridge or UNKNOWN + ' (and the veths)'}", 2)
    if n.peers is None:
        out.line(f"weave peers: {UNKNOWN}", 2)
    for p in n.peers or []:
        out.line(f"weave -> {p.name} {p.ip}: {p.state} {p.path}".rstrip() + out.broken(p.fault), 2)
    for pod in n.pods:
        out.line(f"pod {pod.ref}  {pod.ip}  {pod.status} {pod.ready}" + out.broken(pod.fault), 2)
        pause = UNKNOWN if pod.pause is None else pod.pause or "none running"
        parts = [f"pause {pause}"]
        if pod.veth is not None:
            parts.append(f"veth {pod.veth or 'not found'}")
        parts += [f"{c.name} {c.id}" + ("" if c.up else " (exited)") for c in pod.containers]
        out.line(" | ".join(parts), 6)


def _service(out: _Out, s: Service) -> None:
    out.line("")
    out.line(out.paint(s.ref, _BOLD) + f"  DNS {s.dns}" + out.broken(s.fault))
    for p in s.ports:
        chain = p.chain or UNKNOWN
        on = f" on {', '.join(p.nodes)}" if p.nodes else ""
        out.line(
            f"{s.cluster_ip}:{p.port}/{p.proto} -> KUBE-SERVICES -> {chain}{on}"
            + out.broken(p.fault),
            2,
        )
        for e in p.endpoints:
            pod = f" {e.pod}" if e.pod else ""
            out.line(f"-> {e.chain} -> {e.ip}:{e.port}{pod} on {e.node}", 6)


def _volume(out: _Out, v: Volume) -> None:
    out.line("")
    where = f" on {v.pod.node}" if v.pod else ""
    source = f" = {v.pod.node if v.pod else '?'}:{v.host_path}" if v.host_path else ""
    fault = out.broken(v.fault)
    out.line(out.paint(v.pod_ref, _BOLD) + f"{where}: {v.kind} {v.name!r}{source}{fault}")
    ids = {c.name: c.id for c in v.pod.containers} if v.pod else {}
    for mt in v.mounts:
        ro = " (read-only)" if mt.read_only else ""
        who = " ".join(filter(None, (mt.container, ids.get(mt.container))))
        out.line(f"{who} mounts {mt.path}{ro}", 2)
    if v.host_path and v.pod:
        files = UNKNOWN if v.files is None else "; ".join(v.files) or "(no text)"
        out.line(f"on {v.pod.node}: {files}", 2)
