"""The map as one self-contained HTML page: inline CSS and SVG, no script, font or link to
anything outside it, so a learner can open it anywhere (and mail it). Terms are given in
Korean and English, as the course uses both."""

from __future__ import annotations

from html import escape

from k8slab.clustermap import Fault, Map, Node, Pod, Service

NODE_W, GAP, LINE, PAD = 340, 40, 15, 10
SERVICE_H, SERVICE_ROW = 62, 110

CSS = """
body { font: 14px sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f3f3f3; text-align: left; }
code, .mono { font-family: monospace; }
.broken { color: #b00020; font-weight: bold; }
.unknown { color: #777; font-style: italic; }
svg { max-width: 100%; height: auto; }
svg text { font: 11px monospace; fill: #222; }
svg text.title { font: bold 13px sans-serif; }
svg .node > rect { fill: #f4f8ff; stroke: #4a78c2; stroke-width: 1.5; }
svg .pod > rect { fill: #fff; stroke: #888; }
svg .broken > rect { stroke: #b00020; stroke-width: 2.5; }
svg .service > rect { fill: #fff8e8; stroke: #c98a00; }
svg .bridge { fill: #dde9dd; stroke: #3a8a3a; }
svg .endpoint { fill: none; stroke: #c98a00; stroke-width: 1.2; opacity: .8; }
svg .peer { fill: none; stroke: #3a8a3a; stroke-width: 2; }
svg .peer.broken { stroke: #b00020; stroke-dasharray: 6 4; }
"""

TERMS = (
    ("노드", "node", "a VM of the cluster (master, slave1, slave2)"),
    ("파드", "pod", "containers sharing one network namespace and IP"),
    (
        "pause 컨테이너",
        "pause sandbox",
        "holds the pod's network namespace; `docker ps | grep pause`",
    ),
    ("veth", "veth pair", "the pod's eth0 on one end, the weave bridge on the other"),
    ("weave 브리지", "weave bridge", "joins the node's pods; weave carries it to the other nodes"),
    ("서비스", "Service / ClusterIP", "a virtual IP kube-proxy turns into pod IPs with iptables"),
    ("엔드포인트", "endpoint", "a ready pod IP:port behind a Service (a KUBE-SEP chain)"),
    ("볼륨", "volume", "emptyDir: shared by the pod's containers; hostPath: the node's disk"),
)


def _fault(f: Fault | None) -> str:
    if f is None:
        return ""
    owner = f" [{f.check}]" if f.check else ""
    return f'<span class="broken">고장 broken: {escape(f.what)}{escape(owner)}</span>'


def _text(x: float, y: float, s: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.0f}" y="{y:.0f}"{c}>{escape(s)}</text>'


def _pod_lines(p: Pod) -> list[str]:
    lines = [p.ref, f"{p.ip}  {p.status} {p.ready}"]
    pause = "unknown" if p.pause is None else p.pause or "none running"
    lines.append(f"pause {pause}" + (f"  {p.veth}" if p.veth else ""))
    lines += [f"· {c.name} {c.id}" for c in p.containers]
    if p.fault:
        owner = f" [{p.fault.check}]" if p.fault.check else ""
        lines.append(f"BROKEN {p.fault.what}{owner}")
    return lines


