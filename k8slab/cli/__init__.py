"""labctl: apply and grade the course's labs on the cluster described by the topology file.

Only this package imports click; every command parses, calls the library, and formats.
"""

from __future__ import annotations

import os

import click

from k8slab.cli import (
    apply_cmd,
    doctor_cmd,
    labs_cmd,
    machines_cmd,
    map_cmd,
    reset_cmd,
    status_cmd,
    vagrant_cmd,
    verify_cmd,
)
from k8slab.cli.common import State


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Topology file (default: $LAB_CONFIG, else ./inventory/lab.yaml).",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    help="known_hosts file for host keys (default: $LAB_KNOWN_HOSTS, else ~/.ssh/known_hosts).",
)
@click.option(
    "--ask-pass", is_flag=True, help="Prompt for the SSH password (or set $LAB_SSH_PASSWORD)."
)
@click.option(
    "--labs-dir",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="A folder of your own labs (<id>/lab.yaml), searched first (or $LAB_LABS_DIR).",
)
@click.version_option(package_name="k8s-lab")
@click.pass_context
def main(
    ctx: click.Context,
    config: str | None,
    known_hosts: str | None,
    ask_pass: bool,
    labs_dir: tuple[str, ...],
) -> None:
    """Apply and grade the labs of the course on your kubeadm cluster.

    \b
    Example:
      labctl doctor                        # check the three VMs, over SSH
      labctl apply ch09 && labctl verify   # needs the cluster built by the deploy
      labctl labs                          # what there is to do; connects nowhere
    """
    if labs_dir:
        from k8slab.labs import LABS_ENV

        # One search path for every command, and for doctor's override check too.
        os.environ[LABS_ENV] = os.pathsep.join([*labs_dir, os.environ.get(LABS_ENV, "")])
    ctx.obj = State(config=config, known_hosts=known_hosts, ask_pass=ask_pass)


for command in (
    labs_cmd.labs,
    labs_cmd.render,
    apply_cmd.apply,
    apply_cmd.delete,
    verify_cmd.verify,
    doctor_cmd.doctor,
    reset_cmd.reset,
    status_cmd.status,
    map_cmd.map_,
    machines_cmd.machines,
    vagrant_cmd.vagrant,
):
    main.add_command(command)
