"""What every labctl command shares: the global options, errors as one-line exits, the
terminal (width, colour, progress) and connecting to the hosts.

Only click and the topology are imported here: paramiko, jinja2 and the checks are imported
by the commands that use them, so `labctl --help` and `labctl labs` start fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from k8slab.errors import LabctlError

if TYPE_CHECKING:
    from k8slab.checks.engine import Report
    from k8slab.labs import Lab
    from k8slab.ssh import Fleet, Result
    from k8slab.topology import Host, Topology

FORMATS = ("table", "json", "junit")


def report_options(command: Callable) -> Callable:
    """--format, --record and --replay: the output options every grading command shares."""
    for option in reversed(
        (
            click.option(
                "--format",
                "fmt",
                type=click.Choice(FORMATS),
                default="table",
                show_default=True,
            ),
            click.option(
                "--record",
                type=click.Path(file_okay=False),
                help="Save every command's output and exit code here (a support bundle).",
            ),
            replay_option("Grade"),
        )
    ):
        command = option(command)
    return command


def replay_option(verb: str) -> Callable:
    return click.option(
        "--replay",
        # not exists=True: click's usage error is three lines; the bundle says it in one
        type=click.Path(),
        metavar="BUNDLE",
        help=f"{verb} a bundle saved with --record (its folder or .tgz), offline (no SSH).",
    )


class UsageError(click.ClickException):
    """Usage, configuration and connection problems exit 2, as the issue asks."""

    exit_code = 2


@dataclass
class State:
    config: str | None
    known_hosts: str | None
    ask_pass: bool

    def topology(self) -> Topology:
        from k8slab.topology import load, which_note

        note = which_note(self.config)
        if note:
            click.echo(f"labctl: {note}", err=True)
        return load(self.config)

    def lab(self, lab_id: str | None, topo: Topology) -> Lab:
        from k8slab.labs import load_lab

        return load_lab(lab_id or default_lab(), topo)

    def replayed(self, replay: str, lab_id: str | None):
        """A lab's bundle (`--replay`): (the bundle, its topology, its lab); a bundle of
        another lab than `lab_id` is one line."""
        from pathlib import Path

        from k8slab.checks import bundle

        recorded = bundle.Replay(Path(replay))
        if lab_id and lab_id != recorded.lab:
            raise UsageError(f"{replay} is a bundle of lab {recorded.lab}, not {lab_id}")
        topo = recorded.topology
        return recorded, topo, self.lab(recorded.lab, topo)

    def fleet(self, topo: Topology, hosts: list[Host], partial: bool = False) -> Fleet:
        """Connect to `hosts` all at once before anything runs. Each unreachable host is one
        line on stderr; unless `partial` (the command goes on with the others and marks
        theirs as errors), that ends the command with exit 2."""
        from k8slab.ssh import PASSWORD_ENV, Fleet, check_keys

        password = None
        if self.ask_pass and not os.environ.get(PASSWORD_ENV):
            password = click.prompt("SSH password", hide_input=True)
        check_keys(hosts)
        fleet = Fleet(topo.hosts, self.known_hosts, password)
        names = [h.name for h in hosts]
        if on_tty():
            say_progress(f"connecting to {', '.join(names)} ...")
        failed = fleet.connect_all(names, waiting=_say_waiting(topo))
        say_progress("")
        lines = [str(failed[n]) for n in names if n in failed]
        if failed and (not partial or len(failed) == len(names)):
            fleet.close()
            # click prints "Error: " before the first line: one line per host, exit 2
            raise UsageError("\nError: ".join(lines))
        for line in lines:
            click.echo(f"Error: {line}", err=True)
        return fleet


def _say_waiting(topo: Topology) -> Callable[[list[str]], None]:
    def waiting(names: list[str]) -> None:
        where = ", ".join(f"{n} ({topo.host(n).ssh_host}:{topo.host(n).ssh_port})" for n in names)
        say_progress("")
        click.echo(f"waiting for {where} to answer SSH (up to 10 s) ...", err=True)

    return waiting


def default_lab() -> str:
    from k8slab.labs import LabError, lab_ids

    ids = lab_ids()
    if len(ids) != 1:
        raise LabError(f"name a lab ({', '.join(ids) or 'none found'})")
    return ids[0]


def one_line_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LabctlError as e:
            from k8slab.topology import TopologyError

            lines = str(e).splitlines() or [type(e).__name__]
            if isinstance(e, TopologyError):  # every mistake of the file, one line each
                raise UsageError("\nError: ".join(lines)) from None
            raise UsageError(lines[0]) from None

    return wrapper


def confirm(question: str, what: str, yes: bool) -> None:
    """Ask before changing hosts; with no terminal to ask on, only --yes goes ahead."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{what}: pass --yes (no terminal to ask on)")
    click.confirm(question, abort=True)


# --- the terminal ----------------------------------------------------------------------


def width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (piped)."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def on_tty() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def colour() -> bool:
    """Colour only for a person at a terminal, and never with $NO_COLOR (no-color.org)."""
    plain = os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb"
    return sys.stdout.isatty() and not plain


def say_progress(text: str) -> None:
    """One line on stderr that the next one overwrites (TTY only); '' clears it."""
    if on_tty():
        sys.stderr.write("\r\033[K" + text[: width() - 1])
        sys.stderr.flush()


class Progress:
    """Wraps a command runner to show, on a TTY, how many commands each host has answered.
    Prints nothing when piped, so json/junit output and logs stay clean."""

    def __init__(self, run: Callable[[str, str], Result], hosts: list[str], enabled: bool):
        self._run = run
        self._done = dict.fromkeys(hosts, 0)
        self._lock = threading.Lock()
        self.enabled = enabled and on_tty()

    def __call__(self, host: str, cmd: str) -> Result:
        try:
            return self._run(host, cmd)
        finally:
            if self.enabled:
                with self._lock:
                    self._done[host] = self._done.get(host, 0) + 1
                    counts = ", ".join(f"{h} {n}" for h, n in self._done.items())
                    say_progress(f"checking ... commands answered: {counts}")

    def clear(self) -> None:
        if self.enabled:
            say_progress("")


@contextlib.contextmanager
def graded_live(state: State, topo: Topology, hosts: list[Host], fmt: str):
    """Connect to `hosts` (each unreachable one reported, the others kept) and yield the
    fleet and a command runner showing progress on a terminal (table format only)."""
    with state.fleet(topo, hosts, partial=True) as fleet:
        progress = Progress(fleet.run, [h.name for h in hosts], fmt == "table")
        try:
            yield fleet, progress
        finally:
            progress.clear()


def mark_unreachable(report: Report, fleet: Fleet) -> Report:
    """Rows of hosts that could not be reached: an error with the connection error and its
    next step, not the check's own hint (which would blame the cluster), nor a skip that a
    prerequisite on another host caused."""
    rows = []
    for r in report.results:
        for e in fleet.unreachable.values():
            if r.status == "error" and r.evidence.startswith(e.args[0]):
                r = dataclasses.replace(r, evidence=e.args[0], hint=e.hint)
        e = fleet.unreachable.get(r.host)
        if e is not None and r.status == "skip":
            r = dataclasses.replace(r, status="error", evidence=e.args[0], hint=e.hint)
        rows.append(r)
    return dataclasses.replace(report, results=tuple(rows))


def echo_report(report: Report, fmt: str) -> None:
    from k8slab.checks import report as reports

    click.echo(reports.render(report, fmt, width=width(), colour=colour()))
