"""Whether master has a Kubernetes cluster yet: what `labctl verify`, `apply`, `status` and
`delete` ask first, so that a learner who has not run the deploy is told that, once, instead
of a row per check blaming a firewall or a missing file.

A cluster is there when kubeadm init has written /etc/kubernetes/admin.conf on master, or
when the lab's kubectl answers `get nodes` anyway (a cluster made some other way)::

    >>> missing(fleet.run, topo, lab.values["kubectl"])
    'no Kubernetes on master yet (no /etc/kubernetes/admin.conf, kubectl get nodes fails): ...'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from k8slab.ssh import Result, SSHError
from k8slab.topology import Topology

DEPLOY = ".venv/bin/pyinfra -y inventory/lab.py deploys/cluster.py"
SECTION = 'README.md "Build the cluster, apply and grade the labs"'
_NONE = 3  # the probe's exit code for "no cluster"


def probe(kubectl: str) -> str:
    return (
        "test -e /etc/kubernetes/admin.conf && exit 0; "
        f"{kubectl} get nodes -o name >/dev/null 2>&1 && exit 0; exit {_NONE}"
    )


def missing(run: Callable[[str, str], Result], topo: Topology, kubectl: str) -> str:
    """'' when master has a cluster (or cannot be asked: its SSH error is said elsewhere),
    else the one line that says so and what to run."""
    master = topo.control_plane.name
    try:
        r = run(master, probe(kubectl))
    except SSHError:
        return ""
    if r.exit_code != _NONE:
        return ""
    return f"no Kubernetes on {master} yet ({_why(kubectl)}): {_todo()}"


def _why(kubectl: str) -> str:
    return f"no /etc/kubernetes/admin.conf, `{kubectl} get nodes` fails"


def _todo() -> str:
    return f"build the cluster first: {DEPLOY} ({SECTION})"


def skip_checks(report, line: str, kubectl: str):
    """Without a cluster, cluster.api fails saying so and every other check of the hosts
    that answered is skipped, not failed with a hint that blames something else; the
    summary ends with `line`."""
    rows = []
    for r in report.results:
        if r.status != "error":
            if r.id == "cluster.api":
                r = dataclasses.replace(
                    r, status="fail", evidence=f"no Kubernetes yet: {_why(kubectl)}", hint=_todo()
                )
            else:
                r = dataclasses.replace(r, status="skip", evidence=SKIPPED, hint="")
        rows.append(r)
    return dataclasses.replace(report, results=tuple(rows), note=line)


SKIPPED = "no Kubernetes cluster yet (run the deploy)"
