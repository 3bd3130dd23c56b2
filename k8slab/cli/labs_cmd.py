"""labctl labs / labctl render: read-only, nothing connects anywhere."""

from __future__ import annotations

from pathlib import Path

import click

from k8slab.checks.kinds import KINDS
from k8slab.cli.common import State, one_line_errors
from k8slab.labs import lab_ids, render_manifests


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--kinds", is_flag=True, help="List the assertion kinds checks can use instead.")
@click.pass_obj
@one_line_errors
def labs(state: State, lab_id: str | None, kinds: bool) -> None:
    """List the labs, their steps and their checks.

    \b
    Example:
      labctl labs          # every lab
      labctl labs ch09     # one lab
      labctl labs --kinds  # what a lab's checks may assert
    """
    if kinds:
        for name, kind in KINDS.items():
            click.echo(f"{name:18} {kind.doc.splitlines()[0]}")
        return
    topo = state.topology()
    for lid in [lab_id] if lab_id else lab_ids():
        lab = state.lab(lid, topo)
        click.echo(f"{lab.id}: {lab.title}")
        click.echo("  steps (labctl apply --only STEP):")
        for step in lab.steps:
            click.echo(f"    {step.id:10} {step.title}")
        click.echo("  checks (labctl verify --only ID):")
        for check in lab.checks:
            click.echo(f"    {check.id:26} {check.where:13} {check.title}")


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--only", multiple=True, metavar="STEP", help="Render only this step (repeatable).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write one file per object into this directory instead of stdout.",
)
@click.pass_obj
@one_line_errors
def render(state: State, lab_id: str | None, only: tuple[str, ...], out: str | None) -> None:
    """Render a lab's manifests with the topology's values, without connecting anywhere.

    \b
    Example:
      labctl render ch09 | kubectl apply --dry-run=client -f -
      labctl render ch09 --only hostpath --out /tmp/ch09
    """
    topo = state.topology()
    lab = state.lab(lab_id, topo)
    manifests = render_manifests(lab, topo, lab.select_steps(only))
    if out is None:
        click.echo("---\n".join(m.text for m in manifests), nl=False)
        return
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for m in manifests:
        (directory / m.filename).write_text(m.text, encoding="utf-8")
        click.echo(directory / m.filename)
