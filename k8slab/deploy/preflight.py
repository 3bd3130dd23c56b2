"""Phase 0, pre-flight: `labctl doctor`'s checks on every host, once per run, before any
phase changes anything. A failed check stops the deploy with its hosts, evidence and hint.

Skip a check you have judged harmless with pyinfra's --data (comma-separated ids or groups):

    pyinfra -y inventory/lab.py deploys/cluster.py --data skip_checks=clock,unique.mac
"""

from __future__ import annotations

import sys
import threading

import click
from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra_cli.exceptions import CliError

from k8slab import doctor
from k8slab.checks.report import render
from k8slab.labs import LabError
from k8slab.ssh import Fleet, SSHError, known_hosts_path
from k8slab.topology import load

# pyinfra loads the deploy file for every host at once; the checks need every host, so
# the first host runs them and the others wait for its verdict.
_lock = threading.Lock()
_verdict: list[str] = []


def preflight() -> None:
    with _lock:
        if not _verdict:
            _verdict.append(_run_doctor(_skipped()))
    if _verdict[0]:
        raise PreflightFailed(_verdict[0])


class PreflightFailed(PyinfraError, CliError):
    """Stops the run with our one line and exit 1. A PyinfraError, so that pyinfra passes it
    on from the deploy file unwrapped; a CliError, so that its command line re-raises it for
    click, which calls show(). A plain PyinfraError would read "pyinfra error in
    .../preflight.py line 34:", like a crash; sys.exit in pyinfra's greenlets ends in a
    gevent traceback when several hosts load the deploy at once."""

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


def _skipped() -> tuple[str, ...]:
    return tuple(s.strip() for s in str(host.data.get("skip_checks") or "").split(",") if s.strip())


def _run_doctor(skip: tuple[str, ...]) -> str:
    """ "" when every check passes, else the one line that stops the deploy."""
    topo = load()
    try:
        lab, checks = doctor.prepare(topo, skip)
        with Fleet(topo.hosts, known_hosts_path()) as fleet:
            report, _ = doctor.check(topo, fleet, lab, checks)
    except (LabError, SSHError) as e:
        return f"k8s-lab: {e}"
    failed: dict[str, list[str]] = {}
    for r in report.results:
        if r.status in ("fail", "error"):
            failed.setdefault(r.id, []).append(r.host)
    if not failed:
        return ""
    print(render(report, "table"), file=sys.stderr)
    names = "; ".join(f"{check} on {', '.join(hosts)}" for check, hosts in failed.items())
    said = f"k8s-lab: pre-flight failed, nothing was changed: {names}. Fix it (hints above)"
    # Skipping `sources` only moves its failure into the deploy, after hosts were changed.
    skippable = [check for check in failed if check != "sources"]
    if "sources" in failed:
        said += f"; {SOURCES}"
    if skippable:
        said += f", or skip a check you accept: --data skip_checks={','.join(skippable)}"
    return said


SOURCES = (
    "sources: the hosts cannot download what the deploy needs, so point the topology's keys "
    "at a mirror or at files on this machine (kube_apt_repo, docker_apt_repo or "
    "docker_source: distro, cri_dockerd_url, image_archives: docs/offline.md "
    '"Offline and mirror sources")'
)
