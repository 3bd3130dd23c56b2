"""Phase 5 alone (control plane only): `pyinfra -y inventory/lab.py deploys/control_plane.py`."""

from pyinfra import host

from k8slab.deploy.control_plane import control_plane

if "control_plane" in host.groups:
    control_plane()
