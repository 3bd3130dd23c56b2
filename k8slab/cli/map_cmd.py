"""labctl map: the lab drawn from the cluster (or a bundle), as text or one HTML file."""

from __future__ import annotations

from pathlib import Path

import click

from k8slab.cli import common
from k8slab.cli.common import State, UsageError, one_line_errors


@click.command("map")
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(("text", "html")), default="text", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the map to this file.")
@click.option(
    "--record",
    type=click.Path(file_okay=False),
    help="Save every command's output here (a bundle verify --replay reads too).",
)
@common.replay_option("Draw")
@click.pass_obj
@one_line_errors
def map_(
    state: State,
    lab_id: str | None,
    fmt: str,
    out: str | None,
    record: str | None,
    replay: str | None,
) -> None:
    """Draw the lab on your cluster: per node its pods, pause sandboxes, veths and weave
    peers; each Service's iptables chain to its pods; the lab's volumes. What is broken
    is marked with the verify check that owns it; what could not be read says unknown.

    \b
    Example:
      labctl map                                  # over SSH, on the cluster
      labctl map --format html --out map.html     # one file for a browser
      labctl map --replay bundle.tgz              # from a verify/map bundle
    """
    from k8slab import clustermap
    from k8slab.checks import bundle
    from k8slab.checks.engine import Commands

    if record and replay:
        raise UsageError("--record and --replay cannot be combined")
    if replay:
        recorded, topo, lab = state.replayed(replay, lab_id)
        drawn = clustermap.build(lab, topo, Commands(recorded.run), f"replayed from {replay}")
    else:
        topo = state.topology()
        lab = state.lab(lab_id, topo)
        # "table": the progress line on a terminal, as verify's table format shows it
        with common.graded_live(state, topo, list(topo.hosts), "table") as (_, run):
            commands = Commands(run)
            drawn = clustermap.build(lab, topo, commands)
        if record:
            ids = clustermap.replayable_checks(lab, topo, commands)
            bundle.write(Path(record), lab.id, ids, topo, commands)
            click.echo(f"recorded {len(commands.results)} commands in {record}", err=True)
    if fmt == "html":
        from k8slab.clustermap import html

        page = html.render(drawn)
    else:
        from k8slab.clustermap import text

        page = text.render(drawn, common.width(), colour=common.colour() and not out)
    if out:
        try:
            Path(out).write_text(page + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"{out}: cannot write: {e.strerror}") from None
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(page)
