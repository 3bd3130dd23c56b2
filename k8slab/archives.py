"""The topology's image_archives (`docker save` output): loaded into Docker by the deploy
(k8slab.deploy.images, before kubeadm init/join) and by `labctl apply` (before it builds and
applies), so no node pulls. An archive whose tags are all present on a host is skipped; the
tags come from its manifest.json, read on this machine (k8slab.topology.ImageArchive).

Each archive goes only to the nodes that run its images (`nodes()`), decided from its tags:
the control plane's static pods (kube-apiserver, kube-controller-manager, kube-scheduler,
etcd, from kube_image_repository) on the control plane only; the labs' images (those their
pods run, and the bases `labctl apply` builds on) on workers only, since kubeadm taints the
control plane NoSchedule; everything else, and any archive mixing the two, on every node::

    >>> nodes(["registry.k8s.io/etcd:3.6.8-0"], "registry.k8s.io", {"nginx:latest"})
    'control-plane'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k8slab.topology import Host, Topology

# The Go template is in a variable so that callers need not escape its braces.
TAGS_COMMAND = "docker images --format '{{.Repository}}:{{.Tag}}'"


def familiar(tag: str) -> str:
    """The name `docker images` shows: Docker Hub's docker.io/ and library/ prefixes dropped."""
    for prefix in ("docker.io/", "index.docker.io/", "library/"):
        if tag.startswith(prefix):
            tag = tag[len(prefix) :]
    return tag


def to_load(archives: Iterable[dict], present: Iterable[str]) -> list[dict]:
    """The archives (as in cluster_vars()["image_archives"]) with a tag the host lacks."""
    have = {familiar(t) for t in present}
    return [a for a in archives if not all(familiar(t) in have for t in a["tags"])]


class LoadError(RuntimeError):
    """docker load failed on a host; one line with Docker's reason."""


def sudo_prefix(user: str | None, password: str | None) -> str | None:
    """How to run `docker load` as root with the archive on stdin, or None when a sudo
    password is needed: sudo -S would read it from that same stdin."""
    if user == "root":
        return ""
    return None if password else "sudo -n "


def stream_load(client, path: str, sudo: str) -> None:
    """`docker load` on the host of `client` (a connected paramiko SSHClient) reading the
    archive straight from this machine: no copy on the host's disk, and Docker loads while the
    bytes arrive (measured here: about twice SFTP's rate, 82 against 44 MB/s)."""
    channel = client.get_transport().open_session()
    try:
        channel.exec_command(f"{sudo}docker load -q")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    channel.sendall(chunk)
            channel.shutdown_write()
        except OSError:  # the far end stopped reading: its exit status and stderr say why
            pass
        status = channel.recv_exit_status()
        said = channel.makefile_stderr().read().decode(errors="replace").strip().splitlines()
    finally:
        channel.close()
    if status != 0:
        reason = said[-1] if said else f"exit status {status}"
        raise LoadError(f"docker load of {PurePosixPath(path).name} failed: {reason}")


def load_command(remote: str) -> str:
    """Load an uploaded archive, then remove the upload (Docker keeps the image)."""
    return f"docker load -q -i {remote} && rm -f {remote}"


def remote_name(archive: dict) -> str:
    return PurePosixPath(archive["path"]).name


CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
EVERY_NODE, CONTROL_PLANE, WORKERS = "every node", "control-plane", "workers"


def normal(tag: str) -> str:
    """familiar() with Docker's implicit :latest made explicit (`nginx` is `nginx:latest`)."""
    tag = familiar(tag.split("@")[0])
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def repository(tag: str) -> str:
    """The tag without its version: registry.k8s.io/etcd:3.6.8-0 -> registry.k8s.io/etcd."""
    return normal(tag).rsplit(":", 1)[0]


def nodes(tags: Iterable[str], image_repository: str, worker_images: set[str]) -> str:
    """Where an archive with these tags goes: CONTROL_PLANE, WORKERS or EVERY_NODE.
    `worker_images` are normal() tags that only the labs' pods and builds use."""
    tags = list(tags)
    control = {repository(f"{image_repository}/{name}") for name in CONTROL_PLANE_IMAGES}
    if tags and all(repository(t) in control for t in tags):
        return CONTROL_PLANE
    if tags and all(normal(t) in worker_images for t in tags):
        return WORKERS
    return EVERY_NODE


_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def lab_images(topo: Topology) -> set[str]:
    """normal() tags of every lab's images as the topology sets them: those its pods run
    (build: false) and the bases of those labctl builds (their Dockerfile's FROM)."""
    from k8slab.labs import lab_ids, load_lab

    found: set[str] = set()
    for lab_id in lab_ids():
        lab = load_lab(lab_id, topo)
        for image in lab.images.values():
            if not image.build:
                found.add(normal(image.tag))
                continue
            dockerfile = Path(image.context) / "Dockerfile"
            text = dockerfile.read_text() if dockerfile.is_file() else ""
            found.update(normal(base) for base in _FROM.findall(text) if "$" not in base)
    return found


def placed(topo: Topology) -> list[dict]:
    """Every archive (as in cluster_vars()["image_archives"]) with `nodes`: where it goes."""
    wanted = topo.cluster_vars()["image_archives"]
    if not wanted:
        return []
    workers = lab_images(topo)
    return [{**a, "nodes": nodes(a["tags"], topo.kube_image_repository, workers)} for a in wanted]


def for_role(archives: Iterable[dict], role: str) -> list[dict]:
    """The placed() archives a node of this topology role (control-plane, worker) loads."""
    mine = CONTROL_PLANE if role == "control-plane" else WORKERS
    return [a for a in archives if a["nodes"] in (EVERY_NODE, mine)]


def for_host(topo: Topology, host: Host) -> list[dict]:
    return for_role(placed(topo), host.role)
