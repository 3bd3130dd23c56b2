"""Phase 2, Docker Engine with the systemd cgroup driver (the driver kubelet uses).

https://docs.docker.com/engine/install/debian/ and /ubuntu/ (apt repository);
https://kubernetes.io/docs/setup/production-environment/container-runtimes/#docker
`docker_source: distro` takes the distribution's docker.io package instead.
`docker_source: docker` ran on the test bed only against a stand-in of download.docker.com
(tests/e2e/standins.py: Docker's key URL and dists/<codename>/stable layout, but its docker-ce
and docker-ce-cli are Debian's docker.io 20.10 repacked under Docker's names), never against
Docker's own repository or packages.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import systemd

from k8slab.deploy.common import AptRepo, deb_arch, ensure_packages, lab, upload

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
        repo = _docker_apt_repo()
        ensure_packages("Install Docker Engine from Docker's repository", DOCKER_CE, source=repo)
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


def _docker_apt_repo() -> AptRepo:
    """Docker's repository, or the topology's docker_apt_repo: a mirror keeps Docker's
    dists/<codename>/stable layout, a local folder is a flat repository."""
    meta = host.get_fact(LinuxDistribution)["release_meta"]
    return AptRepo(
        "Docker's apt repository",
        "docker",
        lab()["docker_apt"],
        f"{meta.get('VERSION_CODENAME', '')} stable",
        arch=deb_arch(),
        distro=meta.get("ID", "debian"),
    )
