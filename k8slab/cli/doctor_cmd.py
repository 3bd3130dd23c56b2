"""labctl doctor: pre-flight checks of the hosts, read-only, one row per check and host."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from k8slab.cli import common
from k8slab.cli.common import State, UsageError, one_line_errors, report_options


@click.command()
@click.option(
    "--skip",
    multiple=True,
    metavar="CHECK",
    help="Leave out this check or group, e.g. clock or unique (repeatable).",
)
@report_options
@click.pass_obj
@one_line_errors
def doctor(
    state: State, skip: tuple[str, ...], fmt: str, record: str | None, replay: str | None
) -> None:
    """Check every host of the topology before deploying: SSH and sudo, OS release, CPUs
    and memory, swap, cgroup v2, kernel modules, unique hostname/MAC/product_uuid, node_ip,
    subnets, ports and clock. Changes nothing. A warning is a PASS whose evidence starts
    with "warning:". Every host is reported: one that cannot be reached gets error rows.
    Exit 0 if all pass, 1 if any fails, 2 on configuration or connection errors.

    \b
    Example:
      labctl doctor                          # the VMs over SSH; no cluster needed
      labctl doctor --skip clock --format json
      labctl doctor --record doctor-bundle/  # send it along with a question
    """
    from k8slab import doctor as lib
    from k8slab.checks import bundle
    from k8slab.checks.engine import Commands

    if record and replay:
        raise UsageError("--record and --replay cannot be combined")
    if replay:
        recorded = bundle.Replay(Path(replay))
        if recorded.lab != lib.LAB_ID:
            raise UsageError(f"{replay} is a bundle of lab {recorded.lab}, not of labctl doctor")
        topo = recorded.topology
        lab = lib.load(topo)
        recorded_ids = set(recorded.check_ids)
        checks = tuple(c for c in lib.select(lab, skip) if c.id in recorded_ids)
        result = lib.grade(lab, topo, Commands(recorded.run), checks, replayed=True)
    else:
        topo = state.topology()
        lab, checks = lib.prepare(topo, skip)
        with common.graded_live(state, topo, list(topo.hosts), fmt) as (fleet, run):
            result, commands = lib.check(topo, fleet, lab, checks, run=run)
            result = common.mark_unreachable(result, fleet)
        if record:
            bundle.write(Path(record), lib.LAB_ID, [c.id for c in checks], topo, commands)
            click.echo(f"recorded {len(commands.results)} commands in {record}", err=True)
    common.echo_report(result, fmt)
    if fmt == "table" and lib.warnings(result):
        click.echo(f"{lib.warnings(result)} of the passes carry a warning (see their evidence)")
    if any(r.status == "error" for r in result.results):
        sys.exit(2)
    sys.exit(result.exit_code)
