"""Diagnosis: each check names the right cause, on every node, from real outputs.

Every case replays a `--record` bundle through the real `labctl verify --replay`. Outputs
are real (tests/fixtures/README.md: public issue threads and outputs made on this machine
by kubectl, curl and iptables); a bundle of a public thread carries that cluster's own
topology (host names and node IPs as printed there)."""

from __future__ import annotations

import pytest
import yaml
from conftest import (
    COURSE_TOPOLOGY,
    MADE_HERE,
    NOT_IN_COURSE,
    PUBLIC,
    SEED,
    course_outputs,
    replay,
    write_bundle,
)

from k8slab.checks import parse
from k8slab.labs import load_lab
from k8slab.ssh import Result
from k8slab.topology import load

COURSE_CHECKS = tuple(
    c.id for c in load_lab("ch09", load(COURSE_TOPOLOGY)).checks if c.id not in NOT_IN_COURSE
)


def _read(path) -> str:
    return path.read_text(encoding="utf-8")


def topology(tmp_path, *hosts: tuple[str, str]):
    """A topology of (name, node_ip) hosts, the first the control plane."""
    path = tmp_path / "topology.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "hosts": [
                    {"name": n, "role": "control-plane" if i == 0 else "worker", "node_ip": ip}
                    for i, (n, ip) in enumerate(hosts)
                ]
            }
        )
    )
    return path


def _failed(text: str, code: int = 1) -> Result:
    return Result("", text, code)


# --- cluster.api: verify tells the truth when there is no cluster ------------------------

API_DOWN = {
    "no kubeconfig": (
        "kubectl-get-nodes.no-kubeconfig.err",
        "no kubeconfig: kubectl fell back to localhost:8080: The connection to the server "
        "localhost:8080 was refused",
        "sudo cp /etc/kubernetes/admin.conf ~/.kube/config",
    ),
    "API server down": (
        "kubectl-get-nodes.api-down.err",
        "API server down: The connection to the server 127.0.0.1:6443 was refused",
        "kube-apiserver is not answering on master",
    ),
    "certificate of another cluster": (
        "kubectl-get-nodes.unknown-ca.err",
        "certificate problem: Unable to connect to the server: tls: failed to verify "
        "certificate: x509: certificate signed by unknown authority",
        "does not belong to this cluster",
    ),
}


@pytest.mark.parametrize("case", list(API_DOWN))
def test_no_api_server_fails_one_check_with_the_cause_and_skips_the_rest(tmp_path, case):
    stderr, evidence, hint = API_DOWN[case]
    failing = _failed(_read(MADE_HERE / stderr))
    lab = load_lab("ch09", load(COURSE_TOPOLOGY))
    kubectl = {
        (c.id, name) for c in lab.checks for name, cmd in c.run.items() if "kubectl" in cmd.cmd
    }
    # Every kubectl command fails the same way on such a master.
    edits = {k: failing for k in course_outputs() if (k[1], k[2]) in kubectl}
    edits[("master", "cluster.api", "nodes")] = failing
    checks = replay(
        write_bundle(tmp_path / "b", edits, checks=(*COURSE_CHECKS, "cluster.api", "net.nodes"))
    )
    api = checks[("cluster.api", "master")]
    assert api["status"] == "fail"
    assert api["evidence"].startswith(evidence)
    assert hint in api["hint"]
    assert len(api["evidence"]) < 180  # the cause is not cut from a table row
    needs_api = {k: c for k, c in checks.items() if k[0] != "cluster.api" and c["status"] != "pass"}
    assert {c["status"] for c in needs_api.values()} == {"skip"}
    assert all(
        c["evidence"].startswith("cluster.api did not pass (fail on master: ")
        for c in needs_api.values()
    )
    assert all(c["hint"] == "" for c in needs_api.values())
    # What does not need the API is still graded on the nodes' own outputs.
    assert checks[("storage.hostpath-file", "slave1")]["status"] == "pass"
    assert checks[("net.weave-ports", "slave2")]["status"] == "pass"


