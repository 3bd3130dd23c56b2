"""Every host config template and the Weave Net manifest, rendered for the default topology."""

from __future__ import annotations

import json

import jinja2
import kubernetes_validate
import pytest
import yaml

from k8slab import weave
from k8slab.deploy.hostprep import SYSCTLS
from k8slab.render import render
from k8slab.topology import REPO_ROOT, load

TOPO = load(REPO_ROOT / "inventory" / "lab.yaml")
MASTER = TOPO.host_vars(TOPO.control_plane)
SLAVE1 = TOPO.host_vars(TOPO.host("slave1"))
# Strict schemas of every supported-or-recent minor the validator ships.
MINORS = [m for m in ("1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37")]


def kubeadm_docs(values=MASTER) -> dict[str, dict]:
    # kubernetes_version: what the deploy reads from `kubeadm version -o short` on master.
    text = render(
        "templates/kubernetes/kubeadm-config.v1beta4.yaml.j2",
        {**values, "kubernetes_version": "v1.35.2"},
    )
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text)}


def test_kubeadm_config_is_v1beta4_with_the_node_and_cluster_values():
    docs = kubeadm_docs()
    assert set(docs) == {
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
        "KubeProxyConfiguration",
    }
    init, cluster = docs["InitConfiguration"], docs["ClusterConfiguration"]
    assert init["apiVersion"] == cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.0.2.15", "bindPort": 6443}
    reg = init["nodeRegistration"]
    assert reg["criSocket"] == "unix:///var/run/cri-dockerd.sock"
    assert reg["name"] == "master"
    # v1beta4 turned kubeletExtraArgs into a list of name/value pairs.
    assert reg["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.0.2.15"}]
    assert cluster["networking"]["podSubnet"] == "10.32.0.0/12"
    assert cluster["networking"]["serviceSubnet"] == "10.96.0.0/12"
    assert cluster["kubernetesVersion"] == "v1.35.2"
    assert cluster["imageRepository"] == "registry.k8s.io"
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    proxy = docs["KubeProxyConfiguration"]
    assert proxy["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    assert (proxy["mode"], proxy["clusterCIDR"]) == ("iptables", "10.32.0.0/12")


def test_kubeadm_config_follows_the_topology(tmp_path):
    text = (REPO_ROOT / "inventory" / "lab.yaml").read_text()
    text = text.replace("10.0.2.15", "192.168.56.10").replace(
        'kube_version: "1.35"', 'kube_version: "1.37"'
    )
    (tmp_path / "lab.yaml").write_text(text)
    topo = load(tmp_path / "lab.yaml")
    docs = kubeadm_docs(topo.host_vars(topo.control_plane))
    assert docs["InitConfiguration"]["localAPIEndpoint"]["advertiseAddress"] == "192.168.56.10"
    assert docs["ClusterConfiguration"]["networking"]["podSubnet"] == "10.32.0.0/12"


@pytest.mark.parametrize(
    "minor, args",
    [
        ("1.35", None),  # the gate does not exist: the API server would refuse to start
        ("1.36", [{"name": "feature-gates", "value": "ExtendWebSocketsToKubelet=false"}]),
        ("1.37", [{"name": "feature-gates", "value": "ExtendWebSocketsToKubelet=false"}]),
    ],
)
def test_from_1_36_the_api_server_keeps_exec_working_with_cri_dockerd(minor, args):
    # Seen on the test bed with v1.36.2 and cri-dockerd 0.4.3: every `kubectl exec` failed
    # with "http: server gave HTTP response to HTTPS client" until this gate was off.
    cluster = kubeadm_docs({**MASTER, "kube_version": minor})["ClusterConfiguration"]
    assert cluster.get("apiServer", {}).get("extraArgs") == args


def test_kubelet_node_ip_is_each_nodes_own():
    assert (
        render("templates/kubernetes/kubelet.default.j2", SLAVE1)
        .strip()
        .endswith('KUBELET_EXTRA_ARGS="--node-ip=10.0.2.4"')
    )


def test_daemon_json_uses_the_systemd_cgroup_driver():
    daemon = json.loads(render("templates/docker/daemon.json.j2", MASTER))
    assert daemon["exec-opts"] == ["native.cgroupdriver=systemd"]


def test_hosts_block_lists_every_node():
    lines = render("templates/hosts.block.j2", MASTER).split("\n")
    assert lines[:3] == ["10.0.2.15 master", "10.0.2.4 slave1", "10.0.2.5 slave2"]


def test_modules_and_sysctls():
    modules = render("templates/modules-load.k8s-lab.conf.j2", MASTER).split("\n")
    assert [m for m in modules if m and not m.startswith("#")] == ["overlay", "br_netfilter"]
    sysctl = render("templates/sysctl.k8s-lab.conf.j2", {**MASTER, "sysctls": SYSCTLS})
    settings = dict(
        line.split(" = ") for line in sysctl.splitlines() if line and not line.startswith("#")
    )
    assert settings == {
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.ipv4.ip_forward": "1",
    }


def test_cri_dockerd_units_listen_where_kubeadm_is_told():
    socket = render("templates/systemd/cri-docker.socket.j2", MASTER)
    service = render(
        "templates/systemd/cri-docker.service.j2",
        {**MASTER, "cri_dockerd_bin": "/usr/local/bin/cri-dockerd"},
    )
    # /var/run is a link to /run on every systemd distribution.
    assert "ListenStream=/run/cri-dockerd.sock" in socket
    assert MASTER["kube_cri_socket"] == "unix:///var/run/cri-dockerd.sock"
    assert "ExecStart=/usr/local/bin/cri-dockerd --container-runtime-endpoint fd://" in service
    # the deploy writes kubeadm's pause image there once kubeadm is installed
    assert "EnvironmentFile=-/etc/default/cri-dockerd" in service
    assert service.split("ExecStart=", 1)[1].splitlines()[0].endswith(" $SANDBOX_ARGS")


def test_a_missing_value_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError):
        render("templates/kubernetes/kubelet.default.j2", {})


