"""Parsers for the command outputs the checks read, written against the course's printed outputs.

They read what a person reads (kubectl tables, docker ps, netstat/ss, iptables -S) rather
than JSON, so the course's own outputs are the test fixtures. Unknown lines are skipped.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass


class TableError(ValueError):
    """A kubectl table without a column a check needs; the message names it and the header."""


@dataclass(frozen=True)
class Table:
    """A kubectl table read by its header: `rows` map each header name to the row's cell."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    def need(self, *names: str) -> None:
        """Fail with a message a person can act on when the header lacks a column."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            have = " ".join(self.columns) or "no header"
            raise TableError(f"no {', '.join(missing)} column in the table (header: {have})")

    def row(self, name: str) -> dict[str, str] | None:
        """The row whose NAME is `name` (kubectl prints kind/name with -A on some kinds)."""
        self.need("NAME")
        return next((r for r in self.rows if r["NAME"].rpartition("/")[2] == name), None)


# kubectl's tabwriter separates columns by at least 3 spaces, so one space inside a header
# ("NOMINATED NODE", "NODE SELECTOR") belongs to the name. A header flattened to single
# spaces (a printout copied from a web page) splits on every space instead.
_HEADER_GAP = re.compile(r"\S+(?: \S+)*")


def table(text: str) -> Table:
    """Any kubectl table (get pod/svc/ds/deploy/nodes, -o wide or not), read by header.

    Cells are cut at the header's column starts, so a cell with spaces (RESTARTS "8 (3m
    ago)", OS-IMAGE "Ubuntu 22.04 LTS") stays whole; a row whose words are exactly as many
    as the columns (single-spaced, as printouts copied from the web are) is split on spaces.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return Table((), ())
    header = lines[0]
    spans = [(m.start(), m.group()) for m in _HEADER_GAP.finditer(header)]
    if "  " not in header.strip():
        spans = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)]
    columns = tuple(name for _, name in spans)
    rows = []
    for line in lines[1:]:
        words = line.split()
        if len(words) == len(columns):
            cells = words
        else:
            starts = [start for start, _ in spans] + [None]
            cells = [line[a:b].strip() for a, b in zip(starts, starts[1:], strict=False)]
        rows.append({**dict(zip(columns, cells, strict=True)), "_line": line.strip()})
    return Table(columns, tuple(rows))


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ready: str
    status: str
    ip: str
    node: str
    line: str

    @property
    def is_ready(self) -> bool:
        have, _, want = self.ready.partition("/")
        return self.status == "Running" and have == want


def _cells(text: str, columns: tuple[str, ...]) -> list[tuple[list[str], dict[str, str]]]:
    """Each row's cells of `columns` (all of which the header must have), with the row."""
    t = table(text)
    if t.rows:
        t.need(*columns)
    return [([r[c] for c in columns], r) for r in t.rows]


def pods(text: str, namespace: str = "default") -> list[Pod]:
    """`kubectl get pod [-A | -n NS] -o wide`; without a NAMESPACE column (no -A) the rows
    are in the namespace the command asked for, `namespace`."""
    columns = ("NAME", "READY", "STATUS", "IP", "NODE")
    return [
        Pod(r.get("NAMESPACE", namespace), *cells, r["_line"]) for cells, r in _cells(text, columns)
    ]


@dataclass(frozen=True)
class Node:
    name: str
    status: str
    version: str
    internal_ip: str
    runtime: str
    line: str


def nodes(text: str) -> list[Node]:
    """`kubectl get nodes -o wide`."""
    columns = ("NAME", "STATUS", "VERSION", "INTERNAL-IP", "CONTAINER-RUNTIME")
    return [Node(*cells, r["_line"]) for cells, r in _cells(text, columns)]


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    up: bool
    line: str


def containers(text: str) -> list[Container]:
    """`docker ps`: CONTAINER ID first, NAMES last; STATUS starts with "Up" while running."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] == "CONTAINER":
            continue
        up = bool(re.search(r"\sUp\s", line))
        found.append(Container(fields[0], fields[-1], up, line.strip()))
    return found


@dataclass(frozen=True)
class KubeletName:
    """What a dockershim/cri-dockerd container name says: k8s_<container>_<pod>_<ns>_<uid>_<n>,
    the container being POD for the pod's pause sandbox."""

    container: str
    pod: str
    namespace: str


