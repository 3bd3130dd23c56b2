"""Hints that name the cause, not the check: each failure class replayed from real output
through the real `labctl verify --replay`.

causes/ bundles were recorded with `labctl verify --record` on a real cluster of this
machine's test bed (Kubernetes v1.36.2, cri-dockerd, Weave Net) put in each broken state;
kubectl-1.36/ holds the real kubectl v1.36.2's stderr against loopback stand-ins for the
API server (tests/fixtures/README.md says how each was made). Where a test edits or types a
line, the test says so."""

from __future__ import annotations

import json
import re

import pytest
from conftest import FIXTURES, replay, write_bundle

from k8slab.ssh import Result

CAUSES = FIXTURES / "causes"
KUBECTL_136 = FIXTURES / "kubectl-1.36"
E2E_BUNDLE = FIXTURES / "e2e" / "verify-bundle"


def _copy(src, dst, edit=None):
    """A copy of bundle `src` in `dst`, `edit(command, stdout) -> stdout` applied."""
    index = json.loads((src / "bundle.json").read_text())
    (dst / "commands").mkdir(parents=True)
    for e in index["commands"]:
        for key in ("stdout", "stderr"):
            text = (src / e[key]).read_text()
            if edit and key == "stdout":
                text = edit(e["command"], text)
            (dst / e[key]).write_text(text)
    (dst / "bundle.json").write_text(json.dumps(index))
    return dst


# --- 1. kubectl exec itself broken ---------------------------------------------------------

EXEC_BROKEN = {
    # the API server's ExtendWebSocketsToKubelet gate left on (the 1.36 default)
    "exec-websocket": (
        "server gave HTTP response to HTTPS client",
        "ExtendWebSocketsToKubelet=false",
    ),
    # kube-apiserver's --kubelet-client-certificate pointed at front-proxy-client.crt
    "kubelet-unauthorized": (
        "unable to upgrade connection: Unauthorized",
        "kubelet authentication",
    ),
}
EXEC_CHECKS = (
    ("dns.curl", "master"),
    ("net.pod-to-pod", "slave1"),
    ("net.pod-to-pod", "slave2"),
    ("storage.emptydir-serves", "master"),
)


@pytest.mark.parametrize("state", list(EXEC_BROKEN))
def test_every_check_that_execs_says_exec_broke_and_how_to_fix_it(state):
    said, fix = EXEC_BROKEN[state]
    checks = replay(CAUSES / state)
    counts = replay(CAUSES / f"{state}-counts")[("storage.emptydir-counts", "master")]
    for key in EXEC_CHECKS:
        row = checks[key]
        assert row["status"] == "fail", key
        assert "kubectl exec failed: error: Internal error occurred: " in row["evidence"], key
        assert said in row["evidence"], key
        assert fix in row["hint"], key
        # not Weave's data path, the pod's logs or curl
        assert not re.search(r"weave|logs|curl", row["hint"]), (key, row["hint"])
    # the pod-to-pod row still names the path it tried
    assert checks[("net.pod-to-pod", "slave2")]["evidence"].startswith("nginx on slave1 -> ")
    assert counts["status"] == "fail" and said in counts["evidence"]
    assert counts["evidence"].startswith("kubectl exec failed: ")
    assert fix in counts["hint"]


# --- 2. CoreDNS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, status, hint",
    [
        # the Corefile given an unknown directive, the pods deleted
        (
            "coredns-crashloop",
            "CrashLoopBackOff",
            "kubectl -n kube-system logs -l k8s-app=kube-dns",
        ),
        # Weave's pods gone (its images removed by the kubelet's disk-pressure image GC)
        ("coredns-containercreating", "ContainerCreating", "CoreDNS waits for the pod network"),
        # rescheduled onto workers that never had the image (an offline cluster)
        ("coredns-image-missing", "ImagePullBackOff", "the image is not on this node"),
    ],
)
def test_coredns_hint_follows_its_status(state, status, hint):
    row = replay(CAUSES / state, "dns.coredns")[("dns.coredns", "master")]
    assert row["status"] == "fail"
    assert f" {status} " in row["evidence"] and row["evidence"].startswith("kube-system coredns-")
    assert hint in row["hint"]


def test_a_terminating_coredns_pod_is_reported_after_the_one_that_is_stuck(tmp_path):
    """The recording lists two Terminating CoreDNS pods first: the evidence is the new one
    that waits in ContainerCreating."""
    row = replay(CAUSES / "coredns-containercreating", "dns.coredns")[("dns.coredns", "master")]
    assert "Terminating" not in row["evidence"]