def weave_docs(values=MASTER, states=None) -> list[dict]:
    """The manifest as the control plane's phase renders it: the data path decided by
    k8slab.weave from each node's openvswitch (default: every node has it as a module)."""
    states = states or {h.name: "loadable" for h in TOPO.hosts}
    datapath = weave.datapath(values["weave_fastdp"], states)
    text = render("manifests/weave-net.yaml.j2", {**values, "weave_datapath": datapath})
    return list(yaml.safe_load_all(text))


@pytest.mark.parametrize("minor", MINORS)
def test_weave_manifest_validates_strictly(minor):
    docs = weave_docs()
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "DaemonSet",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, minor, strict=True)


def test_weave_manifest_uses_the_fork_and_the_pod_subnet():
    ds = weave_docs()[-1]
    spec = ds["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"weave", "weave-npc"}
    assert containers["weave"]["image"] == "docker.io/rajchaudhuri/weave-kube:2.9.0"
    assert containers["weave-npc"]["image"] == "docker.io/rajchaudhuri/weave-npc:2.9.0"
    assert spec["initContainers"][0]["image"] == "docker.io/rajchaudhuri/weave-kube:2.9.0"
    env = {e["name"]: e.get("value") for e in containers["weave"]["env"]}
    assert env["IPALLOC_RANGE"] == MASTER["kube_pod_subnet"] == "10.32.0.0/12"
    assert env["IPTABLES_BACKEND"] == "nft"
    assert spec["hostNetwork"] is True
    assert containers["weave"]["readinessProbe"]["httpGet"]["port"] == 6784


def _weave_env(minor: str, fastdp, states=None) -> dict:
    ds = weave_docs({**MASTER, "weave_fastdp": fastdp}, states)[-1]
    kubernetes_validate.validate(ds, minor, strict=True)
    container = ds["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("minor", MINORS)
def test_weave_without_fastdp_runs_sleeve_only(minor):
    assert _weave_env(minor, False)["WEAVE_NO_FASTDP"] == "1"
    assert "WEAVE_NO_FASTDP" not in _weave_env(minor, True)


ALL_OVS = {"master": "loaded", "slave1": "loadable", "slave2": "built in"}


@pytest.mark.parametrize(
    "states, sleeve",
    [
        (ALL_OVS, False),
        ({**ALL_OVS, "slave2": "missing"}, True),
        ({h: "missing" for h in ALL_OVS}, True),
    ],
    ids=["every-node-capable", "one-node-lacks", "none"],
)
def test_weave_auto_runs_fastdp_only_when_every_node_can(states, sleeve):
    assert MASTER["weave_fastdp"] == "auto"  # the default
    env = _weave_env("1.36", "auto", states)
    assert ("WEAVE_NO_FASTDP" in env) is sleeve
    # true and false do not look at the nodes
    assert "WEAVE_NO_FASTDP" not in _weave_env("1.36", True, states)
    assert _weave_env("1.36", False, ALL_OVS)["WEAVE_NO_FASTDP"] == "1"


def test_weave_manifest_needs_the_decided_datapath():
    # "auto" must be decided from the nodes: the template never guesses it.
    with pytest.raises(jinja2.UndefinedError):
        render("manifests/weave-net.yaml.j2", MASTER)


def test_strict_validation_catches_a_misspelt_field():
    ds = weave_docs()[-1]
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, "1.35", strict=True)
