"""labctl vagrant: the VMs the top-level Vagrantfile makes from the topology, and their SSH
details written into it.

Its own group, not part of `labctl machines`: those commands make and run the machines
themselves, as root; here Vagrant owns the VMs (vagrant up, halt, destroy) and labctl only
tells it what to make and reads back where SSH reaches them, as the learner's own user.
"""

from __future__ import annotations

import json

import click

from k8slab.cli.common import State, one_line_errors


@click.group()
def vagrant() -> None:
    """VirtualBox or libvirt VMs made by Vagrant from the topology file: the Vagrantfile at
    the top of the clone asks `plan` what to make, and after `vagrant up` writes each VM's
    SSH details into the topology file with `ssh-config`. Nothing to run by hand.

    \b
    Example:
      export LAB_CONFIG=inventory/vagrant.yaml   # 192.168.56.x: see README
      vagrant up                  # master, slave1, slave2
      labctl doctor
      labctl vagrant plan         # what the Vagrantfile makes, and why not
    """


@vagrant.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="json: what the Vagrantfile reads.",
)
@click.pass_obj
@one_line_errors
def plan(state: State, fmt: str) -> None:
    """The VMs the Vagrantfile makes: one per host, its CPUs and memory (MiB) by role, its
    node_ip on the private network, the user provisioning makes. A topology Vagrant cannot
    use is one line per problem, exit 2. $LAB_VM_CONTROL_PLANE_CPUS, ..._MEMORY,
    $LAB_VM_WORKER_CPUS, ..._MEMORY and $LAB_VM_BOX change the sizes and the box.

    \b
    Example:
      labctl --config inventory/vagrant.yaml vagrant plan
      LAB_VM_WORKER_MEMORY=2048 labctl vagrant plan
    """
    from k8slab import vagrant as vg

    p = vg.plan(state.topology())
    if fmt == "json":
        click.echo(json.dumps(p.as_dict()))
        return
    click.echo(f"{p.topology}: box {p.box}")
    for vm in p.vms:
        line = f"{vm.name:<8} {vm.role:<14} {vm.node_ip:<15} {vm.cpus} CPU {vm.memory} MiB"
        click.echo(f"  {line}  user {vm.ssh_user}")


@vagrant.command("ssh-config")
@click.argument("names", nargs=-1)
@click.pass_obj
@one_line_errors
def ssh_config(state: State, names: tuple[str, ...]) -> None:
    """Write where SSH reaches each VM (`vagrant ssh-config`: address, port, key) into the
    topology file as its ssh_host, ssh_port and ssh_key, keeping the rest of the file as
    written. The Vagrantfile runs it after each `vagrant up` and `vagrant reload`; by hand
    only if a VM's port changed otherwise. Run it in the clone (where the Vagrantfile is).

    \b
    Example:
      labctl vagrant ssh-config            # every host of the topology
      labctl vagrant ssh-config slave2
    """
    from k8slab import vagrant as vg

    topo = state.topology()
    wanted = [topo.host(n).name for n in names] or [h.name for h in topo.hosts]
    found = vg.ssh_config(wanted)
    changed = vg.write_ssh(topo.path, {n: found[n] for n in wanted})
    for n in wanted:
        s = found[n]
        mark = "written" if n in changed else "unchanged"
        click.echo(f"{n}: {s.host}:{s.port} key {s.key} ({mark})")
    click.echo(f"in {topo.path}; next: labctl doctor")
