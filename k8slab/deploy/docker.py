"""Phase 2, Docker Engine with the systemd cgroup driver (the driver kubelet uses).

https://docs.docker.com/engine/install/debian/ and /ubuntu/ (apt repository);
https://kubernetes.io/docs/setup/production-environment/container-runtimes/#docker
`docker_source: distro` takes the distribution's docker.io package instead.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import systemd

from k8slab.deploy.common import (
    KEYRING_DIR,
    apt_signing_key,
    deb_arch,
    ensure_packages,
    lab,
    upload,
)

DOCKER_CE = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin"]
DISTRO = ["docker.io"]


@deploy("Docker Engine")
def docker_engine():
    # daemon.json first, so that the engine the package starts uses the systemd driver at once.
    config = upload(
        "Docker uses the systemd cgroup driver",
        "templates/docker/daemon.json.j2",
        "/etc/docker/daemon.json",
    )
    if lab()["docker_source"] == "docker":
        _docker_apt_repo()
        ensure_packages("Install Docker Engine from Docker's repository", DOCKER_CE)
    else:
        ensure_packages("Install Docker Engine from the distribution (docker.io)", DISTRO)
    systemd.service(
        name="Docker is enabled and running",
        service="docker",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Restart Docker for a changed daemon.json",
        service="docker",
        restarted=True,
        _if=config.did_change,
    )


def _docker_apt_repo():
    meta = host.get_fact(LinuxDistribution)["release_meta"]
    distro = meta.get("ID", "debian")
    repo_url = f"https://download.docker.com/linux/{distro}"
    keyring = f"{KEYRING_DIR}/docker.asc"
    apt_signing_key("Docker's apt signing key", f"{repo_url}/gpg", keyring)
    upload(
        "Docker's apt repository, signed-by its key",
        "templates/docker/docker.list.j2",
        "/etc/apt/sources.list.d/docker.list",
        deb_arch=deb_arch(),
        docker_keyring=keyring,
        docker_repo_url=repo_url,
        distro_codename=meta.get("VERSION_CODENAME", ""),
    )