def _svg(m: Map) -> str:
    width = max(len(m.nodes), 1) * (NODE_W + GAP) + GAP
    parts, pods_at, bridges = [], {}, {}
    top = SERVICE_ROW + 40
    bottom = top
    for i, n in enumerate(m.nodes):
        x = GAP + i * (NODE_W + GAP)
        parts.append(_node(n, x, top, pods_at))
        bottom = max(bottom, top + _node_height(n))
        bridges[n.name] = (x + NODE_W / 2, top + _node_height(n) - 14)
    edges, boxes = [], []
    slot = width / max(len(m.services), 1)
    for j, s in enumerate(m.services):
        sx, sy = j * slot + slot / 2, 20
        boxes.append(_service(s, sx, sy, slot))
        for k, port in enumerate(s.ports):
            for e in port.endpoints:
                tx, ty = pods_at.get(e.pod, bridges.get(e.node, (sx, top)))
                ox = (k - len(s.ports) / 2) * 6
                edges.append(
                    f'<path class="endpoint" data-service="{escape(s.ref)}" '
                    f'data-endpoint="{e.ip}:{e.port}" d="M{sx + ox:.0f},{sy + SERVICE_H} '
                    f"C{sx + ox:.0f},{sy + SERVICE_H + 60} {tx + ox:.0f},{ty - 60} "
                    f'{tx + ox:.0f},{ty}"><title>{escape(s.ref)} {s.cluster_ip}:{port.port}'
                    f"/{port.proto} → {port.chain} → {e.chain} → {e.ip}:{e.port}</title></path>"
                )
    seen = set()
    for n in m.nodes:
        for p in n.peers or []:
            pair = frozenset((n.name, p.name))
            if p.name not in bridges or (pair in seen and not p.fault):
                continue
            seen.add(pair)
            (x1, y1), (x2, y2) = bridges[n.name], bridges[p.name]
            cls = "peer broken" if p.fault else "peer"
            cx, cy = (x1 + x2) / 2, max(y1, y2) + 30 + abs(x2 - x1) / 8
            edges.append(
                f'<path class="{cls}" d="M{x1:.0f},{y1 + 10} Q{cx:.0f},{cy:.0f} '
                f'{x2:.0f},{y2 + 10}"><title>weave {n.name} → {p.name}</title></path>'
            )
            # the curve's midpoint: where its label reads best
            mx, my = (x1 + 2 * cx + x2) / 4, (y1 + 2 * cy + y2) / 4 + 10
            edges.append(_text(mx - 40, my + 14, f"{p.state} {p.path}".strip()))
    height = bottom + 90
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
        + "".join(parts + boxes + edges)
        + "</svg>"
    )


def _node_height(n: Node) -> int:
    pods = sum(len(_pod_lines(p)) * LINE + PAD + 6 for p in n.pods)
    return 56 + pods + 40


def _node(n: Node, x: float, y: float, pods_at: dict) -> str:
    h = _node_height(n)
    cls = "node broken" if n.fault else "node"
    out = [
        f'<g class="{cls}" data-node="{escape(n.name)}">',
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{h}" rx="8"/>',
        _text(x + PAD, y + 18, f"노드 node {n.name}  {n.ip}  {n.status or 'unknown'}", "title"),
        _text(x + PAD, y + 34, f"bridge {n.bridge or 'unknown'}"),
    ]
    cy = y + 50
    for p in n.pods:
        lines = _pod_lines(p)
        ph = len(lines) * LINE + PAD
        cls = "pod broken" if p.fault else "pod"
        out.append(f'<g class="{cls}" data-pod="{escape(p.ref)}">')
        out.append(
            f'<rect x="{x + PAD}" y="{cy}" width="{NODE_W - 2 * PAD}" height="{ph}" rx="4"/>'
        )
        out += [_text(x + 2 * PAD, cy + 13 + i * LINE, s) for i, s in enumerate(lines)]
        out.append("</g>")
        pods_at[p.ref] = (x + NODE_W / 2, cy)
        cy += ph + 6
    out.append(
        f'<rect class="bridge" x="{x + PAD}" y="{y + h - 28}" width="{NODE_W - 2 * PAD}" '
        f'height="20" rx="4"/>'
    )
    out.append(_text(x + 2 * PAD, y + h - 14, f"weave 브리지 bridge on {n.name}"))
    out.append("</g>")
    return "".join(out)


def _service(s: Service, cx: float, y: float, slot: float) -> str:
    w = min(slot - 16, 330)
    x = cx - w / 2
    ports = ", ".join(f"{p.port}/{p.proto}" for p in s.ports) or "-"
    cls = "service broken" if s.fault or any(p.fault for p in s.ports) else "service"
    return (
        f'<g class="{cls}" data-service="{escape(s.ref)}">'
        f'<rect x="{x:.0f}" y="{y}" width="{w:.0f}" height="{SERVICE_H}" rx="6"/>'
        + _text(x + 8, y + 16, f"서비스 {s.ref}", "title")
        + _text(x + 8, y + 33, f"ClusterIP {s.cluster_ip or '-'}  {ports}")
        + _text(x + 8, y + 50, s.dns)
        + "</g>"
    )


