"""Phase 6 alone (workers only): `pyinfra -y inventory/lab.py deploys/join.py`."""

from pyinfra import host

from k8slab.deploy.join import join_worker

if "workers" in host.groups:
    join_worker()
