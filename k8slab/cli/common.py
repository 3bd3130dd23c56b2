"""What every labctl command shares: the global options, and errors as one-line exits."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import click

from k8slab.checks import report
from k8slab.checks.bundle import BundleError
from k8slab.labs import Lab, LabError, lab_ids, load_lab
from k8slab.ssh import PASSWORD_ENV, Fleet, SSHError
from k8slab.topology import Host, Topology, TopologyError, load


def report_options(command: Callable) -> Callable:
    """--format, --record and --replay: the output options every grading command shares."""
    for option in reversed(
        (
            click.option(
                "--format",
                "fmt",
                type=click.Choice(report.FORMATS),
                default="table",
                show_default=True,
            ),
            click.option(
                "--record",
                type=click.Path(file_okay=False),
                help="Save every command's output and exit code here (a support bundle).",
            ),
            click.option(
                "--replay",
                type=click.Path(file_okay=False, exists=True),
                help="Grade a bundle saved with --record, offline (no SSH).",
            ),
        )
    ):
        command = option(command)
    return command


class UsageError(click.ClickException):
    """Usage, configuration and connection problems exit 2, as the issue asks."""

    exit_code = 2


@dataclass
class State:
    config: str | None
    known_hosts: str | None
    ask_pass: bool

    def topology(self) -> Topology:
        return load(self.config)

    def lab(self, lab_id: str | None, topo: Topology) -> Lab:
        return load_lab(lab_id or default_lab(), topo)

    def fleet(self, topo: Topology, hosts: list[Host]) -> Fleet:
        """Connect to `hosts` (in parallel) before anything runs, so an unreachable host is
        reported once, by name, instead of once per check."""
        password = None
        if self.ask_pass and not os.environ.get(PASSWORD_ENV):
            password = click.prompt("SSH password", hide_input=True)
        fleet = Fleet(topo.hosts, self.known_hosts, password)
        try:
            with ThreadPoolExecutor(max(1, len(hosts))) as pool:
                for future in [pool.submit(fleet.client, h.name) for h in hosts]:
                    future.result()
        except SSHError:
            fleet.close()
            raise
        return fleet


def default_lab() -> str:
    ids = lab_ids()
    if len(ids) != 1:
        raise LabError(f"name a lab ({', '.join(ids) or 'none found'})")
    return ids[0]


def one_line_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (TopologyError, LabError, SSHError, BundleError) as e:
            raise UsageError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None

    return wrapper
