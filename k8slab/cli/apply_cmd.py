"""labctl apply / labctl delete: change the cluster, saying each step."""

from __future__ import annotations

import functools

import click

from k8slab.cli.common import State, confirm, one_line_errors


def _say(line: str) -> None:
    click.echo(line)


def _apply_error(fn):
    """A failed build, kubectl call or timeout exits 1 with its one line (not a usage error)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from k8slab.apply import ApplyError

        try:
            return fn(*args, **kwargs)
        except ApplyError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def _needs_cluster(fleet, topo, lab, aside: str) -> None:
    """Before anything changes: no cluster yet is one line (exit 1), not a build that
    fails on Docker Hub or a kubectl call that waits."""
    from k8slab import cluster

    no_cluster = cluster.missing(fleet.run, topo, lab.values["kubectl"])
    if no_cluster:
        raise click.ClickException(f"{no_cluster}; {aside}")


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--only", multiple=True, metavar="STEP", help="Apply only this step (repeatable).")
@click.option(
    "--nodes-only",
    is_flag=True,
    help="Only prepare the workers and build the images (works before a cluster exists).",
)
@click.option(
    "--timeout", type=click.IntRange(min=1), help="Seconds to wait for readiness (lab default)."
)
@click.pass_obj
@one_line_errors
@_apply_error
def apply(
    state: State, lab_id: str | None, only: tuple[str, ...], nodes_only: bool, timeout: int | None
) -> None:
    """Prepare the nodes, build the lab's images on the workers, kubectl apply its manifests
    on master, and wait until everything is ready. Needs the cluster the deploy built
    (except --nodes-only, which needs only the VMs).

    \b
    Example:
      labctl apply ch09
      labctl apply ch09 --only hostpath --only emptydir
      labctl apply ch09 --nodes-only     # hostPath files and images only
    """
    from k8slab import apply as lib
    from k8slab.labs import render_manifests

    topo = state.topology()
    lab = state.lab(lab_id, topo)
    steps = lab.select_steps(only)
    manifests = [] if nodes_only else render_manifests(lab, topo, steps)
    hosts = list(topo.workers) if nodes_only else list(topo.hosts)
    with state.fleet(topo, hosts) as fleet:
        if not nodes_only:
            _needs_cluster(fleet, topo, lab, "--nodes-only prepares the workers without one")
        lib.prepare_nodes(lab, steps, topo, fleet, _say)
        lib.load_archives(topo, fleet, hosts, _say)
        lib.build_images(lab, steps, topo, fleet, _say)
        if nodes_only:
            click.echo(f"{lab.id}: nodes prepared (--nodes-only: nothing applied)")
            return
        lib.kubectl_apply(lab, manifests, topo, fleet, _say)
        wait = timeout or int(lab.values["wait_timeout"])
        lib.wait_ready(lab, steps, topo, fleet, _say, wait)
    click.echo(f"{lab.id}: applied; grade it with: labctl verify {lab.id}")


@click.command()
@click.argument("lab_id", metavar="[LAB]", required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@one_line_errors
@_apply_error
def delete(state: State, lab_id: str | None, yes: bool) -> None:
    """Remove what `labctl apply` created: the lab's objects, the workers' prepared files
    and the images it built. Asks first; without a terminal, only --yes goes ahead.
    Needs the cluster.

    \b
    Example:
      labctl delete ch09 --yes
    """
    from k8slab import apply as lib
    from k8slab.labs import render_manifests

    topo = state.topology()
    lab = state.lab(lab_id, topo)
    manifests = render_manifests(lab, topo)
    objects = ", ".join(f"{m.kind.lower()}/{m.name}" for m in manifests)
    confirm(
        f"Delete {objects} and the lab's node files and images?",
        f"delete changes the cluster and {', '.join(h.name for h in topo.workers)}",
        yes,
    )
    with state.fleet(topo, list(topo.hosts)) as fleet:
        _needs_cluster(fleet, topo, lab, "nothing of the lab can be in it")
        lib.kubectl_delete(lab, manifests, topo, fleet, _say)
        lib.prepare_nodes(lab, lab.steps, topo, fleet, _say, undo=True)
        lib.remove_images(lab, lab.steps, topo, fleet, _say)
    click.echo(f"{lab.id}: deleted")
