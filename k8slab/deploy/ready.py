"""Phase 7, wait until every node is Ready and weave-net and CoreDNS run; else say what is not.

CI drives it only as a `--dry` plan; it ran for real on the test bed only through tests/e2e
(an offline folder with a Kubernetes built from source; once, by hand, so far).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from k8slab.deploy.common import lab
from k8slab.deploy.control_plane import READY_SCRIPT
from k8slab.facts import ClusterProblems

WAIT_SECONDS = 600


@deploy("Cluster ready")
def cluster_ready():
    nodes = [node["name"] for node in lab()["nodes"]]
    if host.get_fact(ClusterProblems, script=READY_SCRIPT, nodes=nodes) == []:
        host.noop(f"all {len(nodes)} nodes Ready, weave-net and coredns running")
        return
    server.shell(
        name=f"Wait up to {WAIT_SECONDS // 60} min for nodes, weave-net and coredns",
        commands=[f"{READY_SCRIPT} {WAIT_SECONDS} {' '.join(nodes)}"],
    )