def test_the_api_check_passes_and_nodes_are_graded_per_host(tmp_path):
    topo = topology(
        tmp_path, ("k8s1", "10.210.40.172"), ("k8s2", "10.210.40.173"), ("k8s3", "10.210.40.175")
    )
    nodes = _read(PUBLIC / "kubectl-get-nodes-wide.docker.txt")
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topo,
        base={("k8s1", "cluster.api", "nodes"): nodes},
        checks=("cluster.api", "net.nodes"),
    )
    checks = replay(bundle_dir)
    assert checks[("cluster.api", "k8s1")]["evidence"] == "the API server answers (3 nodes listed)"
    for host, ip in (
        ("k8s1", "10.210.40.172"),
        ("k8s2", "10.210.40.173"),
        ("k8s3", "10.210.40.175"),
    ):
        row = checks[("net.nodes", host)]
        assert row["status"] == "pass"
        assert row["evidence"].startswith(f"{host} Ready") and ip in row["evidence"]
        assert row["evidence"].endswith("docker://20.10.14")


@pytest.mark.parametrize(
    "fixture, hosts, host, evidence, hint",
    [
        (
            "kubectl-get-nodes-wide.no-internal-ip.txt",
            (("minikube", "192.168.39.83"), ("minikube-m02", "192.168.39.84")),
            "minikube-m02",
            "minikube-m02's INTERNAL-IP is <none>, not its node_ip 192.168.39.84",
            "KUBELET_EXTRA_ARGS=--node-ip=192.168.39.84",
        ),
        (
            "kubectl-get-nodes-wide.containerd-worker.txt",
            (("controller-0", "10.240.0.10"), ("worker-win-2", "10.240.0.22")),
            "worker-win-2",
            "worker-win-2 runs containerd://1.4.1, not docker://",
            "unix:///var/run/cri-dockerd.sock",
        ),
        (
            "kubectl-get-nodes-wide.docker.txt",
            (("k8s1", "10.210.40.172"), ("slave9", "10.210.40.190")),
            "slave9",
            "slave9 is not a node of the cluster (nodes: k8s1, k8s2, k8s3)",
            "slave9 has not joined",
        ),
    ],
)
def test_a_node_with_the_wrong_ip_runtime_or_missing_fails_on_its_own_row(
    tmp_path, fixture, hosts, host, evidence, hint
):
    master = hosts[0][0]
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topology(tmp_path, *hosts),
        base={(master, "cluster.api", "nodes"): _read(PUBLIC / fixture)},
        checks=("cluster.api", "net.nodes"),
    )
    checks = replay(bundle_dir)
    row = checks[("net.nodes", host)]
    assert (row["status"], row["evidence"]) == ("fail", evidence)
    assert hint in row["hint"]
    assert checks[("net.nodes", master)]["status"] == "pass"


# --- kube-proxy and weave-net on every node ------------------------------------------------


def test_kube_proxy_crash_looping_on_a_worker_fails_that_worker(tmp_path):
    topo = topology(
        tmp_path,
        ("masternode", "192.168.1.50"),
        ("nodea", "192.168.1.95"),
        ("nodeb", "192.168.1.111"),
    )
    pods = _read(PUBLIC / "kubectl-get-pods-kube-system-wide.kube-proxy-crashloop.txt")
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topo,
        # `kubectl get pods -n kube-system -o wide`, replayed as the check's `get pod -A`:
        # rows without NAMESPACE are read in the namespace the check asks for.
        base={("masternode", "net.node-pods", "pods"): pods},
        checks=("net.node-pods",),
    )
    row = replay(bundle_dir)[("net.node-pods", "nodea")]
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "kube-proxy-t7mrh 0/1 CrashLoopBackOff 390 (54s ago) 37h 192.168.1.95 nodea <none> <none>"
    )
    assert "--previous" in row["hint"]


def test_node_pods_pass_on_every_node_of_the_course(tmp_path):
    checks = replay(write_bundle(tmp_path / "b"), "net.node-pods")
    for host in ("master", "slave1", "slave2"):
        row = checks[("net.node-pods", host)]
        assert row["status"] == "pass"
        assert (
            row["evidence"].startswith("kube-system kube-proxy-") and f" {host} " in row["evidence"]
        )
        assert "weave-net-" in row["evidence"]


# --- Weave's data path ---------------------------------------------------------------------

WEAVE_2984 = (("host1", "10.128.0.4"), ("host2", "10.128.0.5"))