def test_an_evicted_coredns_pod_beside_a_healthy_deployment_is_not_a_failure(tmp_path):
    """The real cluster's healthy pod list with one row added in the form
    play-with-docker/play-with-docker#301 printed (`coredns-78fcdf6894-4rhwb 0/1 Evicted 0
    5m`, kubectl of 2018: its columns re-spaced to this table's): typed, not recorded."""
    evicted = (
        "kube-system   coredns-78fcdf6894-4rhwb          0/1     Evicted   0             5m"
        "    <none>      master   <none>           <none>\n"
    )

    def edit(cmd, text):
        return text + evicted if cmd == "kubectl get pod -A -o wide" else text

    checks = replay(_copy(E2E_BUNDLE, tmp_path / "b", edit), "dns.coredns")
    row = checks[("dns.coredns", "master")]
    assert row["status"] == "pass", row
    assert "left over, not counted: coredns-78fcdf6894-4rhwb Evicted" in row["evidence"]


def test_weave_not_running_on_a_node_gets_a_weave_hint():
    rows = replay(CAUSES / "coredns-containercreating", "net.node-pods")
    row = rows[("net.node-pods", "slave1")]
    assert row["status"] == "fail" and "weave-net-" in row["evidence"]
    assert "Init:ImagePullBackOff" in row["evidence"]
    assert row["hint"].startswith("the image is not on this node")


# --- 3. the API check ----------------------------------------------------------------------

UNREACHABLE = ("API server unreachable: ", "not reachable from master")
# TCP accepted, then no TLS handshake or no answer; with --request-timeout below 10 s the
# handshake timeout shows as "context deadline exceeded", its log still says "awaiting headers"
ACCEPTED = ("the API server accepted the connection but did not answer", "starting or overloaded")
PROXY = ("a proxy is in the way: ", "NO_PROXY")
API = {
    "no-kubeconfig": ("no kubeconfig: kubectl fell back to localhost:8080", "admin.conf"),
    "api-down": ("API server down: The connection to the server 127.0.0.1:6443", "docker ps"),
    "unreachable": UNREACHABLE,
    "io-timeout": UNREACHABLE,
    "tls-handshake-timeout": ACCEPTED,
    "no-answer": ACCEPTED,
    "tls-handshake-timeout.request-timeout-5s": ACCEPTED,
    "expired": ("a certificate has expired: ", "kubeadm certs renew"),
    "wrong-san": (
        "the API server's certificate does not name the kubeconfig's address: ",
        "certSANs",
    ),
    "unknown-ca": ("certificate problem: ", "does not belong to this cluster"),
    "unauthorized": ("credentials refused: error: You must be logged in", "admin.conf"),
    "forbidden": ("not allowed: Error from server (Forbidden)", "RBAC"),
    "proxy-refused": PROXY,
    "proxy-forbidden": PROXY,
}


def _api_row(tmp_path, case: str) -> dict:
    """cluster.api graded on kubectl-1.36/kubectl-get-nodes.<case>.err (exit 1)."""
    stderr = (KUBECTL_136 / f"kubectl-get-nodes.{case}.err").read_text()
    bundle_dir = write_bundle(
        tmp_path / "b",
        {("master", "cluster.api", "nodes"): Result("", stderr, 1)},
        checks=("cluster.api",),
    )
    return replay(bundle_dir)[("cluster.api", "master")]


@pytest.mark.parametrize("case", list(API))
def test_the_api_check_names_each_cause(tmp_path, case):
    evidence, hint = API[case]
    row = _api_row(tmp_path, case)
    assert row["status"] == "fail"
    assert row["evidence"].startswith(evidence), row["evidence"]
    assert hint in row["hint"]


def test_a_dead_proxy_is_named_though_kubectl_blames_the_server(tmp_path):
    """kubectl's last line says the API server refused; its log says it was the proxy."""
    stderr = (KUBECTL_136 / "kubectl-get-nodes.proxy-refused.err").read_text()
    assert stderr.splitlines()[-1].startswith("The connection to the server 10.0.2.15:6443")
    row = _api_row(tmp_path, "proxy-refused")
    assert row["evidence"].endswith(
        "proxyconnect tcp: dial tcp 127.0.0.1:3128: connect: connection refused"
    )


def test_a_proxy_refusing_connect_is_not_taken_for_rbac(tmp_path):
    row = _api_row(tmp_path, "proxy-forbidden")
    assert row["evidence"] == "a proxy is in the way: Unable to connect to the server: Forbidden"


