"""labctl machines: three lab machines on this Linux box (no VMs needed), used by the deploy
and labctl exactly as VMs are."""

from __future__ import annotations

import json
import os
import sys

import click

from k8slab.cli.common import State, UsageError, confirm, one_line_errors

CLUSTER = click.option(
    "--cluster",
    default="default",
    show_default=True,
    metavar="NAME",
    help="Which set of machines (several can live side by side, each on its own subnet).",
)


def _say(line: str) -> None:
    click.echo(f"machines: {line}", err=True)


def _need_root() -> None:
    from k8slab.machines.host import NOT_ROOT

    if os.geteuid() != 0:
        raise UsageError(NOT_ROOT)


def _cluster(name: str):
    from k8slab.machines import spec

    return spec.existing(name)


@click.group()
def machines() -> None:
    """Lab machines on this Linux computer: one container per topology host (Debian 12,
    systemd, sshd) on a private bridge with the topology's addresses, so the deploy and
    labctl use them as they would VMs. Needs root (sudo) and the package
    systemd-container.

    \b
    Example:
      sudo .venv/bin/labctl machines up    # master, slave1, slave2 (course's IPs)
      export LAB_CONFIG=... LAB_KNOWN_HOSTS=...   # the line up prints
      pyinfra -y inventory/lab.py deploys/cluster.py
      labctl apply ch09 && labctl verify
      sudo .venv/bin/labctl machines destroy   # everything up made, away
    """


@machines.command()
@CLUSTER
@click.option(
    "--offline",
    is_flag=True,
    help="No way out for the machines: apt reaches only the Debian mirror through a proxy "
    "on this host. Use mirrors and image archives (docs/offline.md).",
)
@click.option(
    "--nat-nic",
    is_flag=True,
    help="VirtualBox's shape, with --offline: each machine also gets an interface with "
    "10.0.2.15 and the default route, as a NAT adapter gives every VM; node IPs go on "
    "the bridge (use --subnet 192.168.56.0/24). Shows the deploy keeps to node_ip.",
)
@click.option(
    "--subnet",
    metavar="CIDR",
    help="Put the machines in this /24 instead of the topology's (a second cluster).",
)
@click.option("--mirror", metavar="URL", help="Debian mirror for the machines' roots and apt.")
@click.option(
    "--dns",
    metavar="IP",
    help="Resolver the machines' DNS forwarder asks (default: this host's).",
)
@click.option("--yes", "-y", is_flag=True, help="Replace an edited topology file without asking.")
@click.pass_obj
@one_line_errors
def up(
    state: State, cluster: str, offline: bool, nat_nic: bool, subnet, mirror, dns, yes: bool
) -> None:
    """Make and boot one machine per host of the topology file, at its node_ip, with its
    ssh_user (NOPASSWD sudo) and a key made for the lab; write the topology file the
    deploy and labctl then read, and say where. Running it again is safe: running machines are left
    as they are. The first run builds a Debian 12 root with debootstrap (about 1.5 min).
    Adding a host to the topology and running up again adds its machine.

    \b
    Example:
      sudo labctl machines up
      sudo labctl machines up --offline     # no internet for the machines
      sudo labctl --config my.yaml machines up --cluster two --subnet 10.0.3.0/24
    """
    from k8slab.machines import manage

    _need_root()
    topo = state.topology()

    def ask(question: str) -> bool:
        return yes or (sys.stdin.isatty() and click.confirm(question))

    try:
        done = manage.up(
            topo, cluster, offline=offline, nat_nic=nat_nic, subnet=subnet, mirror=mirror,
            dns=dns, say=_say, ask=ask,
        )  # fmt: skip
    except manage.HostProblems as e:
        for line in e.lines[:-1]:
            click.echo(f"Error: {line}", err=True)
        raise UsageError(e.lines[-1]) from None
    c = done.cluster
    mode = "offline: apt through this host's proxy" if c.offline else "online: NAT via this host"
    if c.nat_nic:
        mode += "; default route on a NAT-like 10.0.2.15 each"
    if done.changed:
        click.echo(f"{len(c.machines)} machines up in {done.seconds:.1f} s ({mode})")
    else:
        click.echo(f"already up: nothing changed ({len(c.machines)} machines, {mode})")
    for m in c.machines:
        click.echo(f"  {m.name:<8} {m.role:<14} {m.ip}")
    click.echo("Use them in this shell (the topology file and host keys up wrote):")
    click.echo(f"  export LAB_CONFIG={c.topology} LAB_KNOWN_HOSTS={c.known_hosts}")
    click.echo("then: labctl doctor, and the deploy (README, step 2).")