@pytest.mark.parametrize("path, mtu", [("fastdp", "mtu=1376"), ("sleeve", "mtu=1398")])
def test_weave_established_on_both_hosts_names_the_data_path(tmp_path, path, mtu):
    base = {
        (h, "net.weave-connections", "connections"): _read(
            PUBLIC / f"weave-connections.2984.{h}-{path}.txt"
        )
        for h, _ in WEAVE_2984
    }
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topology(tmp_path, *WEAVE_2984),
        base=base,
        checks=("net.weave-connections",),
    )
    checks = replay(bundle_dir)
    assert checks[("net.weave-connections", "host1")]["evidence"] == (
        f"host2 (10.128.0.5) established {path} {mtu}"
    )
    assert checks[("net.weave-connections", "host2")]["evidence"] == (
        f"host1 (10.128.0.4) established {path} {mtu}"
    )
    assert {c["status"] for c in checks.values()} == {"pass"}


def _weave_row(tmp_path, hosts, fixture: str) -> dict:
    """net.weave-connections graded for the first of `hosts`, whose status page `fixture` is."""
    viewer = hosts[0][0]
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topology(tmp_path, *hosts),
        base={(viewer, "net.weave-connections", "connections"): _read(PUBLIC / fixture)},
        checks=("net.weave-connections",),
    )
    return replay(bundle_dir)[("net.weave-connections", viewer)]


def test_weave_pending_is_a_failure_naming_the_udp_path(tmp_path):
    """TCP up, UDP heartbeat missing: `pending` (weaveworks/weave#3595)."""
    hosts = (
        ("viewer", "172.20.40.1"),
        ("ip-172-20-63-88", "172.20.63.88"),
        ("ip-172-20-73-221", "172.20.73.221"),
    )
    row = _weave_row(tmp_path, hosts, "weave-connections.3595.pending.txt")
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "ip-172-20-63-88 (172.20.63.88): pending (TCP is up, weave has no UDP heartbeat yet: "
        "no data path); ip-172-20-73-221 (172.20.73.221) established sleeve mtu=1438"
    )
    assert "UDP 6783-6784" in row["hint"]


def test_weave_failed_connection_gives_weaves_reason_and_ignores_itself(tmp_path):
    """weaveworks/weave#3615: the node's own address fails with "cannot connect to ourself"
    (normal); the peers fail with weave's IPAM reason."""
    hosts = (
        ("k8s-master-main", "192.168.132.133"),
        ("w210", "192.168.132.210"),
        ("w156", "192.168.132.156"),
    )
    row = _weave_row(tmp_path, hosts, "weave-connections.3615.master-failed.txt")
    assert row["status"] == "fail"
    assert row["evidence"].startswith(
        "w210 (192.168.132.210): failed: Peer ca:73:6b:33:61:25 says it owns the IP range from "
        "10.41.128.0, which I think I own; w156 (192.168.132.156): failed: "
    )
    assert "ourself" not in row["evidence"] and "retry" not in row["evidence"]


def test_weave_not_running_shows_curls_error(tmp_path):
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topology(tmp_path, *WEAVE_2984),
        base={
            ("host1", "net.weave-connections", "connections"): _failed(
                _read(MADE_HERE / "curl-7-weave-status.err"), 7
            ),
            ("host2", "net.weave-connections", "connections"): _read(
                PUBLIC / "weave-connections.2984.host2-fastdp.txt"
            ),
        },
        checks=("net.weave-connections",),
    )
    row = replay(bundle_dir)[("net.weave-connections", "host1")]
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "`curl -sS -m 5 127.0.0.1:6784/status/connections` exited 7: curl: (7) Failed to "
        "connect to 127.0.0.1 port 6784 after 0 ms: Couldn't connect to server"
    )
    assert "weave is not running here" in row["hint"]


# --- kube-proxy graded by what it does -----------------------------------------------------


