"""Host pre-flight checks (`labctl doctor`): can the topology's hosts become the cluster?

The checks are data (k8slab/preflight/lab.yaml) graded by the lab engine; host-specific kinds
are in k8slab.checks.host_kinds. Nothing here changes a host::

    >>> lab, checks = doctor.prepare(topo, skip=("clock",))   # before connecting anywhere
    >>> with Fleet(topo.hosts) as fleet:
    ...     report, _ = doctor.check(topo, fleet, lab, checks)
    >>> report.exit_code
    0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from k8slab.checks import host_kinds
from k8slab.checks.engine import Commands, Report, verify
from k8slab.labs import Check, Lab, load_lab
from k8slab.ssh import Fleet, Result
from k8slab.topology import PACKAGE_ROOT, Topology

CHECKS_ROOT = PACKAGE_ROOT
LAB_ID = "preflight"

Run = Callable[[str, str], Result]


def load(topo: Topology) -> Lab:
    return load_lab(LAB_ID, topo, root=CHECKS_ROOT)


def select(lab: Lab, skip: tuple[str, ...] = ()) -> tuple[Check, ...]:
    """Every check but those named in `skip` (an id, or a group such as `unique`)."""
    dropped = {c.id for c in lab.select_checks(skip)} if skip else set()
    return tuple(c for c in lab.checks if c.id not in dropped)


def with_local_clock(run: Run) -> Run:
    """Append this machine's clock, read just before and after, to the host's `date` output,
    so the clock check can allow for the round trip (and a recorded bundle keeps it)."""

    def timed(host: str, cmd: str) -> Result:
        if cmd != host_kinds.CLOCK_COMMAND:
            return run(host, cmd)
        before = time.time()
        r = run(host, cmd)
        after = time.time()
        mark = f"{host_kinds.CLOCK_MARK} {before:.3f} {after:.3f}\n"
        return Result(r.stdout + mark, r.stderr, r.exit_code)

    return timed


def grade(
    lab: Lab, topo: Topology, commands: Commands, checks: tuple[Check, ...], replayed=False
) -> Report:
    """Grade the host checks; kinds that compare hosts read the others through `commands`."""
    with host_kinds.across(commands):
        return verify(lab, topo, commands, checks, replayed=replayed)


def prepare(topo: Topology, skip: tuple[str, ...] = ()) -> tuple[Lab, tuple[Check, ...]]:
    """The checks to run; an unknown name in `skip` is a LabError, before any connection."""
    lab = load(topo)
    return lab, select(lab, skip)


def check(
    topo: Topology, fleet: Fleet, lab: Lab, checks: tuple[Check, ...], run: Run | None = None
) -> tuple[Report, Commands]:
    """Grade every host over SSH (labctl doctor, and the deploy before it changes anything).

    sudo wanting a password is a configuration problem: SSHError (one line) before any row.
    Hosts the fleet could not reach are graded too: their rows are errors. `run` (default
    fleet.run) may wrap the fleet, e.g. to show progress.
    """
    reachable = [h for h in topo.hosts if h.name not in fleet.unreachable]
    with ThreadPoolExecutor(max(1, len(reachable))) as pool:
        for f in [pool.submit(fleet.run, h.name, "sudo true") for h in reachable]:
            f.result()
    commands = Commands(with_local_clock(run or fleet.run))
    return grade(lab, topo, commands, checks), commands


def warnings(report: Report) -> int:
    """Passes whose evidence (or one of its " | " parts) starts with "warning: "."""
    return sum(
        any(part.startswith(host_kinds.WARNING) for part in r.evidence.split(" | "))
        for r in report.results
        if r.status == "pass"
    )
