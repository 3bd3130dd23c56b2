"""Phase 3b alone: `pyinfra inventory/lab.py deploys/images.py` (the topology's image_archives)."""

from k8slab.deploy.images import image_archives

image_archives()
