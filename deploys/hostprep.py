"""Phase 1 alone: `pyinfra -y inventory/lab.py deploys/hostprep.py`."""

from k8slab.deploy.hostprep import host_prep

host_prep()
