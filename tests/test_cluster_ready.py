"""cluster-ready.sh, the deploy's last phase, run for real by sh against a stand-in kubectl
that prints what the real one prints for the script's jsonpath queries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from k8slab.render import render

FAKE_KUBECTL = """#!/bin/sh
case "$*" in
  *"get nodes"*) printf '%b' "$NODES" ;;
  *"get ds weave-net"*) printf '%s' "$WEAVE" ;;
  *"get deploy coredns"*) printf '%s' "$COREDNS" ;;
  *"get pods -l name=weave-net"*) printf '%b' "$WEAVE_PODS" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def run(tmp_path: Path):
    script = tmp_path / "cluster-ready.sh"
    script.write_text(render("templates/kubernetes/cluster-ready.sh.j2", {}))
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)

    def run(
        nodes: str, weave: str, coredns: str, *names: str, weave_pods: str = ""
    ) -> subprocess.CompletedProcess:
        env = {
            "WEAVE_PODS": weave_pods,
            **os.environ,
            "PATH": f"{kubectl.parent}:{os.environ['PATH']}",
            "NODES": nodes,
            "WEAVE": weave,
            "COREDNS": coredns,
        }
        return subprocess.run(
            ["sh", str(script), "0", *names], env=env, capture_output=True, text=True, timeout=30
        )

    return run


NAMES = ("master", "slave1", "slave2")


def test_ready_cluster(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "2 2", *NAMES)
    assert r.returncode == 0
    assert r.stdout.strip() == "cluster ready: 3 nodes Ready, weave-net and coredns running"


def test_names_every_thing_that_is_not_ready(run):
    r = run(r"master=True\nslave1=False\n", "2 1", "2 0", *NAMES)
    assert r.returncode == 1
    assert r.stdout.strip().splitlines() == [
        "node slave1 is not Ready",
        "node slave2 has not joined",
        "weave-net: 1 of 3 pods ready",
        "coredns: 0 of 2 replicas ready",
    ]


# The script's jsonpath over the weave-net pods (name, node, each container's ready, waiting
# reasons): slave2's weave container crash-loops, weave-npc runs.
WEAVE_PODS = (
    r"weave-net-4mm98 master true true \n"
    r"weave-net-dx5h9 slave2 false true CrashLoopBackOff\n"
    r"weave-net-g4fr2 slave1 true true \n"
)


def test_names_the_weave_pod_that_is_not_ready_and_its_node(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 2", "2 2", *NAMES, weave_pods=WEAVE_PODS)
    assert r.returncode == 1
    assert r.stdout.strip() == (
        "weave-net: 2 of 3 pods ready (weave-net-dx5h9 on slave2: CrashLoopBackOff)"
    )


def test_a_node_added_to_the_topology_is_waited_for(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "2 2", *NAMES, "slave3")
    assert r.returncode == 1
    assert "node slave3 has not joined" in r.stdout
    assert "weave-net: 3 of 4 pods ready" in r.stdout


def test_no_coredns_yet_is_not_ready(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "", *NAMES)
    assert r.returncode == 1
    assert r.stdout.strip() == "coredns: 0 of ? replicas ready"
