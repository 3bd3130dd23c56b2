"""k8s-lab: a kubeadm cluster on three VMs (Docker, cri-dockerd, Weave Net) and chapter-09 labs."""

__version__ = "0.1.0"
