"""Phase 3, Mirantis cri-dockerd: the CRI shim between kubelet and Docker Engine.

https://mirantis.github.io/cri-dockerd/usage/install-manually/
The static release tarball (pinned version, optional sha256) works on every Debian and
Ubuntu release; the systemd units are this project's own templates. `cri_dockerd_url` may
name a mirror or a tarball on this machine, which is uploaded instead of downloaded.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from k8slab.deploy.common import deb_arch, download, lab, upload
from k8slab.facts import CriDockerdVersion

BIN = "/usr/local/bin/cri-dockerd"
CACHE = "/var/cache/k8s-lab"


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
    source, sha256 = lab()["cri_dockerd"], lab()["cri_dockerd_sha256"]
    if source["local"]:
        # Its cri_dockerd_sha256 was checked on this machine when the topology was read.
        files.put(name=f"Upload {source['local']}", src=source["local"], dest=tarball)
    else:
        download(
            f"Download cri-dockerd {version} ({arch})",
            source["url"].format(version=version, arch=arch),
            tarball,
            key="cri_dockerd_url",
            sha256=sha256 or "",
        )
    return server.shell(
        name=f"Install cri-dockerd {version} to {BIN}",
        commands=[
            f"tar -xzf {tarball} -C {CACHE} cri-dockerd/cri-dockerd",
            f"install -m 0755 {CACHE}/cri-dockerd/cri-dockerd {BIN}",
        ],
    )