def test_a_service_without_endpoints_is_not_blamed_on_kube_proxy(tmp_path):
    """kube-proxy writes filter REJECTs instead of nat jumps for kube-dns with no endpoints:
    net.svc-iptables passes on every node and says whose fault it is; dns.coredns fails."""
    nat = _read(MADE_HERE / "iptables-S-nat.kube-dns-no-endpoints.txt")
    rejects = _read(MADE_HERE / "iptables-S-filter.kube-dns-no-endpoints.txt")
    edits = {("master", "dns.coredns", "endpoints"): ""}
    for host in ("master", "slave1", "slave2"):
        edits[(host, "net.svc-iptables", "nat")] = nat
        edits[(host, "net.svc-iptables", "filter")] = rejects
    checks = replay(write_bundle(tmp_path / "b", edits), "net.svc-iptables", "dns.coredns")
    for host in ("master", "slave1", "slave2"):
        row = checks[("net.svc-iptables", host)]
        assert row["status"] == "pass"
        assert row["evidence"].startswith(
            "Service kube-system/kube-dns has no ready endpoints: kube-proxy rejects 53/UDP, "
            "53/TCP, 9153/TCP as it should; dns.coredns owns that | 1 ClusterIP port jumps to "
            "its Service chain, e.g. -A KUBE-SERVICES -d 10.96.0.1/32 "
        )
    coredns = checks[("dns.coredns", "master")]
    assert (coredns["status"], coredns["evidence"]) == ("fail", "0 ready endpoints")


def test_a_masquerade_rule_is_not_the_services_jump(tmp_path):
    nat = _read(MADE_HERE / "iptables-S-nat.masquerade-only.txt")
    checks = replay(
        write_bundle(tmp_path / "b", {("slave1", "net.svc-iptables", "nat"): nat}),
        "net.svc-iptables",
    )
    row = checks[("net.svc-iptables", "slave1")]
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "no KUBE-SERVICES jump for default/kubernetes 10.96.0.1:443/TCP (only `-A KUBE-SERVICES "
        '! -s 10.32.0.0/12 -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https '
        'cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ`, which is not the jump to the Service)'
    )
    assert "kube-proxy" in row["hint"]
    assert checks[("net.svc-iptables", "slave2")]["status"] == "pass"


# --- header-based tables -------------------------------------------------------------------


def test_the_daemonset_row_is_chosen_by_name_not_position(tmp_path):
    """kubernetes#39147's `get ds -n kube-system`: the first row is another DaemonSet, which
    the check graded before it read rows by NAME."""
    bundle_dir = write_bundle(
        tmp_path / "b",
        topology_path=topology(tmp_path, ("master", "10.0.2.15"), ("slave1", "10.0.2.4")),
        base={
            ("master", "net.weave-ds", "ds"): _read(PUBLIC / "kubectl-get-ds-kube-system.39147.txt")
        },
        checks=("net.weave-ds",),
    )
    row = replay(bundle_dir)[("net.weave-ds", "master")]
    assert (row["status"], row["evidence"]) == (
        "fail",
        "no DaemonSet weave-net in `kubectl get ds weave-net -n kube-system`",
    )


def test_a_table_without_a_needed_column_says_which(tmp_path):
    pods = course_outputs()[("master", "storage.emptydir-ready", "pods")]
    checks = replay(
        write_bundle(tmp_path / "b", {("master", "net.weave-ds", "ds"): pods}), "net.weave-ds"
    )
    row = checks[("net.weave-ds", "master")]
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "no DESIRED column in the table (header: NAME READY STATUS RESTARTS AGE IP NODE "
        "NOMINATED NODE READINESS GATES)"
    )


def test_old_kubectl_svc_table_without_type_column_is_read_by_header():
    """opsnull/follow-me-install-kubernetes-cluster#93: kubectl of 2017 printed no TYPE
    column, so CLUSTER-IP is the 3rd field and PORT(S) the 5th: positions would misread it."""
    services = parse.services(_read(PUBLIC / "kubectl-get-services-A.no-type-column.txt"))
    assert [(s.name, s.cluster_ip, s.ports) for s in services] == [
        ("kubernetes", "10.254.0.1", ((443, "TCP"),)),
        ("nginx-ds", "10.254.148.239", ((80, "TCP"),)),
        ("kube-dns", "10.254.0.2", ((53, "UDP"), (53, "TCP"))),
    ]


# --- the client pod first; curl's own error; evidence a learner can act on ----------------


