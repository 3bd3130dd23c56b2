"""labctl status: nodes, Weave peers and the lab's objects, read-only."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from k8slab.cli.common import State, UsageError, one_line_errors, replay_option, width

BUNDLE_LAB = "status"


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table")
@click.option(
    "--record", type=click.Path(file_okay=False), help="Save every command's output here."
)
@replay_option("Show")
@click.pass_obj
@one_line_errors
def status(
    state: State, lab_id: str | None, fmt: str, record: str | None, replay: str | None
) -> None:
    """Show the nodes (Ready, version, InternalIP, runtime) from `kubectl get nodes -o wide`
    on master, each node's Weave connections (127.0.0.1:6784/status), and whether the lab's
    objects exist. Changes nothing. A host that cannot be reached is named, and the others
    are shown (exit 2); with no cluster yet, that is the one line (exit 1).

    \b
    Example:
      labctl status                      # on the cluster, over SSH
      labctl status ch09 --format json
    """
    from k8slab import cluster
    from k8slab import status as lib
    from k8slab.checks import bundle
    from k8slab.checks.engine import Commands
    from k8slab.labs import load_lab

    unreachable = False
    if record and replay:
        raise UsageError("--record and --replay cannot be combined")
    if replay:
        recorded = bundle.Replay(Path(replay))
        if recorded.lab != BUNDLE_LAB:
            raise UsageError(f"{replay} is a bundle of lab {recorded.lab}, not of labctl status")
        topo = recorded.topology
        ids = [i for i in recorded.check_ids if i]
        lab = load_lab(ids[0], topo) if ids else None
        result = lib.collect(Commands(recorded.run), topo, lab)
    else:
        topo = state.topology()
        lab = state.lab(lab_id, topo)
        with state.fleet(topo, list(topo.hosts), partial=True) as fleet:
            # Without a cluster there are no nodes, peers or objects to show: say that alone.
            no_cluster = cluster.missing(fleet.run, topo, lab.values["kubectl"])
            if no_cluster:
                raise click.ClickException(no_cluster)
            commands = Commands(fleet.run)
            result = lib.collect(commands, topo, lab)
            unreachable = bool(fleet.unreachable)
        if record:
            # the bundle's "checks" field carries the lab shown, so a replay shows it too
            bundle.write(Path(record), BUNDLE_LAB, [lab.id], topo, commands)
            click.echo(f"recorded {len(commands.results)} commands in {record}", err=True)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        # long lines (a kubectl error, a host's connection error) wrap under their row
        lines = lib.render_table(result, topo).splitlines()
        fitted = [
            wrapped
            for line in lines
            for wrapped in textwrap.wrap(
                line, width(), subsequent_indent="      ", break_on_hyphens=False
            )
            or [""]
        ]
        click.echo("\n".join(fitted))
    sys.exit(2 if unreachable else 0)
