"""Phase 3b alone, the topology's image_archives:
`pyinfra -y inventory/lab.py deploys/images.py`."""

from k8slab.deploy.images import image_archives

image_archives()
