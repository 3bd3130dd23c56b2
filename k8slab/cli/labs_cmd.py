"""labctl labs / labctl render: read-only, nothing connects anywhere."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import click

from k8slab.cli.common import State, UsageError, one_line_errors, width

# What `labctl labs` shows its values with when there is no topology file yet: the course's
# three VMs (the defaults of inventory/lab.yaml).
COURSE_HOSTS = {
    "hosts": [
        {"name": "master", "role": "control-plane", "node_ip": "10.0.2.15"},
        {"name": "slave1", "role": "worker", "node_ip": "10.0.2.4"},
        {"name": "slave2", "role": "worker", "node_ip": "10.0.2.5"},
    ]
}
# Written into a `render --out` folder: the files it lists may be replaced by the next render.
RENDER_MARK = ".labctl-render"


def _columns(rows: list[tuple[str, ...]], indent: int) -> list[str]:
    """Aligned columns; the last one wraps under itself to fit the terminal."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    left = indent + sum(w + 2 for w in widths)
    room = width() - left
    out = []
    for row in rows:
        head = " " * indent + "".join(c.ljust(w + 2) for c, w in zip(row, widths, strict=False))
        if room < 24:  # too narrow: the text goes under the row
            out.append(head.rstrip())
            out += textwrap.wrap(
                row[-1],
                width() - indent - 4,
                initial_indent=" " * (indent + 4),
                break_on_hyphens=False,
            )
            continue
        lines = textwrap.wrap(row[-1], room, break_on_hyphens=False) or [""]
        out.append(head + lines[0])
        out += [" " * left + line for line in lines[1:]]
    return out


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--kinds", is_flag=True, help="List the assertion kinds checks can use instead.")
@click.pass_obj
@one_line_errors
def labs(state: State, lab_id: str | None, kinds: bool) -> None:
    """List the labs, their steps and their checks. Connects nowhere; without a topology
    file the course's three VMs fill in the values.

    \b
    Example:
      labctl labs          # every lab
      labctl labs ch09     # one lab
      labctl labs --kinds  # what a lab's checks may assert
    """
    from k8slab import topology
    from k8slab.labs import lab_dirs, lab_ids

    if kinds:
        from k8slab.checks import host_kinds  # noqa: F401 - registers the doctor's kinds
        from k8slab.checks.kinds import KINDS

        rows = [(name, " ".join(k.doc.split("\n\n")[0].split())) for name, k in KINDS.items()]
        click.echo("\n".join(_columns(rows, 0)))
        return
    if state.config or os.environ.get(topology.ENV_VAR) or topology.resolve_path().exists():
        topo = state.topology()
    else:
        topo = topology.parse(COURSE_HOSTS, Path("(the course's three VMs)"))
    ids = [lab_id] if lab_id else lab_ids()
    if not ids:
        where = ", ".join(str(d) for d in lab_dirs())
        raise UsageError(f"no labs found (looked in {where}); is the package installed whole?")
    for lid in ids:
        lab = state.lab(lid, topo)
        groups = list(dict.fromkeys(c.id.split(".")[0] for c in lab.checks if "." in c.id))
        click.echo(f"{lab.id}: {lab.title}")
        click.echo(f"  steps (labctl apply {lab.id} --only STEP):")
        click.echo("\n".join(_columns([(s.id, s.title) for s in lab.steps], 4)))
        click.echo(f"  checks (labctl verify {lab.id} --only ID, or a group: {', '.join(groups)}):")
        click.echo("\n".join(_columns([(c.id, c.where, c.title) for c in lab.checks], 4)))


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--only", multiple=True, metavar="STEP", help="Render only this step (repeatable).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write one file per object into this folder (new, empty, or an earlier --out).",
)
@click.pass_obj
@one_line_errors
def render(state: State, lab_id: str | None, only: tuple[str, ...], out: str | None) -> None:
    """Render a lab's manifests with the topology's values, without connecting anywhere.
    --out replaces what an earlier --out wrote there and refuses a folder holding other
    files.

    \b
    Example:
      labctl render ch09 | kubectl apply --dry-run=client -f -  # run on master
      labctl render ch09 --only hostpath --out /tmp/ch09
    """
    from k8slab.labs import render_manifests

    topo = state.topology()
    lab = state.lab(lab_id, topo)
    manifests = render_manifests(lab, topo, lab.select_steps(only))
    if out is None:
        click.echo("---\n".join(m.text for m in manifests), nl=False)
        return
    directory = Path(out)
    _clear_earlier_render(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for m in manifests:
        (directory / m.filename).write_text(m.text, encoding="utf-8")
        click.echo(directory / m.filename)
    names = "".join(f"{m.filename}\n" for m in manifests)
    (directory / RENDER_MARK).write_text(names, encoding="utf-8")


def _clear_earlier_render(directory: Path) -> None:
    """Remove the files an earlier `render --out` wrote here, so none is left stale; refuse
    a folder with anything else in it (it is not ours to empty)."""
    if not directory.is_dir():
        return
    mark = directory / RENDER_MARK
    listed = mark.read_text(encoding="utf-8").split() if mark.is_file() else []
    ours = {name for name in listed if "/" not in name and name not in (".", "..")}
    others = sorted(p.name for p in directory.iterdir() if p.name not in ours | {RENDER_MARK})
    if others:
        raise UsageError(
            f"{directory} holds files labctl render did not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}): use a new or empty folder"
        )
    for name in ours:
        (directory / name).unlink(missing_ok=True)
