"""Phase 3, Mirantis cri-dockerd: the CRI shim between kubelet and Docker Engine.

https://mirantis.github.io/cri-dockerd/usage/install-manually/
The static release tarball (pinned version, optional sha256) works on every Debian and
Ubuntu release; the systemd units are this project's own templates.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from k8slab.deploy.common import deb_arch, lab, upload
from k8slab.facts import CriDockerdVersion

BIN = "/usr/local/bin/cri-dockerd"
CACHE = "/var/cache/k8s-lab"
RELEASES = "https://github.com/Mirantis/cri-dockerd/releases/download"


@deploy("cri-dockerd")
def cri_dockerd():
    version = lab()["cri_dockerd_version"]
    installed = _install_binary(version)
    socket = upload(
        "cri-dockerd socket unit",
        "templates/systemd/cri-docker.socket.j2",
        "/etc/systemd/system/cri-docker.socket",
    )
    service = upload(
        "cri-dockerd service unit",
        "templates/systemd/cri-docker.service.j2",
        "/etc/systemd/system/cri-docker.service",
        cri_dockerd_bin=BIN,
    )
    for unit in ("cri-docker.socket", "cri-docker.service"):
        systemd.service(
            name=f"{unit} is enabled and running",
            service=unit,
            running=True,
            enabled=True,
            daemon_reload=socket.changed or service.changed,
        )
    systemd.service(
        name="Restart cri-dockerd for a new binary or unit",
        service="cri-docker.service",
        restarted=True,
        _if=lambda: any(op.did_change() for op in (installed, service) if op),
    )


def _install_binary(version: str):
    if host.get_fact(CriDockerdVersion, path=BIN) == version:
        host.noop(f"cri-dockerd {version} is installed")
        return None
    arch = deb_arch()
    tarball = f"{CACHE}/cri-dockerd-{version}.{arch}.tgz"
    files.directory(name="Download cache", path=CACHE, mode="755")
    files.download(
        name=f"Download cri-dockerd {version} ({arch})",
        src=f"{RELEASES}/v{version}/cri-dockerd-{version}.{arch}.tgz",
        dest=tarball,
        sha256sum=lab()["cri_dockerd_sha256"],
    )
    return server.shell(
        name=f"Install cri-dockerd {version} to {BIN}",
        commands=[
            f"tar -xzf {tarball} -C {CACHE} cri-dockerd/cri-dockerd",
            f"install -m 0755 {CACHE}/cri-dockerd/cri-dockerd {BIN}",
        ],
    )
