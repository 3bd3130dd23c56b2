"""Grade a lab: run its checks' commands on the hosts (or read them from a bundle) and
evaluate each check's assertions, check by check and host by host.

Checks never change anything. Independent checks run in parallel; the same command on the
same host runs once and is shared::

    >>> report = verify(lab, topo, Commands(fleet.run))
    >>> report.exit_code
    0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from k8slab.checks.kinds import KINDS, CommandFailed, Context
from k8slab.checks.parse import TableError
from k8slab.labs import Check, Lab
from k8slab.ssh import Result, SSHError
from k8slab.topology import Host, Topology

STATUSES = ("pass", "fail", "skip", "error")
MAX_PARALLEL = 16


class NotRecorded(SSHError):
    """A replayed bundle has no output for a command a check needs."""


Run = Callable[[str, str], Result]


class Commands:
    """Runs each (host, command) once, however many checks read it, and keeps every result
    (in order) so `--record` can save them."""

    def __init__(self, run: Run):
        self._run = run
        self._lock = threading.Lock()
        self._once: dict[tuple[str, str], threading.Lock] = {}
        self.results: dict[tuple[str, str], tuple[Result, float]] = {}

    def __call__(self, host: str, cmd: str) -> Result:
        key = (host, cmd)
        with self._lock:
            once = self._once.setdefault(key, threading.Lock())
        with once:
            if key not in self.results:
                start = time.monotonic()
                result = self._run(host, cmd)
                self.results[key] = (result, time.monotonic() - start)
            return self.results[key][0]


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    host: str
    status: str
    evidence: str
    hint: str
    seconds: float


@dataclass(frozen=True)
class Report:
    lab: str
    title: str
    results: tuple[CheckResult, ...]
    seconds: float
    replayed: bool
    note: str = ""  # one line the summary ends with (e.g. no cluster yet)

    @property
    def totals(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def exit_code(self) -> int:
        if self.note:
            return 1
        return 0 if all(r.status in ("pass", "skip") for r in self.results) else 1


def hosts_needed(checks: tuple[Check, ...], topo: Topology) -> list[Host]:
    """Every host the checks will connect to, in topology order."""
    names = {h.name for c in checks for h in c.hosts(topo)}
    if any(cmd.on_master for c in checks for cmd in c.run.values()):
        names.add(topo.control_plane.name)
    return [h for h in topo.hosts if h.name in names]


def _grade(check: Check, host: Host, topo: Topology, commands: Commands) -> tuple[str, str, str]:
    """(status, evidence, hint): the hint is the failing outcome's own, else the check's."""
    master = topo.control_plane.name
    results = {}
    try:
        for name, cmd in check.run.items():
            results[name] = commands(master if cmd.on_master else host.name, cmd.cmd)
    except SSHError as e:
        return "error", str(e), check.hint
    ctx = Context(host, topo, {n: c.cmd for n, c in check.run.items()}, results)
    evidence = []
    for assertion in check.expect:
        params = {k: v for k, v in assertion.items() if k != "kind"}
        try:
            outcome = KINDS[assertion["kind"]].evaluate(ctx, params)
        except (CommandFailed, TableError) as e:
            return "fail", str(e), check.hint
        if outcome.skip:
            return "skip", outcome.evidence, ""
        if not outcome.ok:
            return "fail", outcome.evidence, outcome.hint or check.hint
        evidence.append(outcome.evidence)
    return "pass", " | ".join(dict.fromkeys(evidence)), ""


def _one_line(text: str) -> str:
    # Column padding of kubectl/netstat lines is noise in a report; keep the words.
    return " ".join(text.split())


def verify(
    lab: Lab,
    topo: Topology,
    commands: Commands,
    checks: tuple[Check, ...] | None = None,
    replayed: bool = False,
) -> Report:
    """Grade `checks` (all of the lab's by default). A check whose `after:` check (when also
    selected) did not pass on every host is skipped; the rest run in parallel waves."""
    selected = checks if checks is not None else lab.checks
    ids = {c.id for c in selected}
    start = time.monotonic()
    done: dict[tuple[str, str], CheckResult] = {}
    remaining = list(selected)
    with ThreadPoolExecutor(MAX_PARALLEL) as pool:
        while remaining:
            ready = [
                c for c in remaining if all(d not in ids or _finished(d, done) for d in c.after)
            ]
            remaining = [c for c in remaining if c.id not in {r.id for r in ready}]
            jobs = {}
            for c in ready:
                for h in c.hosts(topo):
                    blocked = [d for d in c.after if d in ids and not _passed(d, done, h.name)]
                    if blocked:
                        done[(c.id, h.name)] = CheckResult(
                            c.id,
                            c.title,
                            h.name,
                            "skip",
                            _why_skipped(blocked[0], done, h.name),
                            "",
                            0.0,
                        )
                    else:
                        jobs[(c.id, h.name)] = c, h, pool.submit(_timed, c, h, topo, commands)
            for c, h, fut in jobs.values():
                status, evidence, hint, seconds = fut.result()
                evidence = _one_line(evidence)
                done[(c.id, h.name)] = CheckResult(
                    c.id, c.title, h.name, status, evidence, hint, seconds
                )
    ordered = tuple(done[(c.id, h.name)] for c in selected for h in c.hosts(topo))
    return Report(lab.id, lab.title, ordered, time.monotonic() - start, replayed)


def _timed(check: Check, host: Host, topo: Topology, commands: Commands):
    start = time.monotonic()
    status, evidence, hint = _grade(check, host, topo, commands)
    return status, evidence, hint, round(time.monotonic() - start, 3)


def _finished(check_id: str, done: dict) -> bool:
    return any(k[0] == check_id for k in done)


def _why_skipped(check_id: str, done: dict, host: str) -> str:
    """The prerequisite and what it found (on this host when it ran here), so a skipped row
    says why without its hint: the hint is shown once, on the prerequisite's own row."""
    mine = done.get((check_id, host))
    failed = [r for k, r in done.items() if k[0] == check_id and r.status != "pass"]
    first = mine if mine is not None and mine.status != "pass" else failed[0]
    if first.status == "skip":
        return first.evidence  # already names the prerequisite that failed first
    return f"{check_id} did not pass ({first.status} on {first.host}: {first.evidence})"


def _passed(check_id: str, done: dict, host: str) -> bool:
    """The check passed on `host` when it ran there, else on every host it ran on: an
    unreachable slave2 does not block master's later checks."""
    mine = done.get((check_id, host))
    if mine is not None:
        return mine.status == "pass"
    return all(r.status == "pass" for k, r in done.items() if k[0] == check_id)