def kubelet_name(name: str) -> KubeletName | None:
    parts = name.split("_")
    if len(parts) != 6 or parts[0] != "k8s":
        return None
    return KubeletName(parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class Socket:
    state: str
    local: tuple[str, int]
    peer: tuple[str, int | None]
    process: str
    line: str


def _addr(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]").removeprefix("::ffff:")
    return host, int(port) if port.isdigit() else None


_SS_PROCESS = re.compile(r'users:\(\("([^"]+)"')
_STATES = {"LISTEN": "LISTEN", "ESTABLISHED": "ESTABLISHED", "ESTAB": "ESTABLISHED"}


def sockets(text: str) -> list[Socket]:
    """TCP sockets from `netstat -antp` (the course's) or `ss -antp` (when net-tools is absent)."""
    found = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 7 and f[0].startswith("tcp") and f[5] in _STATES:
            # netstat: proto recv-q send-q local peer state pid/program
            state, local, peer = _STATES[f[5]], f[3], f[4]
            process = f[6].partition("/")[2]
        elif len(f) >= 5 and f[0] in _STATES:
            # ss: state recv-q send-q local peer users:(("program",pid=..,fd=..))
            state, local, peer = _STATES[f[0]], f[3], f[4]
            m = _SS_PROCESS.search(line)
            process = m.group(1) if m else ""
        else:
            continue
        host, port = _addr(local)
        if port is None:
            continue
        found.append(Socket(state, (host, port), _addr(peer), process, line.strip()))
    return found


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[tuple[int, str], ...]
    line: str


def services(text: str) -> list[Service]:
    """`kubectl get svc -A`; PORT(S) like 53/UDP,53/TCP or 8080:30080/TCP (port first).
    Old kubectl prints CLUSTER-IP without a TYPE column: columns are found by header."""
    found = []
    for (name, cluster_ip, listed), r in _cells(text, ("NAME", "CLUSTER-IP", "PORT(S)")):
        ports = []
        for item in listed.split(","):
            m = re.match(r"^(\d+)(?::\d+)?/(\w+)$", item)
            if m:
                ports.append((int(m.group(1)), m.group(2).upper()))
        if ports:
            found.append(
                Service(r.get("NAMESPACE", "default"), name, cluster_ip, tuple(ports), r["_line"])
            )
    return found


@dataclass(frozen=True)
class ServiceRule:
    """A KUBE-SERVICES rule matching one ClusterIP:port (either table)."""

    ip: str
    proto: str
    port: int
    target: str  # KUBE-SVC-..., KUBE-SVL-..., KUBE-MARK-MASQ, REJECT
    negated_source: bool  # "! -s <podCIDR>": the masquerade rule, not the Service's jump
    line: str

    @property
    def is_service_jump(self) -> bool:
        return self.target.startswith(("KUBE-SVC-", "KUBE-SVL-")) and not self.negated_source


def iptables_rules(text: str, prefix: str = "-A ") -> Iterator[tuple[str, list[str]]]:
    """(line, its shell words) of each `iptables -S` line starting with `prefix`; a line the
    shell cannot split (an unbalanced quote) is passed over."""
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            yield line, shlex.split(line)
        except ValueError:
            continue


def service_rules(text: str) -> list[ServiceRule]:
    """KUBE-SERVICES rules for an IP and port from `iptables -S` (nat: the jumps to the
    Service chains; filter: kube-proxy's REJECT of a Service with no endpoints), any order."""
    found = []
    for line, words in iptables_rules(text, "-A KUBE-SERVICES "):
        opts, negated = {}, set()
        for i, word in enumerate(words[:-1]):
            if word.startswith("-") and not words[i + 1].startswith("-"):
                opts[word] = words[i + 1]
                if i and words[i - 1] == "!":
                    negated.add(word)
        if "-d" in opts and "-p" in opts and opts.get("--dport", "").isdigit():
            found.append(
                ServiceRule(
                    opts["-d"].removesuffix("/32"),
                    opts["-p"].upper(),
                    int(opts["--dport"]),
                    opts.get("-j", ""),
                    "-s" in negated,
                    line.strip(),
                )
            )
    return found


# `curl 127.0.0.1:6784/status/connections`: "-> 10.0.2.4:6783  established fastdp
# 5a:..(slave1) mtu=1376"; failed/retrying targets carry the error instead of a peer.
_WEAVE_CONNECTION = re.compile(r"^(?:->|<-)\s+(\S+)\s+(\S+)\s*(.*)$")
_WEAVE_STATES = ("established", "pending", "retrying", "connecting", "failed")


@dataclass(frozen=True)
class WeaveConnection:
    ip: str
    state: str  # established, pending, retrying, connecting, failed
    info: str  # the data path, peer and MTU; or weave's reason

    @property
    def path(self) -> str:
        """fastdp or sleeve, "" when weave has none yet."""
        words = [w for w in self.info.split() if w not in ("encrypted", "unencrypted")]
        return words[0] if words and words[0] in ("fastdp", "sleeve") else ""

    @property
    def mtu(self) -> str:
        return next((w for w in self.info.split() if w.startswith("mtu=")), "")

    @property
    def reason(self) -> str:
        return self.info.split(", retry:")[0] or "no reason given"


def weave_connections(text: str) -> list[WeaveConnection]:
    """Weave's /status/connections page, one connection per line, either direction."""
    found = []
    for line in text.splitlines():
        m = _WEAVE_CONNECTION.match(line.strip())
        if m:
            ip = m.group(1).rpartition(":")[0]
            found.append(WeaveConnection(ip, m.group(2), " ".join(m.group(3).split())))
    return found


def weave_connection_to(conns: list[WeaveConnection], ip: str) -> WeaveConnection | None:
    """The most advanced connection with `ip` (weave lists a retried one next to the one
    that got established)."""
    order = {s: i for i, s in enumerate(_WEAVE_STATES)}
    mine = sorted((c for c in conns if c.ip == ip), key=lambda c: order.get(c.state, 99))
    return mine[0] if mine else None


def addresses(text: str) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """`ip -o -4 addr`: (interface, address/prefix) pairs."""
    found = []
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", line.strip())
        if m:
            found.append((m.group(1).split("@")[0], ipaddress.IPv4Interface(m.group(2))))
    return found


@dataclass(frozen=True)
class Link:
    name: str  # without its "@peer" part
    mac: str
    master: str  # the bridge it is plugged into (weave), or ""
    up: bool


def links(text: str) -> list[Link]:
    """`ip -o link`: each interface with its MAC, bridge and state."""
    found = []
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+([^:]+):.*\slink/\S+\s+([0-9a-f:]{17})", line.strip())
        if m:
            master = re.search(r"\smaster\s+(\S+)", line)
            up = re.search(r"\sstate\s+(UP|UNKNOWN)\s", line) is not None
            found.append(
                Link(m.group(1).split("@")[0], m.group(2), master.group(1) if master else "", up)
            )
    return found


@dataclass(frozen=True)
class ServiceEndpoint:
    chain: str  # KUBE-SEP-...
    ip: str
    port: int


def service_endpoints(text: str) -> dict[str, list[ServiceEndpoint]]:
    """From `iptables -S -t nat`: each KUBE-SVC-... chain's KUBE-SEP-... jumps, in rule
    order, with the pod IP:port the KUBE-SEP chain DNATs to."""
    dnat = {}
    for _, words in iptables_rules(text, "-A KUBE-SEP-"):
        if "--to-destination" in words[:-1]:
            ip, _, port = words[words.index("--to-destination") + 1].rpartition(":")
            if port.isdigit():
                dnat[words[1]] = (ip, int(port))
    found: dict[str, list[ServiceEndpoint]] = {}
    for _, words in iptables_rules(text, "-A KUBE-SVC-"):
        target = words[words.index("-j") + 1] if "-j" in words[:-1] else ""
        if target in dnat:
            found.setdefault(words[1], []).append(ServiceEndpoint(target, *dnat[target]))
    return found
