"""Phase 4 alone: `pyinfra -y inventory/lab.py deploys/kube_packages.py`."""

from k8slab.deploy.kube_packages import kube_packages

kube_packages()
