"""Phase 4, kubeadm, kubelet and kubectl from pkgs.k8s.io (one repository per minor), or
from the topology's `kube_apt_repo` (a mirror or a local folder), held.

https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/#installing-kubeadm-kubelet-and-kubectl
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server, systemd

from k8slab.deploy.common import AptRepo, ensure_packages, lab, upload
from k8slab.facts import HeldPackages

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
    # Not `running`: until kubeadm init or join writes its config, kubelet restarts in a loop.
    systemd.service(name="kubelet starts at boot", service="kubelet", running=None, enabled=True)
    systemd.service(
        name="Restart a configured kubelet for a changed node IP",
        service="kubelet",
        restarted=True,
        _if=kubelet_env.did_change,
    )
