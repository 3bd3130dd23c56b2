"""Phase 2 alone: `pyinfra inventory/lab.py deploys/docker.py`."""

from k8slab.deploy.docker import docker_engine

docker_engine()