def test_nginx_not_running_skips_the_checks_that_exec_into_it_with_the_reason(tmp_path):
    pods = _read(SEED / "kubectl-get-pod-wide.emptydir.txt").replace(
        "nginx              1/1     Running ", "nginx              0/1     Pending "
    )
    checks = replay(
        write_bundle(tmp_path / "b", {("master", "storage.emptydir-ready", "pods"): pods}),
        "dns",
        "net.pod-to-pod",
        "storage.emptydir-ready",
        "storage.emptydir-serves",
        "storage.emptydir-counts",
    )
    client = checks[("dns.client-pod", "master")]
    assert client["status"] == "fail"
    assert client["evidence"] == "nginx 0/1 Pending 0 2m55s 10.32.0.3 slave2 <none> <none>"
    reason = f"dns.client-pod did not pass (fail on master: {client['evidence']})"
    for key in [
        ("dns.curl", "master"),
        ("storage.emptydir-serves", "master"),
        ("storage.emptydir-counts", "master"),
        ("net.pod-to-pod", "slave1"),
    ]:
        assert (checks[key]["status"], checks[key]["evidence"]) == ("skip", reason), key
    assert checks[("storage.emptydir-ready", "master")]["status"] == "pass"


@pytest.mark.parametrize(
    "stderr, code, hint",
    [
        ("curl-7-refused.err", 7, "nothing accepted the connection"),
        ("curl-28-timeout.err", 28, "packets are lost"),
    ],
)
def test_dns_curl_shows_curls_error_and_the_hint_for_it(tmp_path, stderr, code, hint):
    error = _read(MADE_HERE / stderr)
    checks = replay(
        write_bundle(
            tmp_path / "b",
            {
                ("master", "dns.curl", "curl"): _failed(
                    error + f"command terminated with exit code {code}\n", 1
                )
            },
        ),
        "dns.curl",
    )
    row = checks[("dns.curl", "master")]
    assert (row["status"], row["evidence"]) == ("fail", error.strip())
    assert hint in row["hint"]


def test_emptydir_counts_says_the_second_read_failed(tmp_path):
    reads = (
        _read(SEED / "curl-emptydir.txt")
        + "read failed: "
        + _read(MADE_HERE / "curl-28-timeout.err")
    )
    row = replay(
        write_bundle(tmp_path / "b", {("master", "storage.emptydir-counts", "reads"): reads}),
        "storage.emptydir-counts",
    )[("storage.emptydir-counts", "master")]
    assert (row["status"], row["evidence"]) == (
        "fail",
        "the second read failed: curl: (28) Connection timed out after 5000 milliseconds",
    )


def test_port_forward_without_socat_names_socat_and_the_node(tmp_path):
    log = _read(PUBLIC / "kubectl-port-forward.socat-not-found.txt")
    forward = _read(MADE_HERE / "curl-52-empty-reply.err") + "".join(
        f"port-forward: {line}\n" for line in log.splitlines()
    )
    row = replay(
        write_bundle(tmp_path / "b", {("master", "storage.hostpath-forward", "forward"): forward}),
        "storage.hostpath-forward",
    )[("storage.hostpath-forward", "master")]
    assert row["status"] == "fail"
    assert row["evidence"] == (
        "port-forward failed: an error occurred forwarding 8080 -> 3000: error forwarding port "
        "3000 to pod lobsters-2273945462-s4dr5_default, uid : unable to do port forwarding: "
        "socat not found."
    )
    assert row["hint"].startswith("socat is missing on slave1: ")


def test_pod_to_pod_names_both_nodes(tmp_path):
    checks = replay(write_bundle(tmp_path / "b"), "net.pod-to-pod")
    assert checks[("net.pod-to-pod", "slave1")]["evidence"] == (
        "nginx on slave2 -> simple-app-dep-6b9c7d8f5-2xv4l 10.40.0.2 on slave1: Hello World v1; "
        "nginx on slave2 -> simple-app-dep-6b9c7d8f5-t6w2p 10.40.0.4 on slave1: Hello World v1"
    )
    assert checks[("net.pod-to-pod", "slave2")]["evidence"] == (
        "nginx on slave2 -> simple-app-dep-6b9c7d8f5-8kq7j 10.32.0.5 on slave2: Hello World v1"
    )


