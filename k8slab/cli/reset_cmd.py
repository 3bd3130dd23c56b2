"""labctl reset: tear the cluster down on every node, saying what was removed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import click

from k8slab.cli.common import State, confirm, one_line_errors


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--verbose", "-v", is_flag=True, help="A line per removed file, link, rule, chain.")
@click.pass_obj
@one_line_errors
def reset(state: State, yes: bool, verbose: bool) -> None:
    """Undo kubeadm on every node: `kubeadm reset -f` (with cri-dockerd's socket), Weave's
    CNI config, /var/lib/weave, the weave/datapath/vethwe-* links, and only the KUBE-* and
    WEAVE-* iptables chains with the rules jumping to them. Other rules stay. The admin
    kubeconfig copy (~/.kube/config) is left alone. Asks first; without a terminal, only
    --yes goes ahead. Says one line per host (how many of each went); -v lists each.

    \b
    Example:
      labctl reset            # asks, naming the hosts (connects to them)
      labctl reset --yes      # then: labctl doctor, and deploy again
    """
    from k8slab import reset as lib

    topo = state.topology()
    names = ", ".join(h.name for h in topo.hosts)
    confirm(f"Reset the Kubernetes cluster on {names}?", f"reset changes {names}", yes)
    with state.fleet(topo, list(topo.hosts)) as fleet:
        with ThreadPoolExecutor(len(topo.hosts)) as pool:
            # every host must take sudo before any host is changed
            for f in [pool.submit(fleet.run, h.name, "sudo true") for h in topo.hosts]:
                f.result()
        try:
            with ThreadPoolExecutor(len(topo.hosts)) as pool:
                results = list(pool.map(lambda h: lib.reset_host(fleet.run, h.name), topo.hosts))
        except lib.ResetError as e:
            raise click.ClickException(str(e)) from None
    for done in results:
        for line in done.lines if verbose else [done.summary()]:
            click.echo(f"{done.host}: {line}")
    click.echo(f"reset {names}; ~/.kube/config left as it was (remove it yourself if unwanted)")
