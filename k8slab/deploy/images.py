"""Phase 3b, image archives: the topology's `image_archives` (`docker save` output) loaded
into Docker before kubeadm init or join, so that no node pulls an image. Each node gets only
the archives of the images its role runs (k8slab.archives: the control plane's static pods on
master, the labs' images on workers, the rest everywhere). Archives whose tags a host already
has are neither sent nor loaded. Each is streamed into `docker load` over the deploy's own SSH
connection (no copy on the node's disk); with a sudo password, which would take that stdin, it
is uploaded first, then loaded. Streaming ran for real on the test bed (tests/testbed and e2e);
the upload path only in the plan tests.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, deploy
from pyinfra.operations import files, python, server

from k8slab import archives
from k8slab.deploy.common import CACHE_DIR, lab
from k8slab.facts import DockerImageTags

UPLOAD_DIR = f"{CACHE_DIR}/images"


@deploy("Image archives")
def image_archives():
    if not lab()["image_archives"]:
        return
    wanted = lab()["node_image_archives"]
    skipped = len(lab()["image_archives"]) - len(wanted)
    if skipped:
        host.noop(f"{skipped} archive(s) of images a {lab()['node_role']} never runs: not sent")
    todo = archives.to_load(wanted, host.get_fact(DockerImageTags))
    if not todo:
        host.noop(f"the images of {len(wanted)} archive(s) are loaded")
        return
    sudo = archives.sudo_prefix(host.data.get("ssh_user"), host.data.get("_sudo_password"))
    if sudo is not None and hasattr(host.connector, "client"):  # SSH (@local has no client)
        for archive in todo:
            python.call(
                name=f"docker load {', '.join(archive['tags'])} (streamed from {archive['path']})",
                function=_stream,
                path=archive["path"],
                sudo=sudo,
            )
        return
    files.directory(name="Upload directory for image archives", path=UPLOAD_DIR, mode="700")
    for archive in todo:
        remote = f"{UPLOAD_DIR}/{archives.remote_name(archive)}"
        files.put(name=f"Upload {archive['path']}", src=archive["path"], dest=remote, mode="600")
        server.shell(
            name=f"docker load {', '.join(archive['tags'])}",
            commands=[archives.load_command(remote)],
        )


def _stream(path: str, sudo: str) -> None:
    try:
        archives.stream_load(host.connector.client, path, sudo)
    except archives.LoadError as e:
        raise OperationError(str(e)) from None