def render(m: Map) -> str:
    rows = []
    for s in m.services:
        if s.fault:
            rows.append(f"<tr><td>{escape(s.ref)}</td><td colspan=5>{_fault(s.fault)}</td></tr>")
        for p in s.ports:
            chain = escape(p.chain or "unknown")
            eps = (
                "<br>".join(
                    f"<code>{e.chain}</code> → <code>{e.ip}:{e.port}</code> "
                    f"{escape(e.pod)} on {escape(e.node)}"
                    for e in p.endpoints
                )
                or "-"
            )
            rows.append(
                f"<tr><td>{escape(s.ref)}<br><code>{escape(s.dns)}</code></td>"
                f"<td><code>{s.cluster_ip}:{p.port}/{p.proto}</code></td>"
                f"<td><code>KUBE-SERVICES</code><br>on {escape(', '.join(p.nodes) or '-')}</td>"
                f"<td><code>{chain}</code></td><td>{eps}</td><td>{_fault(p.fault)}</td></tr>"
            )
    vols = []
    for v in m.volumes:
        where = escape(v.pod.node) if v.pod else "not on the cluster"
        mounts = "<br>".join(
            f"{escape(mt.container)}: <code>{escape(mt.path)}</code>"
            + (" (read-only)" if mt.read_only else "")
            for mt in v.mounts
        )
        source = f"<code>{escape(v.host_path)}</code> on {where}" if v.host_path else "-"
        files = ""
        if v.host_path and v.pod:
            files = (
                '<span class="unknown">unknown</span>'
                if v.files is None
                else "<br>".join(f"<code>{escape(f)}</code>" for f in v.files) or "(no text)"
            )
        vols.append(
            f"<tr><td>{escape(v.pod_ref)}</td><td>{where}</td><td>{v.kind} "
            f"<code>{escape(v.name)}</code></td><td>{mounts}</td><td>{source}</td>"
            f"<td>{files}</td><td>{_fault(v.fault)}</td></tr>"
        )
    faults = "".join(f"<li>{escape(where)}: {_fault(f)}</li>" for where, f in m.faults())
    unknown = "".join(f'<li class="unknown">{escape(u)}</li>' for u in m.unknown)
    terms = "".join(
        f"<tr><td>{ko}</td><td>{en}</td><td>{escape(what)}</td></tr>" for ko, en, what in TERMS
    )
    return f"""<!DOCTYPE html>
<html lang="ko"><head><meta charset="utf-8">
<title>labctl map {escape(m.lab)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style></head><body>
<h1>클러스터 지도 cluster map: {escape(m.lab)} ({escape(m.title)})</h1>
<p>{escape(m.source)}. 고장 broken: {len(m.faults())}; 알 수 없음 unknown: {len(m.unknown)}.</p>
{_svg(m)}
<h2>서비스 Services: ClusterIP:port → KUBE-SERVICES → KUBE-SVC → KUBE-SEP → pod IP:port</h2>
<table><tr><th>서비스 Service, DNS</th><th>ClusterIP:port</th><th>KUBE-SERVICES</th>
<th>KUBE-SVC</th><th>KUBE-SEP → 엔드포인트 endpoint</th><th></th></tr>{"".join(rows)}</table>
<h2>볼륨 Volumes</h2>
<table><tr><th>파드 pod</th><th>노드 node</th><th>volume</th><th>mounts</th>
<th>hostPath</th><th>on the node</th><th></th></tr>{"".join(vols)}</table>
<h2>고장 Broken</h2><ul>{faults or "<li>nothing</li>"}</ul>
<h2>알 수 없음 Unknown</h2><ul>{unknown or "<li>nothing: every output was read</li>"}</ul>
<h2>용어 Terms</h2><table>{terms}</table>
</body></html>"""
