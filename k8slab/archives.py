"""The topology's image_archives (`docker save` output): loaded into Docker on every node, so
no node pulls, by the deploy (k8slab.deploy.images, before kubeadm init/join) and by
`labctl apply` (before it builds and applies). An archive whose tags are all present on a
host is skipped; the tags come from its manifest.json, read on this machine
(k8slab.topology.ImageArchive).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

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


def load_command(remote: str) -> str:
    """Load an uploaded archive, then remove the upload (Docker keeps the image)."""
    return f"docker load -q -i {remote} && rm -f {remote}"


def remote_name(archive: dict) -> str:
    return PurePosixPath(archive["path"]).name
