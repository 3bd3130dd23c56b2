"""Phase 3 alone: `pyinfra -y inventory/lab.py deploys/cri_dockerd.py`."""

from k8slab.deploy.cri_dockerd import cri_dockerd

cri_dockerd()
