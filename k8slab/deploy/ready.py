"""Phase 7, wait until every node is Ready and weave-net and CoreDNS run; else say what is not.

It runs on the control plane. A run limited to new workers (`--limit slave3`) leaves the
control plane out, so the first of those workers waits instead, through the control plane's
connection: the run still ends with the new node Ready, or says what is not.

CI drives it only as a `--dry` plan; it ran for real on the test bed through tests/e2e (an
offline folder with a Kubernetes built from source), the worker path with `--limit slave3`.
"""

from __future__ import annotations

import logging

from pyinfra import host, inventory, state
from pyinfra.api import deploy
from pyinfra.api.command import StringCommand
from pyinfra.operations import python, server

from k8slab.deploy.common import lab
from k8slab.deploy.control_plane import READY_SCRIPT
from k8slab.facts import ClusterProblems

WAIT_SECONDS = 600
logger = logging.getLogger("k8slab")


def waits_here() -> bool:
    """The control plane, or the first worker of a run that leaves the control plane out."""
    if "control_plane" in host.groups:
        return True
    in_run = state.limit_hosts or list(inventory)
    control_plane = inventory.get_group("control_plane")[0]
    workers = [h for h in in_run if "workers" in h.groups]
    return control_plane not in in_run and bool(workers) and workers[0].name == host.name


@deploy("Cluster ready")
def cluster_ready():
    nodes = [node["name"] for node in lab()["nodes"]]
    wait = f"{READY_SCRIPT} {WAIT_SECONDS} {' '.join(nodes)}"
    name = f"Wait up to {WAIT_SECONDS // 60} min for nodes, weave-net and coredns"
    if "control_plane" in host.groups:
        problems = host.get_fact(ClusterProblems, script=READY_SCRIPT, nodes=nodes)
        if problems == []:
            host.noop(f"all {len(nodes)} nodes Ready, weave-net and coredns running")
            return
        server.shell(name=name, commands=[wait])
        return
    control_plane = inventory.get_group("control_plane")[0]
    if not control_plane.connected:
        control_plane.connect(raise_exceptions=True)
    if control_plane.get_fact(ClusterProblems, script=READY_SCRIPT, nodes=nodes) == []:
        host.noop(f"all {len(nodes)} nodes Ready, weave-net and coredns running")
        return
    python.call(
        name=f"{name} (on {control_plane.name})",
        function=_wait_on,
        control_plane=control_plane,
        command=wait,
    )


def _wait_on(state, host, control_plane, command: str) -> bool:
    if not control_plane.connected:
        control_plane.connect(raise_exceptions=True)
    ok, out = control_plane.run_shell_command(StringCommand(command), _sudo=True)
    if not ok:
        problems = [line for line in out.stdout.splitlines() if not line.startswith("waiting")]
        host.log_styled(
            f"not ready after {WAIT_SECONDS // 60} min: " + "; ".join(problems[-4:]),
            fg="red",
            log_func=logger.error,
        )
    return ok
