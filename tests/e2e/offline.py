"""The offline folder the end-to-end run installs from, and the topology that points at it.

Layout (what `tests/e2e/README.md` documents; every path is optional but kube-apt):

    kube-apt/                         a flat, signed apt repository: kubelet, kubeadm, kubectl
    kube-apt.asc                      its signing key
    cri-dockerd-<version>.<arch>.tgz  cri-dockerd in the release tarball's layout
    images/*.tar                      `docker save` archives: control plane, pause, etcd,
                                      CoreDNS, Weave Net, and the images the labs use
    labs.yaml                         the topology's `labs:` overrides, e.g. the tags of
                                      those lab images when they are not the course's
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

DEFAULT = Path("/var/cache/k8s-lab-offline")
ENV = "K8SLAB_OFFLINE"


def folder() -> Path | None:
    """$K8SLAB_OFFLINE, else the default place, when it holds a kube-apt repository."""
    path = Path(os.environ.get(ENV) or DEFAULT)
    return path if (path / "kube-apt" / "Packages").is_file() else None


def kube_minor(offline: Path) -> str:
    """The minor of the kubeadm package in the repository (e.g. 1.36 for 1.36.2-1.1)."""
    text = (offline / "kube-apt" / "Packages").read_text()
    for block in text.split("\n\n"):
        if re.search(r"^Package: kubeadm$", block, re.M):
            version = re.search(r"^Version: (\d+\.\d+)\.", block, re.M)
            if version:
                return version.group(1)
    raise ValueError(f"{offline}/kube-apt/Packages has no kubeadm package")


def source_keys(offline: Path, cgroup_v1: bool) -> dict:
    """The topology keys that make the deploy install from `offline` only."""
    keys: dict = {
        "kube_version": kube_minor(offline),
        "kube_apt_repo": str(offline / "kube-apt"),
        "kube_apt_key": str(offline / "kube-apt.asc"),
        # The bed's hosts reach Debian's mirror only: Docker Engine is Debian's docker.io.
        "docker_source": "distro",
        # nspawn hosts cannot change nf_conntrack_max; a VM can.
        "kube_proxy_tune_conntrack": False,
        "allow_cgroup_v1": cgroup_v1,
    }
    tarballs = sorted(offline.glob("cri-dockerd-*.tgz"))
    if tarballs:
        found = re.match(r"cri-dockerd-(\d+\.\d+\.\d+)\.", tarballs[-1].name)
        keys["cri_dockerd_url"] = str(tarballs[-1])
        if found:
            keys["cri_dockerd_version"] = found.group(1)
    if (offline / "images").is_dir():
        keys["image_archives"] = str(offline / "images")
    if (offline / "labs.yaml").is_file():
        keys["labs"] = yaml.safe_load((offline / "labs.yaml").read_text()) or {}
    return keys
