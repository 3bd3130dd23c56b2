"""The whole cluster, phase by phase: `pyinfra -y inventory/lab.py deploys/cluster.py`.

First `labctl doctor`'s checks on every host: a failure stops the run before anything
changes (`--data skip_checks=ID,...` skips checks you accept). Safe to re-run: a converged
cluster reports no changes. Add a worker to the topology file
and re-run (optionally `--limit NEWHOST`): only it is prepared and joined, and the run
ends when the cluster, the new node included, is ready.
"""

from pyinfra import host

from k8slab.deploy.common import barrier
from k8slab.deploy.control_plane import control_plane
from k8slab.deploy.cri_dockerd import cri_dockerd
from k8slab.deploy.docker import docker_engine
from k8slab.deploy.hostprep import host_prep
from k8slab.deploy.images import image_archives
from k8slab.deploy.join import join_worker
from k8slab.deploy.kube_packages import kube_packages
from k8slab.deploy.preflight import preflight
from k8slab.deploy.ready import cluster_ready, waits_here

preflight()
host_prep()
docker_engine()
cri_dockerd()
image_archives()
kube_packages()
if "control_plane" in host.groups:
    control_plane()
barrier("The control plane is up: workers may join")
if "workers" in host.groups:
    join_worker()
barrier("Workers have joined: wait for the cluster")
if waits_here():
    cluster_ready()
