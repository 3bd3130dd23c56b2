"""Phase 7 alone: `pyinfra -y inventory/lab.py deploys/ready.py` waits for a Ready cluster."""

from pyinfra import host

from k8slab.deploy.ready import cluster_ready

if "control_plane" in host.groups:
    cluster_ready()
