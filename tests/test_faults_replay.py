"""Faults injected one at a time into the real cluster on the test bed, each recorded with
`labctl verify --record` (tests/e2e/record_faults.py; where and when: tests/fixtures/e2e/
README.md) and replayed here through the real CLI. For each: the check that owns the cause
fails and its evidence names it, and every other row that does not pass is listed, so that a
cause reported once stays once (a new failure elsewhere fails the test)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FAULTS_DIR = Path(__file__).parent / "fixtures" / "e2e" / "faults"
LABCTL = str(Path(sys.executable).with_name("labctl"))

Row = tuple[str, str]  # (check id, host)


@dataclass(frozen=True)
class Fault:
    owner: Row
    says: str  # in the owner's evidence
    # every other row that does not pass, with its status: what the fault really breaks too
    also: dict[Row, str] = field(default_factory=dict)
    # instead: every check that reads the cluster is skipped, naming the owner
    skips_the_cluster: bool = False


def rows(status: str, spec: str) -> dict[Row, str]:
    """{(check, host): status} for each "check@host" in spec."""
    return {tuple(r.split("@")): status for r in spec.split()}


WEAVE_GONE_ON_SLAVE2 = rows(
    "fail",
    "net.weave-ports@slave2 net.weave-peers@master net.weave-peers@slave1 "
    "net.weave-peers@slave2 net.weave-connections@master net.weave-connections@slave1 "
    "net.weave-connections@slave2 "
    # a CoreDNS pod and a simple-app pod sit on slave2, out of the pod network's reach
    "dns.curl@master net.pod-to-pod@slave2",
)
AFTER_SIMPLE_APP = rows(
    "skip",
    "dns.curl@master net.pod-to-pod@slave1 net.pod-to-pod@slave2 net.nodeport@master "
    "net.nodeport@slave1 net.nodeport@slave2",
)

FAULTS = {
    "kubelet-stopped": Fault(
        ("net.nodes", "slave1"),
        "slave1 is NotReady",
        {
            # slave1's pods are not ready any more: counted by the checks on master
            **rows("fail", "net.weave-ds@master dns.simple-app@master"),
            **AFTER_SIMPLE_APP,
            # `kubectl exec nginx` (nginx on slave1) reaches no kubelet there
            **rows("fail", "storage.emptydir-serves@master"),
            **rows("skip", "storage.emptydir-counts@master"),
        },
    ),
    "docker-stopped": Fault(
        ("net.pause", "slave2"),
        "Cannot connect to the Docker daemon",
        {
            **rows("fail", "net.nodes@slave2 net.nodeport@master net.nodeport@slave2"),
            **WEAVE_GONE_ON_SLAVE2,
            **rows("fail", "storage.hostpath-forward@master"),
        },
    ),
    "kube-proxy-crashloop": Fault(
        ("net.node-pods", "slave1"), "kube-proxy-slave1-sfzgq 0/1 CrashLoopBackOff"
    ),
    "weave-pod-down": Fault(
        ("net.node-pods", "slave2"),
        "no pod kube-system/weave-net-* on slave2",
        {
            **rows("fail", "net.weave-ds@master net.nodeport@master net.nodeport@slave1"),
            **WEAVE_GONE_ON_SLAVE2,
        },
    ),
    "weave-port-blocked": Fault(
        ("net.weave-connections", "slave1"),
        "slave2 (192.168.56.5): retrying",
        rows("fail", "net.weave-connections@slave2 net.weave-peers@slave1 net.weave-peers@slave2"),
    ),
    "coredns-scaled-0": Fault(
        ("dns.coredns", "master"), "no pod kube-system/coredns-*", rows("skip", "dns.curl@master")
    ),
    "coredns-crashloop": Fault(
        ("dns.coredns", "master"),
        "coredns-589f44dc88-6kngz 0/1 CrashLoopBackOff",
        rows("skip", "dns.curl@master"),
    ),
    "simple-app-scaled-0": Fault(
        ("dns.simple-app", "master"),
        "simple-app-dep 0/0 0 0 31m: it asks for 0 replicas, the lab for 3",
        AFTER_SIMPLE_APP,
    ),
    "nginx-deleted": Fault(
        ("dns.client-pod", "master"),
        "no pod default/nginx",
        rows(
            "skip",
            "dns.curl@master net.pod-to-pod@slave1 net.pod-to-pod@slave2 "
            "storage.emptydir-serves@master storage.emptydir-counts@master",
        ),
    ),
    "htdocs-removed": Fault(
        ("storage.hostpath-file", "slave1"),
        "cat: /var/htdocs/index.html: No such file or directory",
        # port-forward printed apache's directory listing: told once, on slave1's file
        rows("skip", "storage.hostpath-forward@master"),
    ),
    "kube-services-flushed": Fault(
        ("net.svc-iptables", "slave2"),
        "no KUBE-SERVICES jump for default/kubernetes 10.96.0.1:443/TCP",
        # nginx runs on slave2: its DNS queries to kube-dns's ClusterIP go nowhere; and
        # KUBE-NODEPORTS hangs off KUBE-SERVICES
        rows("fail", "dns.curl@master net.nodeport@slave2"),
    ),
    "kubeconfig-removed": Fault(
        ("cluster.api", "master"),
        "no kubeconfig: kubectl fell back to localhost:8080: The connection to the server "
        "localhost:8080 was refused",
        skips_the_cluster=True,
    ),
    "apiserver-manifest-moved": Fault(
        ("cluster.api", "master"),
        "API server down: The connection to the server 192.168.56.15:6443 was refused",
        skips_the_cluster=True,
    ),
    "wrong-node-ip": Fault(
        ("net.nodes", "slave1"),
        "slave1's INTERNAL-IP is 10.0.2.15, not its node_ip 192.168.56.4",
        # volume-hostpath runs on slave1: the API server's port-forward goes to 10.0.2.15,
        # master's own NAT address, whose kubelet has no such pod
        rows("fail", "storage.hostpath-forward@master"),
    ),
}


@functools.cache  # each bundle once: the tests only read the result
def replay(name: str) -> tuple[int, dict[Row, dict]]:
    r = subprocess.run(
        [LABCTL, "verify", "--replay", str(FAULTS_DIR / name), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert r.stdout, r.stderr
    return r.returncode, {(c["id"], c["host"]): c for c in json.loads(r.stdout)["checks"]}


def test_every_recorded_fault_has_its_expectations():
    assert sorted(p.name for p in FAULTS_DIR.iterdir() if p.is_dir()) == sorted(FAULTS)


@pytest.mark.parametrize("name", list(FAULTS))
def test_the_owning_check_fails_naming_the_cause(name):
    fault = FAULTS[name]
    code, rows = replay(name)
    assert code == 1
    owner = rows[fault.owner]
    assert owner["status"] == "fail", owner
    assert fault.says in owner["evidence"], owner
    assert owner["hint"], owner


@pytest.mark.parametrize("name", list(FAULTS))
def test_nothing_else_fails_or_skips(name):
    fault = FAULTS[name]
    _, rows = replay(name)
    got = {row: c["status"] for row, c in rows.items() if c["status"] != "pass"}
    assert len(rows) == 41
    if not fault.skips_the_cluster:
        assert got == {fault.owner: "fail", **fault.also}
        return
    assert got.pop(fault.owner) == "fail"
    assert set(got.values()) == {"skip"}
    for row in got:
        assert rows[row]["evidence"].startswith(f"{fault.owner[0]} did not pass"), row
    # what reads no API still grades: Weave on each host, each worker's htdocs file
    passing = {c for c, _ in rows} - {c for c, _ in got} - {fault.owner[0]}
    assert passing == {
        "net.weave-ports",
        "net.weave-peers",
        "net.weave-connections",
        "storage.hostpath-file",
    }


def test_a_resolve_that_times_out_is_a_dns_failure_not_lost_packets():
    # weave's pod gone from slave2: one CoreDNS pod there is out of reach, so curl's
    # "(28) Resolving timed out"; the hint is DNS's (it was "the name resolved but ...")
    _, rows = replay("weave-pod-down")
    curl = rows[("dns.curl", "master")]
    assert curl["evidence"] == "curl: (28) Resolving timed out after 5000 milliseconds"
    assert curl["hint"].startswith("the name does not resolve: DNS")
    assert "net.weave-*" in curl["hint"]
    # KUBE-SERVICES flushed on nginx's node: the same curl error, the same hint (which also
    # names that cause)
    _, rows = replay("kube-services-flushed")
    assert rows[("dns.curl", "master")]["hint"] == curl["hint"]
    assert "kube-dns's rule on the nginx pod's node (net.svc-iptables)" in curl["hint"]


def test_curl_by_name_waits_for_coredns():
    _, rows = replay("coredns-scaled-0")
    assert rows[("dns.curl", "master")]["evidence"] == (
        "dns.coredns did not pass (fail on master: no pod kube-system/coredns-*)"
    )
    # kube-dns without endpoints: kube-proxy rejects, as it should; dns.coredns owns that
    rules = rows[("net.svc-iptables", "slave1")]
    assert rules["status"] == "pass"
    assert "Service kube-system/kube-dns has no ready endpoints" in rules["evidence"]
    assert "dns.coredns owns that" in rules["evidence"]


def test_a_daemonset_kept_off_a_node_says_so():
    _, rows = replay("weave-pod-down")
    assert rows[("net.weave-ds", "master")]["evidence"].endswith(
        "(3 nodes in the topology): wanted on 2 of the 3 nodes (a nodeSelector, node "
        "affinity or a taint it does not tolerate keeps it off the others)"
    )
    _, rows = replay("kubelet-stopped")
    assert rows[("net.weave-ds", "master")]["evidence"].endswith(": 2 of 3 pods ready")


def test_kube_proxy_crash_loop_leaves_rules_that_still_pass():
    # the old pod's rules stay on slave1: only the pod list tells
    _, rows = replay("kube-proxy-crashloop")
    rules = rows[("net.svc-iptables", "slave1")]
    assert rules["status"] == "pass"
    assert "-j KUBE-SVC-" in rules["evidence"]


def test_weave_relays_across_a_blocked_pair():
    # slave1 <-> slave2 blocked: weave routes their pods' traffic through master
    _, rows = replay("weave-port-blocked")
    assert rows[("net.weave-connections", "master")]["status"] == "pass"
    hops = rows[("net.pod-to-pod", "slave2")]["evidence"]
    assert "nginx on slave1 -> simple-app-dep-" in hops and "on slave2: Hello World v1" in hops


def test_weave_down_on_a_node_is_named_by_the_other_nodes_hints():
    # docker stopped on slave2 took weaver with it: master and slave1 see slave2 refuse
    _, rows = replay("docker-stopped")
    peers = rows[("net.weave-peers", "master")]
    assert peers["evidence"] == "no weaver connection on 6783 to slave2 (192.168.56.5)"
    assert peers["hint"].startswith("weave is not running on the node named")
    conns = rows[("net.weave-connections", "slave1")]
    assert "connect: connection refused" in conns["evidence"]
    assert '"connection refused" = weave is not running on that node' in conns["hint"]


def test_a_node_down_is_named_by_the_checks_that_count_its_pods():
    _, rows = replay("kubelet-stopped")
    for row in (("net.weave-ds", "master"), ("dns.simple-app", "master")):
        assert "a NotReady node" in rows[row]["hint"] and "net.nodes" in rows[row]["hint"]


@pytest.mark.parametrize(
    "name,row,hint",
    [
        ("coredns-scaled-0", ("dns.coredns", "master"), "scale deploy coredns --replicas=2"),
        (
            "wrong-node-ip",
            ("storage.hostpath-forward", "master"),
            "reached a kubelet that does not run the pod",
        ),
        (
            "apiserver-manifest-moved",
            ("cluster.api", "master"),
            "/etc/kubernetes/manifests/kube-apiserver.yaml, which must be there",
        ),
    ],
)
def test_the_hint_names_what_the_fault_did(name, row, hint):
    _, got = replay(name)
    assert hint in got[row]["hint"], got[row]["hint"]
