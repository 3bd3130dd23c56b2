"""Phase 4, kubeadm, kubelet and kubectl from pkgs.k8s.io (one repository per minor), or
from the topology's `kube_apt_repo` (a mirror or a local folder), held.

https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/#installing-kubeadm-kubelet-and-kubectl
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, deploy, operation
from pyinfra.operations import files, server, systemd

from k8slab.deploy.common import AptRepo, ensure_packages, lab, upload
from k8slab.facts import HeldPackages, KubeadmPauseImage

PACKAGES = ["kubelet", "kubeadm", "kubectl"]


@deploy("Kubernetes packages")
def kube_packages():
    values = lab()
    minor = values["kube_version"]
    repo = AptRepo(f"Kubernetes v{minor} apt repository", "kubernetes", values["kube_apt"], "/")
    ensure_packages(f"Install kubelet, kubeadm and kubectl v{minor}", PACKAGES, source=repo)
    held = host.get_fact(HeldPackages)
    unheld = [p for p in PACKAGES if p not in held]
    if unheld:
        server.shell(
            name="Hold them: an apt upgrade must never move the cluster's version",
            commands=[f"apt-mark hold {' '.join(unheld)}"],
        )
    else:
        host.noop("kubelet, kubeadm and kubectl are held")
    kubelet_env = upload(
        "kubelet uses the node IP from the topology",
        "templates/kubernetes/kubelet.default.j2",
        "/etc/default/kubelet",
    )
    sandbox = cri_dockerd_sandbox(
        name="cri-dockerd's pod sandboxes use the pause image kubeadm pulls"
    )
    systemd.service(
        name="Restart cri-dockerd for its sandbox image",
        service="cri-docker.service",
        restarted=True,
        _if=sandbox.did_change,
    )
    # Not `running`: until kubeadm init or join writes its config, kubelet restarts in a loop.
    systemd.service(name="kubelet starts at boot", service="kubelet", running=None, enabled=True)
    systemd.service(
        name="Restart a configured kubelet for a changed node IP",
        service="kubelet",
        restarted=True,
        _if=kubelet_env.did_change,
    )


@operation()
def cri_dockerd_sandbox():
    """/etc/default/cri-dockerd naming kubeadm's pause image, read when this runs: on a first
    deploy kubeadm is installed earlier in the same run."""
    image = host.get_fact(KubeadmPauseImage, repository=lab()["kube_image_repository"])
    if image is None and host.state.is_executing:
        raise OperationError("`kubeadm config images list` names no pause image")
    text = f"SANDBOX_ARGS=--pod-infra-container-image={image or '(kubeadm pause image)'}\n"
    yield from files.put._inner(src=StringIO(text), dest="/etc/default/cri-dockerd", mode="644")
