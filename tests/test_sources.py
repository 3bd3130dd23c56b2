"""Offline and mirror sources in the topology file: defaults, local folders and files, and
every bad value one line naming its key, before anything connects."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from k8slab import archives
from k8slab.deploy.common import AptPlan
from k8slab.deploy.join import join_command
from k8slab.render import render
from k8slab.topology import REPO_ROOT, Topology, TopologyError, load

DEFAULT = REPO_ROOT / "inventory" / "lab.yaml"
ARMORED = (
    b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBGb...\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


def topology(tmp_path: Path, **keys) -> Path:
    data = yaml.safe_load(DEFAULT.read_text())
    data.update(keys)
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def flat_repo(tmp_path: Path, key: bytes | None = ARMORED) -> Path:
    repo = tmp_path / "kube-repo"
    repo.mkdir()
    (repo / "InRelease").write_text("-----BEGIN PGP SIGNED MESSAGE-----\n")
    if key is not None:
        (repo / "Release.key").write_bytes(key)
    return repo


def docker_save(path: Path, tags: list[str], manifest: bool = True) -> Path:
    """The layout `docker save` writes: manifest.json naming each image's tags."""
    with tarfile.open(path, "w") as tar:
        files = {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": tags}])}
        if not manifest:
            files = {"c.json": "{}"}
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_defaults_are_todays_public_sources():
    topo = load(DEFAULT)
    assert topo.kube_apt.repo.url == "https://pkgs.k8s.io/core:/stable:/v1.36/deb/"
    assert topo.kube_apt.key.url == "https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key"
    assert topo.docker_apt.repo.url == "https://download.docker.com/linux/{distro}"
    assert topo.docker_apt.key.url == "https://download.docker.com/linux/{distro}/gpg"
    assert topo.cri_dockerd.url == (
        "https://github.com/Mirantis/cri-dockerd/releases/download/"
        "v{version}/cri-dockerd-{version}.{arch}.tgz"
    )
    assert topo.kube_image_repository == "registry.k8s.io"
    assert topo.image_archives == ()
    assert (topo.allow_cgroup_v1, topo.kube_proxy_tune_conntrack) == (False, True)
    assert topo.weave_fastdp == "auto"


@pytest.mark.parametrize("written, read", [("auto", "auto"), ("true", True), ("false", False)])
def test_weave_fastdp_is_auto_true_or_false(tmp_path, written, read):
    path = topology(tmp_path)
    path.write_text(path.read_text() + f"weave_fastdp: {written}\n")
    topo = load(path)
    assert topo.weave_fastdp == read
    assert topo.cluster_vars()["weave_fastdp"] == read


def test_local_folders_and_files_relative_to_the_topology_file(tmp_path):
    flat_repo(tmp_path)
    (tmp_path / "cri.tgz").write_bytes(b"tarball")
    (tmp_path / "images").mkdir()
    docker_save(tmp_path / "images" / "pause.tar", ["registry.k8s.io/pause:3.10"])
    topo = load(
        topology(
            tmp_path,
            kube_apt_repo="kube-repo",
            cri_dockerd_url="cri.tgz",
            cri_dockerd_sha256=hashlib.sha256(b"tarball").hexdigest(),
            image_archives="images",
        )
    )
    assert topo.kube_apt.repo.local == str(tmp_path / "kube-repo")
    assert topo.kube_apt.key.local == str(tmp_path / "kube-repo" / "Release.key")
    assert topo.kube_apt.armored
    assert topo.cri_dockerd.local == str(tmp_path / "cri.tgz")
    assert [(a.path, a.tags) for a in topo.image_archives] == [
        (str(tmp_path / "images" / "pause.tar"), ("registry.k8s.io/pause:3.10",))
    ]
    assert topo.source_probes()[:2] == [
        "https://download.docker.com/linux/{distro}/dists/{codename}/InRelease",
        "https://download.docker.com/linux/{distro}/gpg",
    ]  # no registry: the archives are loaded, nothing is pulled


def test_where_each_apt_source_goes_on_a_host(tmp_path):
    local = load(topology(tmp_path, kube_apt_repo=str(flat_repo(tmp_path)))).cluster_vars()
    plan = AptPlan.of(local["kube_apt"], "kubernetes", "/")
    assert plan == AptPlan(
        "/etc/apt/keyrings/kubernetes.asc",
        "file:/var/cache/k8s-lab/apt/kubernetes/",
        "/",
        "/var/cache/k8s-lab/apt/kubernetes/",
    )
    mirror = load(topology(tmp_path, docker_apt_repo="http://10.0.0.9/docker/{distro}"))
    plan = AptPlan.of(
        mirror.cluster_vars()["docker_apt"], "docker", "bookworm stable", distro="debian"
    )
    assert plan.url == "http://10.0.0.9/docker/debian" and plan.upload_dir is None
    assert plan.keyring.startswith("/etc/apt/keyrings/docker-") and plan.keyring.endswith(".asc")
    line = render(
        "templates/apt-source.list.j2",
        {
            "apt_comment": "Docker's apt repository",
            "apt_arch": "amd64",
            "apt_keyring": plan.keyring,
            "apt_url": plan.url,
            "apt_suite": plan.suite,
        },
    ).splitlines()[-1]
    assert (
        line == f"deb [arch=amd64 signed-by={plan.keyring}] http://10.0.0.9/docker/debian"
        " bookworm stable"
    )


def test_a_binary_key_gets_a_gpg_keyring(tmp_path):
    key = tmp_path / "k.gpg"
    key.write_bytes(b"\x99\x01\x0d\x04")
    topo = load(
        topology(tmp_path, kube_apt_repo=str(flat_repo(tmp_path, None)), kube_apt_key=str(key))
    )
    assert not topo.kube_apt.armored
    assert AptPlan.of(topo.cluster_vars()["kube_apt"], "kubernetes", "/").keyring.endswith(".gpg")


def _bad(tmp_path):
    """(keys, message) pairs; built per test since they name files under tmp_path."""
    repo = flat_repo(tmp_path, key=None)
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-key").write_text("hello\n")
    (tmp_path / "cri.tgz").write_bytes(b"x")
    (tmp_path / "imgs").mkdir()
    docker_save(tmp_path / "imgs" / "bad.tar", [], manifest=False)
    return [
        ({"kube_apt_repo": "ftp://mirror/k8s"}, "kube_apt_repo: 'ftp://mirror/k8s' is not a URL"),
        ({"kube_apt_repo": "nope"}, f"kube_apt_repo: {tmp_path / 'nope'} is not a directory"),
        (
            {"kube_apt_repo": "empty"},
            f"kube_apt_repo: {tmp_path / 'empty'} is not a flat apt repository",
        ),
        (
            {"kube_apt_repo": str(repo)},
            f"kube_apt_key: required: the local kube_apt_repo {repo} has no Release.key",
        ),
        ({"kube_apt_key": "/no/such.asc"}, "kube_apt_key: /no/such.asc: no such file"),
        ({"kube_apt_key": "not-a-key"}, "is not an OpenPGP public key"),
        (
            {"kube_apt_key": "https://exa mple/key"},
            "kube_apt_key: 'https://exa mple/key' is not a URL",
        ),
        ({"docker_apt_repo": "http:/x"}, "docker_apt_repo: 'http:/x' is not a URL"),
        ({"docker_apt_key": 42}, "docker_apt_key: expected a URL"),
        (
            {"cri_dockerd_url": "missing.tgz"},
            f"cri_dockerd_url: {tmp_path / 'missing.tgz'}: no such file",
        ),
        (
            {"cri_dockerd_url": "cri.tgz", "cri_dockerd_sha256": "0" * 64},
            f"cri_dockerd_sha256: {tmp_path / 'cri.tgz'} has sha256 "
            + hashlib.sha256(b"x").hexdigest(),
        ),
        ({"kube_image_repository": "Registry K8s"}, "kube_image_repository: 'Registry K8s' is not"),
        ({"image_archives": "nope"}, f"image_archives: {tmp_path / 'nope'} is not a directory"),
        ({"image_archives": "empty"}, f"image_archives: {tmp_path / 'empty'} holds no *.tar"),
        ({"image_archives": "imgs"}, "bad.tar: not a `docker save` archive with tagged images"),
        ({"allow_cgroup_v1": "yes"}, "allow_cgroup_v1: 'yes' is not true or false"),
        ({"kube_proxy_tune_conntrack": 0}, "kube_proxy_tune_conntrack: 0 is not true or false"),
        ({"weave_fastdp": "sleeve"}, "weave_fastdp: 'sleeve' is not auto, true or false"),
        ({"weave_fastdp": "Auto"}, "weave_fastdp: 'Auto' is not auto, true or false"),
        ({"weave_fastdp": 1}, "weave_fastdp: 1 is not auto, true or false"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_bad_source_is_one_line_naming_the_key(tmp_path, case):
    cases = _bad(tmp_path)
    assert len(cases) == 20
    keys, message = cases[case]
    path = topology(tmp_path, **keys)
    with pytest.raises(TopologyError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_archives_to_load_skips_those_whose_tags_are_all_present():
    wanted = [
        {"path": "/a/pause.tar", "tags": ["registry.k8s.io/pause:3.10"]},
        {"path": "/a/busybox.tar", "tags": ["docker.io/library/busybox:1.36", "busybox:latest"]},
    ]
    present = ["registry.k8s.io/pause:3.10", "busybox:1.36"]
    assert archives.to_load(wanted, present) == [wanted[1]]
    assert archives.to_load(wanted, [*present, "busybox:latest"]) == []


def kubeadm_docs(values: dict) -> dict[str, dict]:
    text = render(
        "templates/kubernetes/kubeadm-config.v1beta4.yaml.j2",
        {**values, "kubernetes_version": "v1.35.2"},
    )
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text)}


@pytest.mark.parametrize("minor", ["1.35", "1.36", "1.37"])
def test_kubeadm_config_for_cgroup_v1_and_untouched_conntrack(tmp_path, minor):
    topo = load(
        topology(
            tmp_path,
            kube_version=minor,
            allow_cgroup_v1=True,
            kube_proxy_tune_conntrack=False,
            kube_image_repository="mirror.example:5000/k8s",
        )
    )
    docs = kubeadm_docs(topo.host_vars(topo.control_plane))
    assert docs["InitConfiguration"]["nodeRegistration"]["ignorePreflightErrors"] == [
        "SystemVerification"
    ]
    assert docs["KubeletConfiguration"]["failCgroupV1"] is False
    assert docs["ClusterConfiguration"]["imageRepository"] == "mirror.example:5000/k8s"
    assert docs["ClusterConfiguration"]["kubernetesVersion"] == "v1.35.2"
    assert docs["KubeProxyConfiguration"]["conntrack"] == {
        "maxPerCore": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_defaults_leave_cgroup_and_conntrack_to_kubelet_and_kube_proxy():
    topo = load(DEFAULT)
    docs = kubeadm_docs(topo.host_vars(topo.control_plane))
    assert "ignorePreflightErrors" not in docs["InitConfiguration"]["nodeRegistration"]
    assert "failCgroupV1" not in docs["KubeletConfiguration"]
    assert "conntrack" not in docs["KubeProxyConfiguration"]
    assert docs["ClusterConfiguration"]["imageRepository"] == "registry.k8s.io"


def test_join_skips_system_verification_only_when_cgroup_v1_is_allowed(tmp_path):
    hash_ = "sha256:" + "0" * 64
    plain = load(DEFAULT)
    assert "ignore-preflight" not in str(
        join_command(plain.host_vars(plain.host("slave1")), "t", hash_)
    )
    topo = load(topology(tmp_path, allow_cgroup_v1=True))
    shown = str(join_command(topo.host_vars(topo.host("slave1")), "t", hash_))
    assert shown.endswith("--node-name slave1 --ignore-preflight-errors=SystemVerification")


# The offline folder's archives (tests/e2e, /opt/k8s-e2e/offline/images), by their tags; its
# labs.yaml gives the lab's nginx and httpd other tags.
OFFLINE = {
    "busybox": ["busybox:latest"],
    "coredns": ["registry.k8s.io/coredns/coredns:v1.14.2"],
    "etcd": ["registry.k8s.io/etcd:3.6.8-0"],
    "httpd": ["local/httpd:bookworm"],
    "kube-apiserver": ["registry.k8s.io/kube-apiserver:v1.36.2"],
    "kube-controller-manager": ["registry.k8s.io/kube-controller-manager:v1.36.2"],
    "kube-proxy": ["registry.k8s.io/kube-proxy:v1.36.2"],
    "kube-scheduler": ["registry.k8s.io/kube-scheduler:v1.36.2"],
    "nginx": ["local/nginx:bookworm"],
    "pause": ["registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10"],
    "weave-kube": ["rajchaudhuri/weave-kube:2.9.0"],
    "weave-npc": ["rajchaudhuri/weave-npc:2.9.0"],
}
LOCAL_LAB_IMAGES = {
    "ch09": {
        "images": {
            "nginx": {"tag": "local/nginx:bookworm", "build": False},
            "httpd": {"tag": "local/httpd:bookworm", "build": False},
        }
    }
}


def _offline_topology(tmp_path: Path, **keys) -> Topology:
    (tmp_path / "images").mkdir()
    for name, tags in OFFLINE.items():
        docker_save(tmp_path / "images" / f"{name}.tar", tags)
    return load(topology(tmp_path, image_archives="images", **keys))


def _names(archive_list) -> list[str]:
    return sorted(Path(a["path"]).stem for a in archive_list)


EVERY = ["coredns", "kube-proxy", "pause", "weave-kube", "weave-npc"]


def test_archives_go_to_the_nodes_that_run_their_images(tmp_path):
    topo = _offline_topology(tmp_path, labs=LOCAL_LAB_IMAGES)
    master, slave1, slave2 = (topo.host_vars(h) for h in topo.hosts)
    assert _names(master["node_image_archives"]) == sorted(
        [*EVERY, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    )
    assert _names(slave1["node_image_archives"]) == sorted([*EVERY, "busybox", "httpd", "nginx"])
    assert slave2["node_image_archives"] == slave1["node_image_archives"]
    # every archive still reaches some node; the cluster-wide list is unchanged
    assert len(master["image_archives"]) == len(OFFLINE)


def test_archives_of_images_not_the_labs_go_everywhere(tmp_path):
    # Without labs.yaml the lab runs Docker Hub's nginx and httpd: local/* is unknown.
    topo = _offline_topology(tmp_path)
    placed = {Path(a["path"]).stem: a["nodes"] for a in archives.placed(topo)}
    assert placed["nginx"] == placed["httpd"] == archives.EVERY_NODE
    assert placed["busybox"] == archives.WORKERS  # what labctl builds count and simple-app on
    assert placed["etcd"] == archives.CONTROL_PLANE


@pytest.mark.parametrize(
    "tags, repo, where",
    [
        (["registry.k8s.io/kube-apiserver:v1.36.2"], "registry.k8s.io", "control-plane"),
        (["registry.k8s.io/etcd:3.6.8-0"], "registry.k8s.io", "control-plane"),
        # a mirror: kubeadm runs the images of kube_image_repository
        (["mirror.lan:5000/k8s/kube-scheduler:v1.36.2"], "mirror.lan:5000/k8s", "control-plane"),
        (["registry.k8s.io/kube-scheduler:v1.36.2"], "mirror.lan:5000/k8s", "every node"),
        (["registry.k8s.io/kube-proxy:v1.36.2"], "registry.k8s.io", "every node"),
        (["registry.k8s.io/coredns/coredns:v1.14.2"], "registry.k8s.io", "every node"),
        (["nginx:latest"], "registry.k8s.io", "workers"),
        (["docker.io/library/nginx"], "registry.k8s.io", "workers"),
        (["nginx:1.27"], "registry.k8s.io", "every node"),  # not the lab's tag
        (["nginx", "httpd", "busybox:latest"], "registry.k8s.io", "workers"),
        # mixed: safe default
        (["nginx", "registry.k8s.io/etcd:3.6.8-0"], "registry.k8s.io", "every node"),
        (["myorg/etcd:3.6.8-0"], "registry.k8s.io", "every node"),
    ],
)
def test_where_an_archive_goes_by_its_tags(tags, repo, where):
    lab_images = {"nginx:latest", "httpd:latest", "busybox:latest"}
    assert archives.nodes(tags, repo, lab_images) == where


def test_lab_images_follow_the_topology(tmp_path):
    assert archives.lab_images(load(DEFAULT)) == {"nginx:latest", "httpd:latest", "busybox:latest"}
    topo = load(topology(tmp_path, labs=LOCAL_LAB_IMAGES))
    assert archives.lab_images(topo) == {
        "local/nginx:bookworm",
        "local/httpd:bookworm",
        "busybox:latest",
    }


def test_without_archives_no_lab_is_read(tmp_path):
    topo = load(DEFAULT)
    assert archives.placed(topo) == []
    assert topo.host_vars(topo.control_plane)["node_image_archives"] == []
