"""Phase 1 alone: `pyinfra inventory/lab.py deploys/hostprep.py`."""

from k8slab.deploy.hostprep import host_prep

host_prep()
