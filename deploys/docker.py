"""Phase 2 alone: `pyinfra -y inventory/lab.py deploys/docker.py`."""

from k8slab.deploy.docker import docker_engine

docker_engine()
