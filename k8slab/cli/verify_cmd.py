"""labctl verify: grade a lab live over SSH, or offline from a recorded bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from k8slab.cli import common
from k8slab.cli.common import State, UsageError, one_line_errors, report_options


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option(
    "--only",
    multiple=True,
    metavar="ID",
    help="Run only this check or group, e.g. net (repeatable).",
)
@report_options
@click.pass_obj
@one_line_errors
def verify(
    state: State,
    lab_id: str | None,
    only: tuple[str, ...],
    fmt: str,
    record: str | None,
    replay: str | None,
) -> None:
    """Run the lab's checks and grade them: exit 0 if all pass, 1 if any fails, 2 on
    usage, configuration or connection errors. A host that cannot be reached is reported
    and its checks are errors; the others are graded.

    \b
    Example:
      labctl verify                                  # over SSH, on the cluster
      labctl verify ch09 --only storage --format json
      labctl verify --record bundle/ && tar czf bundle.tgz bundle/
      labctl verify --replay bundle.tgz              # offline, no cluster needed
    """
    from k8slab import cluster
    from k8slab.checks import bundle
    from k8slab.checks.engine import Commands, hosts_needed
    from k8slab.checks.engine import verify as grade

    if record and replay:
        raise UsageError("--record and --replay cannot be combined")
    unreachable = False
    if replay:
        recorded, topo, lab = state.replayed(replay, lab_id)
        checks = lab.select_checks(only or recorded.check_ids)
        result = grade(lab, topo, Commands(recorded.run), checks, replayed=True)
    else:
        topo = state.topology()
        lab = state.lab(lab_id, topo)
        checks = lab.select_checks(only)
        hosts = hosts_needed(checks, topo)
        with common.graded_live(state, topo, hosts, fmt) as (fleet, run):
            # Asked first and not recorded: a bundle holds what the checks ran.
            no_cluster = cluster.missing(run, topo, lab.values["kubectl"])
            if no_cluster:
                click.echo(f"Error: {no_cluster}", err=True)
            commands = Commands(run)
            result = common.mark_unreachable(grade(lab, topo, commands, checks), fleet)
            if no_cluster:
                result = cluster.skip_checks(result, no_cluster, lab.values["kubectl"])
            unreachable = bool(fleet.unreachable)
        if record:
            bundle.write(Path(record), lab.id, [c.id for c in checks], topo, commands)
            click.echo(f"recorded {len(commands.results)} commands in {record}", err=True)
    common.echo_report(result, fmt)
    sys.exit(2 if unreachable else result.exit_code)