def test_pod_to_pod_lost_across_nodes_points_at_weave(tmp_path):
    timeout = _read(MADE_HERE / "curl-28-timeout.err").strip()
    curls = f"10.40.0.2 {timeout}\n10.32.0.5 Hello World v1\n10.40.0.4 {timeout}\n"
    checks = replay(
        write_bundle(tmp_path / "b", {("master", "net.pod-to-pod", "curls"): curls}),
        "net.pod-to-pod",
    )
    row = checks[("net.pod-to-pod", "slave1")]
    assert (row["status"], row["evidence"]) == (
        "fail",
        f"nginx on slave2 -> simple-app-dep-6b9c7d8f5-2xv4l 10.40.0.2 on slave1: {timeout}",
    )
    assert "between slave2 and slave1" in row["hint"] and "net.weave-connections" in row["hint"]
    assert checks[("net.pod-to-pod", "slave2")]["status"] == "pass"


def test_evidence_shows_no_regular_expression_and_no_dangling_text(tmp_path):
    checks = replay(
        write_bundle(
            tmp_path / "b",
            {
                ("master", "net.weave-ipalloc", "weaver"): "",
                ("master", "dns.simple-app", "endpoints"): "",
            },
        ),
        "net.weave-ipalloc",
        "dns.simple-app",
    )
    assert checks[("net.weave-ipalloc", "master")]["evidence"] == (
        "no weaver process with --ipalloc-range on master"
    )
    assert checks[("dns.simple-app", "master")]["evidence"] == "0 ready endpoints"


def test_the_error_line_is_shown_not_a_notice_before_it(tmp_path):
    """kubectl prints klog lines and notices before the sentence with the cause."""
    notfound = 'Error from server (NotFound): deployments.apps "simple-app-dep" not found\n'
    stderr = _read(MADE_HERE / "kubectl-get-nodes.api-down.err").splitlines(keepends=True)[0]
    row = replay(
        write_bundle(
            tmp_path / "b",
            {("master", "dns.simple-app", "deploy"): _failed(stderr + notfound)},
        ),
        "dns.simple-app",
    )[("dns.simple-app", "master")]
    assert row["evidence"].endswith(f"exited 1: {notfound.strip()}")


# --- beyond the course: NodePort on every node (optional) ----------------------------------


def _nodeport(tmp_path, exists: str, answers: str | None = None) -> dict:
    edits = {("master", "net.nodeport", "exists"): exists}
    if answers is not None:
        edits[("master", "net.nodeport", "answers")] = answers
    return replay(write_bundle(tmp_path / "b", edits, checks=("net.nodeport",)))


def test_nodeport_not_applied_is_skipped_saying_how_to_apply_it(tmp_path):
    checks = _nodeport(tmp_path, "", "")  # `kubectl get svc ... --ignore-not-found` prints nothing
    assert {(c["status"], c["evidence"]) for c in checks.values()} == {
        (
            "skip",
            "optional: Service simple-app-nodeport not applied (labctl apply ch09 --only nodeport)",
        )
    }


def test_nodeport_answers_on_every_node_ip_or_names_the_node_that_does_not(tmp_path):
    hello = _read(SEED / "curl-simple-app-svc.txt").strip()
    timeout = _read(MADE_HERE / "curl-28-timeout.err").strip()
    answers = f"10.0.2.15 {hello}\n10.0.2.4 {hello}\n10.0.2.5 {timeout}\n"
    checks = _nodeport(tmp_path, "service/simple-app-nodeport\n", answers)
    assert checks[("net.nodeport", "slave1")]["evidence"] == "10.0.2.4: Hello World v1"
    assert checks[("net.nodeport", "master")]["status"] == "pass"
    row = checks[("net.nodeport", "slave2")]
    assert (row["status"], row["evidence"]) == ("fail", f"10.0.2.5: {timeout}")
    assert "KUBE-NODEPORTS" in row["hint"]


def test_a_plain_apply_leaves_the_optional_step_out():
    lab = load_lab("ch09", load(COURSE_TOPOLOGY))
    assert [s.id for s in lab.select_steps()] == ["coredns", "emptydir", "hostpath"]
    assert [s.id for s in lab.select_steps(("nodeport",))] == ["nodeport"]
