"""Parsers for the command outputs the checks read, written against the course's printed outputs.

They read what a person reads (kubectl tables, docker ps, netstat/ss, iptables -S) rather
than JSON, so the course's own outputs are the test fixtures. Unknown lines are skipped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass


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


# RESTARTS is "8" in old kubectl and "8 (3m ago)" in current ones: the only column with spaces.
_POD_TAIL = re.compile(
    r"(?P<ready>\d+/\d+)\s+(?P<status>\S+)\s+(?P<restarts>\d+(?:\s+\([^)]*\))?)\s+"
    r"(?P<age>\S+)\s+(?P<ip>\S+)\s+(?P<node>\S+)"
)


_WITH_NS = re.compile(r"^(?P<ns>\S+)\s+(?P<name>\S+)\s+" + _POD_TAIL.pattern)
_WITHOUT_NS = re.compile(r"^(?P<name>\S+)\s+" + _POD_TAIL.pattern)


def pods(text: str) -> list[Pod]:
    """`kubectl get pod [-A] -o wide`, header or not (the course greps it); rows without a
    namespace column are in default. READY never parses as a name, so rows are unambiguous."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        m = _WITH_NS.match(line) or _WITHOUT_NS.match(line)
        if m:
            ns = m.groupdict().get("ns") or "default"
            found.append(Pod(ns, m["name"], m["ready"], m["status"], m["ip"], m["node"], line))
    return found


@dataclass(frozen=True)
class Container:
    name: str
    up: bool
    line: str


def containers(text: str) -> list[Container]:
    """`docker ps`: NAMES is the last column; STATUS starts with "Up" while running."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] == "CONTAINER":
            continue
        found.append(Container(fields[-1], bool(re.search(r"\sUp\s", line)), line.strip()))
    return found


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
    """`kubectl get svc -A`; PORT(S) like 53/UDP,53/TCP or 8080:30080/TCP (port first)."""
    found = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or f[0] == "NAMESPACE":
            continue
        ports = []
        for item in f[5].split(","):
            m = re.match(r"^(\d+)(?::\d+)?/(\w+)$", item)
            if m:
                ports.append((int(m.group(1)), m.group(2).upper()))
        if ports:
            found.append(Service(f[0], f[1], f[3], tuple(ports), line.strip()))
    return found


@dataclass(frozen=True)
class NatRule:
    ip: str
    proto: str
    port: int
    line: str


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


def service_rules(text: str) -> list[NatRule]:
    """KUBE-SERVICES jumps from `iptables -S -t nat`, in any option order."""
    found = []
    for line, words in iptables_rules(text, "-A KUBE-SERVICES "):
        opts = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("-")}
        if "-d" in opts and "-p" in opts and opts.get("--dport", "").isdigit():
            ip = opts["-d"].removesuffix("/32")
            found.append(NatRule(ip, opts["-p"].upper(), int(opts["--dport"]), line.strip()))
    return found


def table_row(text: str, name: str) -> dict[str, str] | None:
    """The row named `name` of a kubectl table, keyed by header (multi-word headers unused)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    header = lines[0].split()
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0] == name:
            return {**dict(zip(header, fields, strict=False)), "_line": line.strip()}
    return None