@machines.command()
@CLUSTER
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="json: for scripts.",
)
@one_line_errors
def status(cluster: str, fmt: str) -> None:
    """What runs: each machine's state, SSH and memory in use. Exits 1 when one is not
    running.

    \b
    Example:
      sudo labctl machines status
    """
    from dataclasses import asdict

    from k8slab.machines import manage, network

    c = _cluster(cluster)
    rows = manage.status(c)
    if fmt == "json":
        data = {"cluster": c.name, "network": c.network, "offline": c.offline}
        data |= {"bridge": network.bridge_up(c), "machines": [asdict(r) for r in rows]}
        click.echo(json.dumps(data, indent=1))
    else:
        mode = "offline" if c.offline else "online"
        bridge = "up" if network.bridge_up(c) else "missing"
        click.echo(f"cluster {c.name}: {c.network} on {c.bridge} ({bridge}), {mode}")
        for r in rows:
            mem = f"{r.memory / 2**20:.0f} MiB" if r.memory else ""
            click.echo(f"  {r.name:<8} {r.ip:<15} {r.state:<9} ssh {r.ssh:<9} {mem}".rstrip())
        click.echo(f"topology: {c.topology}")
    if any(r.state != "running" for r in rows if r.name in {m.name for m in c.machines}):
        sys.exit(1)


@machines.command()
@CLUSTER
@click.argument("names", nargs=-1)
@click.option("--hard", is_flag=True, help="Pull the plug instead of shutting down.")
@one_line_errors
def stop(cluster: str, names: tuple[str, ...], hard: bool) -> None:
    """Power machines off (all when none is named); their disks stay.

    \b
    Example:
      sudo labctl machines stop slave2          # then see what verify says
      sudo labctl machines stop --hard slave1   # as if its power failed
    """
    from k8slab.machines import manage

    _need_root()
    c = _cluster(cluster)
    done = manage.stop(c, list(names), _say, hard=hard)
    click.echo(f"stopped: {', '.join(done)}" if done else "nothing was running")


@machines.command()
@CLUSTER
@click.argument("names", nargs=-1)
@one_line_errors
def start(cluster: str, names: tuple[str, ...]) -> None:
    """Boot stopped machines (all when none is named), as they were.

    \b
    Example:
      sudo labctl machines start slave2
    """
    from k8slab.machines import manage

    _need_root()
    c = _cluster(cluster)
    done = manage.start(c, list(names), _say)
    click.echo(f"started: {', '.join(done)}" if done else "all were running")


@machines.command(context_settings={"ignore_unknown_options": True})
@CLUSTER
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@one_line_errors
def ssh(cluster: str, name: str, command: tuple[str, ...]) -> None:
    """Log in to a machine as the topology's user (sudo works), or run COMMAND there.

    \b
    Example:
      sudo labctl machines ssh master
      sudo labctl machines ssh slave1 -- sudo docker ps
    """
    from k8slab.machines import nspawn

    c = _cluster(cluster)
    c.machine(name)
    argv = nspawn.ssh_argv(c, name, tty=sys.stdin.isatty() and not command)
    os.execvp(argv[0], [*argv, *command])


@machines.command()
@CLUSTER
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@one_line_errors
def destroy(cluster: str, yes: bool) -> None:
    """Remove the machines and everything up added to this host: their disks, the bridge, the
    iptables rules (only those), the helper programs; ip_forward as it was. The cached
    Debian base stays for the next up. Asks first; without a terminal, only --yes.

    \b
    Example:
      sudo labctl machines destroy
    """
    from k8slab.machines import manage

    _need_root()
    c = _cluster(cluster)
    names = ", ".join(m.name for m in c.all)
    confirm(f"Destroy the machines {names} and their disks?", f"destroy removes {names}", yes)
    manage.destroy(c, _say)
    click.echo(f"destroyed: {names}; the host is as before up")