# --- 4. port-forward -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "state, evidence, hint",
    [
        (
            "socat-missing",
            "port-forward failed: an error occurred forwarding 8888 -> 80: error forwarding "
            "port 80 to pod ",
            "socat is missing on slave1",
        ),
        (
            "kubelet-unauthorized",
            "port-forward failed: error: error upgrading connection: unable to upgrade "
            "connection: Unauthorized",
            "kubelet authentication",
        ),
        (
            "port-busy",
            "port-forward failed: Unable to listen on port 8888: Listeners failed to create",
            "port 8888 on master is taken by another program",
        ),
    ],
)
def test_port_forward_names_its_own_cause(state, evidence, hint):
    row = replay(CAUSES / state, "storage.hostpath-forward")[("storage.hostpath-forward", "master")]
    assert row["status"] == "fail"
    assert row["evidence"].startswith(evidence), row["evidence"]
    assert row["hint"].startswith(hint) or hint in row["hint"]


def test_socat_missing_in_containerds_wording_too(tmp_path):
    """containerd's wording (`fmt.Errorf("failed to find socat: %w", err)` around Go's
    exec.LookPath error, in containerd's CRI port-forward): typed from that source, not
    recorded; the rest of the output is the real socat-missing recording."""

    def edit(cmd, text):
        return text.replace(
            "unable to do port forwarding: socat not found",
            'failed to find socat: exec: \\"socat\\": executable file not found in $PATH',
        )

    row = replay(_copy(CAUSES / "socat-missing", tmp_path / "b", edit))[
        ("storage.hostpath-forward", "master")
    ]
    assert row["evidence"].endswith("executable file not found in $PATH")
    assert row["hint"].startswith("socat is missing on slave1")


# --- 5. no podSubnet -----------------------------------------------------------------------


def test_a_kubeadm_config_without_pod_subnet_is_named_as_such():
    row = replay(CAUSES / "no-podsubnet")[("net.weave-ipalloc", "master")]
    assert (row["status"], row["evidence"]) == (
        "fail",
        "no podSubnet in kubeadm's ClusterConfiguration",
    )
    assert "--pod-network-cidr=10.32.0.0/12" in row["hint"]
    assert "redeploy weave" not in row["hint"]


# --- 6. weave-net crash loop, kube-proxy in IPVS mode ---------------------------------------


def test_weave_crash_looping_gets_a_weave_hint_not_a_kube_proxy_one(tmp_path):
    """tests/fixtures/weave-crash-loop (a real v1.36.2 cluster): `kubectl -n kube-system get
    pods -o wide`, replayed as the check's `get pod -A` (rows read in kube-system)."""
    topo = tmp_path / "topology.yaml"
    topo.write_text(
        "hosts:\n"
        "  - {name: master, role: control-plane, node_ip: 10.0.17.15}\n"
        "  - {name: slave1, role: worker, node_ip: 10.0.17.4}\n"
        "  - {name: slave2, role: worker, node_ip: 10.0.17.5}\n"
    )
    pods = (FIXTURES / "weave-crash-loop" / "get-pods-wide.txt").read_text()
    rows = replay(
        write_bundle(
            tmp_path / "b",
            topology_path=topo,
            base={("master", "net.node-pods", "pods"): pods},
            checks=("net.node-pods",),
        )
    )
    row = rows[("net.node-pods", "slave2")]
    assert row["status"] == "fail" and "weave-net-4psp4" in row["evidence"]
    assert "-c weave --previous" in row["hint"] and "kube-proxy" not in row["hint"]
    assert rows[("net.node-pods", "slave1")]["status"] == "pass"


def test_kube_proxy_in_ipvs_mode_is_named_as_ipvs_mode(tmp_path):
    """On paper: the bed's kernel has no IPVS (kube-proxy exited "can't use the IPVS
    proxier: ipvs not supported"), so slave1's real nat table has its KUBE-SERVICES jumps
    taken out and, in their place, the rule kube-proxy's IPVS proxier writes
    (pkg/proxy/ipvs/proxier.go: `-A KUBE-SERVICES -m comment --comment ... -m set
    --match-set KUBE-CLUSTER-IP dst,dst ...`; the comment from ipset.go), typed."""
    ipvs = (
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for '
        'masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n'
    )

    def edit(cmd, text):
        if cmd != "sudo iptables -S -t nat" or "KUBE-SVC-" not in text:
            return text
        kept = [x for x in text.splitlines(keepends=True) if not x.startswith("-A KUBE-SERVICES")]
        return "".join(kept) + ipvs

    rows = replay(_copy(E2E_BUNDLE, tmp_path / "b", edit), "net.svc-iptables")
    row = rows[("net.svc-iptables", "slave1")]
    assert row["status"] == "fail"
    assert row["evidence"].startswith("kube-proxy is in IPVS mode on this node (`-A KUBE-SERVICES")
    assert "mode: iptables" in row["hint"]
