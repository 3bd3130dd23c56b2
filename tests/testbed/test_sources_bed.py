"""Offline and mirror sources on the three hosts, with artifacts made here by the tests
(tests/testbed/artifacts.py): a signed flat apt repository of stand-in kubelet, kubeadm and
kubectl packages, a cri-dockerd stand-in tarball, and `docker save` archives of images built
from the bed's busybox rootfs.

Bad inputs first, while nothing is installed: each is one line and changes no package. Then
the phases converge from the local folder (uploaded) and change nothing on a re-run; then
the same repository served as a URL mirror on the bed's bridge; then `labctl apply` loads the
archives a worker lacks.
"""

from __future__ import annotations

import functools
import http.server
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from . import artifacts, bed
from .test_deploy_offline import changes

pytestmark = pytest.mark.testbed

HOSTS = ("master", "slave1", "slave2")
PHASES = ("deploys/cri_dockerd.py", "deploys/images.py", "deploys/kube_packages.py")
LABCTL = str(Path(sys.executable).with_name("labctl"))
TAGS = ("busybox:latest", "k8s-lab/sleeper:test")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The artifacts, made once; a second key signs nothing here (the wrong key)."""
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("sources")
    key = artifacts.gpg_key(tmp / "gnupg", "k8s-lab-test")
    wrong = tmp / "wrong.asc"
    wrong.write_bytes(artifacts.gpg_key(tmp / "gnupg-other", "someone-else"))
    repo = artifacts.flat_repo(tmp / "repo", artifacts.kube_debs(tmp / "debs"), tmp / "gnupg", key)
    tgz = tmp / "cri-dockerd.tgz"
    sha = artifacts.cri_dockerd_tgz(tgz, "0.4.3")
    images = tmp / "images"
    images.mkdir()
    rootfs = bed.busybox_tar()
    artifacts.docker_save(images / "busybox.tar", TAGS[0], rootfs, ["/bin/sh"])
    artifacts.docker_save(images / "sleeper.tar", TAGS[1], rootfs, ["/bin/sleep", "3600"])
    for home in ("gnupg", "gnupg-other"):
        artifacts.stop_gpg_agent(tmp / home)
    print(f"artifacts made in {time.monotonic() - t0:.1f}s")
    return {"tmp": tmp, "repo": repo, "wrong": wrong, "tgz": tgz, "sha": sha, "images": images}


@pytest.fixture(scope="module")
def source_hosts(docker_hosts):
    """Hosts with Docker and no trace of the sources yet; cleaned again at the end, so that
    the stand-ins and a mirror that is gone mislead no test that follows."""
    for h in HOSTS:
        docker_hosts.ssh(h, CLEAN)
    yield docker_hosts
    docker_hosts.ensure_all_up()
    for h in HOSTS:
        docker_hosts.ssh(h, CLEAN)


CLEAN = (
    "apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1; "
    "dpkg --purge kubelet kubeadm kubectl >/dev/null 2>&1; "
    f"docker rmi -f {' '.join(TAGS)} >/dev/null 2>&1; "
    "systemctl disable --now cri-docker.socket cri-docker.service >/dev/null 2>&1; "
    "rm -rf /etc/apt/sources.list.d/kubernetes.list /etc/apt/keyrings/kubernetes* "
    "/etc/apt/apt.conf.d/50testbed-mirror /var/cache/k8s-lab/apt /etc/k8s-lab/apt-verified-* "
    "/etc/systemd/system/cri-docker.* /usr/local/bin/cri-dockerd /etc/k8s-lab/kubeadm-config.yaml; "
    "systemctl daemon-reload; true"
)


def config(testbed, made, **keys) -> Path:
    topo = yaml.safe_load(Path(testbed.config).read_text())
    topo.update(
        {
            "kube_apt_repo": str(made["repo"]),
            "cri_dockerd_url": str(made["tgz"]),
            "cri_dockerd_sha256": made["sha"],
            "image_archives": str(made["images"]),
            "allow_cgroup_v1": True,  # the bed's machine mounts cgroup v1
        }
    )
    topo.update(keys)
    path = made["tmp"] / "lab.yaml"
    path.write_text(yaml.safe_dump(topo))
    return path


def pyinfra(testbed, path: Path, *deploys: str) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    r = subprocess.run(
        [testbed.pyinfra_exe(), "-y", "inventory/lab.py", *deploys],
        cwd=testbed.repo,
        env={**testbed.env(), "LAB_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    r.output = r.stdout + r.stderr
    r.elapsed = time.monotonic() - t0
    print(f"{' '.join(deploys)}: exit {r.returncode} in {r.elapsed:.1f}s")
    return r


def installed(testbed, host: str) -> str:
    return testbed.ssh(host, "dpkg-query -W -f='${Package} ' kubelet kubeadm kubectl 2>/dev/null")[
        1
    ]


def test_missing_file_is_one_line_before_any_connection(source_hosts, made):
    r = pyinfra(
        source_hosts, config(source_hosts, made, kube_apt_key="/nonexistent/k.asc"), *PHASES
    )
    assert r.returncode != 0
    line = f"k8s-lab: {made['tmp'] / 'lab.yaml'}: kube_apt_key: /nonexistent/k.asc: no such file"
    assert [x for x in r.stderr.splitlines() if "k8s-lab" in x] == [line]
    assert "Traceback" not in r.output and "Connecting" not in r.output
    assert "Starting operation" not in r.output


def test_wrong_key_is_one_line_naming_apts_error_before_packages_change(source_hosts, made):
    r = pyinfra(
        source_hosts, config(source_hosts, made, kube_apt_key=str(made["wrong"])), PHASES[2]
    )
    assert r.returncode != 0
    lines = [line for line in r.output.splitlines() if "apt-get update fails:" in line]
    assert len(lines) == 3, r.output[-4000:]  # one per host
    assert all("NO_PUBKEY" in line for line in lines), lines
    assert "Traceback" not in r.output
    for h in HOSTS:
        assert installed(source_hosts, h) == "", h


def test_unreachable_url_stops_the_preflight_before_anything_changes(source_hosts, made):
    with socket.socket() as s:  # a port nothing listens on
        s.bind((bed.GATEWAY, 0))
        dead = f"http://{bed.GATEWAY}:{s.getsockname()[1]}/kube/"
    before = {h: source_hosts.ssh(h, "ls /etc/apt/sources.list.d")[1] for h in HOSTS}
    r = pyinfra(source_hosts, config(source_hosts, made, kube_apt_repo=dead), "deploys/cluster.py")
    assert r.returncode != 0
    assert re.search(
        rf"^sources\s+master\s+FAIL\s+cannot reach: 000\s+{re.escape(dead)}InRelease",
        r.output,
        re.M,
    ), r.output[-3000:]
    # allow_cgroup_v1: the pre-flight passes the bed's cgroup v1 with a warning
    assert re.search(r"^cgroup-v2\s+slave1\s+PASS\s+warning: cgroup v1, allowed", r.output, re.M)
    assert "pre-flight failed, nothing was changed: sources on master, slave1, slave2." in r.output
    assert "Starting operation" not in r.output
    assert {h: source_hosts.ssh(h, "ls /etc/apt/sources.list.d")[1] for h in HOSTS} == before


@pytest.fixture(scope="module")
def converged(source_hosts, made):
    r = pyinfra(source_hosts, config(source_hosts, made), *PHASES)
    assert r.returncode == 0, r.output[-5000:]
    return r


def test_local_sources_converge_on_every_host(source_hosts, converged):
    for h in HOSTS:
        assert installed(source_hosts, h).split() == ["kubeadm", "kubectl", "kubelet"]
        assert source_hosts.ssh(h, "apt-mark showhold")[1].split() == [
            "kubeadm",
            "kubectl",
            "kubelet",
        ]
        assert source_hosts.ssh(h, "kubeadm version -o short")[1].strip() == "v1.35.2"
        # cri-dockerd's sandboxes take the pause image the installed kubeadm lists
        assert source_hosts.ssh(h, "cat /etc/default/cri-dockerd")[1] == (
            f"SANDBOX_ARGS=--pod-infra-container-image=registry.k8s.io/{artifacts.PAUSE}\n"
        )
        assert source_hosts.ssh(h, "cat /etc/apt/sources.list.d/kubernetes.list")[1].splitlines()[
            -1
        ] == (
            "deb [signed-by=/etc/apt/keyrings/kubernetes.asc] "
            "file:/var/cache/k8s-lab/apt/kubernetes/ /"
        )
        assert source_hosts.ssh(h, "systemctl is-enabled kubelet")[1].strip() == "enabled"
        assert (
            "cri-dockerd 0.4.3 (k8s-lab test stand-in)"
            in source_hosts.ssh(h, "/usr/local/bin/cri-dockerd --version")[1]
        )
        assert source_hosts.ssh(h, "systemctl is-active cri-docker.service")[1].strip() == "active"
        for tag in TAGS:
            rc, _, err = source_hosts.ssh(h, f"docker image inspect {tag} >/dev/null")
            assert rc == 0, f"{h}: {tag}: {err}"
    rc, out, err = source_hosts.ssh(
        "slave2", "docker run --rm --pull=never busybox:latest echo loaded"
    )
    assert (rc, out) == (0, "loaded\n"), err


def test_rerun_changes_nothing(source_hosts, made, converged):
    r = pyinfra(source_hosts, config(source_hosts, made), *PHASES)
    assert r.returncode == 0, r.output[-5000:]
    assert changes(r.output) == {h: 0 for h in HOSTS}, r.output[-5000:]


def test_a_changed_local_repository_is_uploaded_again(source_hosts, made, converged):
    # Re-runs skip the upload while the folder is as last uploaded; a change must still go up.
    extra = made["repo"] / "NOTE.txt"
    extra.write_text("added after the first upload\n")
    remote = "/var/cache/k8s-lab/apt/kubernetes/NOTE.txt"
    try:
        r = pyinfra(source_hosts, config(source_hosts, made), PHASES[2])
        assert r.returncode == 0, r.output[-5000:]
        for h in HOSTS:
            assert source_hosts.ssh(h, f"cat {remote}")[1] == "added after the first upload\n"
    finally:
        extra.unlink()
    r = pyinfra(source_hosts, config(source_hosts, made), PHASES[2])
    assert r.returncode == 0, r.output[-5000:]
    for h in HOSTS:
        assert source_hosts.ssh(h, f"test -e {remote}")[0] == 1, f"{h} still has {remote}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(made):
    """The same repository served over HTTP on the bed's bridge, like a classroom mirror."""
    handler = functools.partial(_QuietHandler, directory=str(made["repo"].parent))
    with http.server.ThreadingHTTPServer((bed.GATEWAY, 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://{bed.GATEWAY}:{server.server_address[1]}/{made['repo'].name}/"
        server.shutdown()


def test_a_url_mirror_takes_the_same_apt_path(source_hosts, made, converged, mirror):
    # The bed's apt proxy forwards to Debian's mirrors only; a mirror in the hosts' own
    # network is reached directly, as in a classroom.
    for h in HOSTS:
        source_hosts.ssh(
            h,
            f"echo 'Acquire::http::Proxy::{bed.GATEWAY} \"DIRECT\";' "
            "> /etc/apt/apt.conf.d/50testbed-mirror",
        )
    path = config(source_hosts, made, kube_apt_repo=mirror)
    r = pyinfra(source_hosts, path, PHASES[2])
    assert r.returncode == 0, r.output[-5000:]
    line = source_hosts.ssh("master", "cat /etc/apt/sources.list.d/kubernetes.list")[
        1
    ].splitlines()[-1]
    assert re.fullmatch(
        rf"deb \[signed-by=/etc/apt/keyrings/kubernetes-[0-9a-f]{{8}}\.asc\] {re.escape(mirror)} /",
        line,
    ), line
    again = pyinfra(source_hosts, path, PHASES[2])
    assert again.returncode == 0 and changes(again.output) == {h: 0 for h in HOSTS}, again.output[
        -5000:
    ]


def test_labctl_apply_loads_the_archives_a_worker_lacks(source_hosts, made, converged):
    source_hosts.ssh("slave1", f"docker rmi -f {TAGS[0]} k8s-lab/count:v1 k8s-lab/simple-app:v1")
    path = config(source_hosts, made)
    cmd = [LABCTL, "--config", str(path), "--known-hosts", str(source_hosts.known_hosts)]
    r = subprocess.run(
        [*cmd, "apply", "ch09", "--nodes-only"], capture_output=True, text=True, timeout=1800
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "slave1: image archives: 1 loaded, 1 present" in r.stdout
    assert "slave2: image archives: 0 loaded, 2 present" in r.stdout
    # FROM busybox: the lab's images build from the loaded archive, with no registry.
    assert "slave1: built k8s-lab/count:v1" in r.stdout


KUBEADM_CONFIG_DEPLOY = """
from k8slab.deploy.control_plane import kubeadm_config
from k8slab.deploy.kube_packages import kube_packages

kube_packages()
kubeadm_config(name="kubeadm configuration")
"""


def test_kubernetes_version_is_the_installed_kubeadms(source_hosts, made, converged):
    # kubeadm is gone when the run is planned, and installed by the same run: the version is
    # read when the config is written.
    source_hosts.ssh("master", "apt-mark unhold kubeadm >/dev/null; dpkg --purge kubeadm")
    source_hosts.ssh("master", "rm -f /etc/k8s-lab/kubeadm-config.yaml")
    deploy = made["tmp"] / "kubeadm_config.py"
    deploy.write_text(KUBEADM_CONFIG_DEPLOY)
    path = config(source_hosts, made)
    r = pyinfra(source_hosts, path, "--limit", "master", str(deploy))
    assert r.returncode == 0, r.output[-5000:]
    text = source_hosts.ssh("master", "cat /etc/k8s-lab/kubeadm-config.yaml")[1]
    docs = {d["kind"]: d for d in yaml.safe_load_all(text)}
    assert docs["ClusterConfiguration"]["kubernetesVersion"] == "v1.35.2"
    assert docs["KubeletConfiguration"]["failCgroupV1"] is False  # allow_cgroup_v1
    again = pyinfra(source_hosts, path, "--limit", "master", str(deploy))
    assert again.returncode == 0 and changes(again.output)["master"] == 0, again.output[-3000:]
