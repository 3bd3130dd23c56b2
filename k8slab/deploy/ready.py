"""Phase 7, wait until every node is Ready and weave-net and CoreDNS run; else say what is not.

A weave-net or CoreDNS container that keeps dying is named with its restart count and the last
line it printed; the wait stops early once it fails the same way at 3 restarts, with the fix
when the line's cause is known (templates/kubernetes/crash-loops.yaml).

It runs on the control plane. A run limited to new workers (`--limit slave3`) leaves the
control plane out, so the first of those workers waits instead, through the control plane's
connection: the run still ends with the new node Ready, or says what is not.

CI drives it only as a `--dry` plan; it ran for real on the test bed through tests/e2e (an
offline folder with a Kubernetes built from source), the worker path with `--limit slave3`.
"""

from __future__ import annotations

from pyinfra import host, inventory, state
from pyinfra.api import deploy
from pyinfra.api.command import StringCommand
from pyinfra.operations import python, server

from k8slab.deploy.common import control_plane_host, failed, lab
from k8slab.deploy.control_plane import READY_SCRIPT
from k8slab.facts import ClusterProblems

WAIT_SECONDS = 600


def waits_here() -> bool:
    """The control plane, or the first worker of a run that leaves the control plane out."""
    if "control_plane" in host.groups:
        return True
    in_run = state.limit_hosts or list(inventory)
    workers = [h for h in in_run if "workers" in h.groups]
    return (
        inventory.get_group("control_plane")[0] not in in_run
        and bool(workers)
        and workers[0].name == host.name
    )


@deploy("Cluster ready")
def cluster_ready():
    nodes = [node["name"] for node in lab()["nodes"]]
    on_control_plane = "control_plane" in host.groups
    control_plane = host if on_control_plane else control_plane_host()
    if control_plane.get_fact(ClusterProblems, script=READY_SCRIPT, nodes=nodes) == []:
        host.noop(f"all {len(nodes)} nodes Ready, weave-net and coredns running")
        return
    wait = f"{READY_SCRIPT} {WAIT_SECONDS} {' '.join(nodes)}"
    name = f"Wait up to {WAIT_SECONDS // 60} min for nodes, weave-net and coredns"
    if on_control_plane:
        server.shell(name=name, commands=[wait])
    else:
        python.call(name=f"{name} (on {control_plane.name})", function=_wait_on, command=wait)


def _wait_on(state, host, command: str) -> bool:
    ok, out = control_plane_host().run_shell_command(StringCommand(command), _sudo=True)
    if ok:
        return True
    problems = [line for line in out.stdout.splitlines() if not line.startswith("waiting")]
    # The script gives up early on a container that fails the same way at every start; its
    # last lines are then that container's last words, the fix if known, and "gave up ...".
    gave_up = bool(problems) and problems[-1].startswith("gave up")
    head = "not ready" if gave_up else f"not ready after {WAIT_SECONDS // 60} min"
    return failed(host, f"{head}: " + "; ".join(problems[-5:]))
