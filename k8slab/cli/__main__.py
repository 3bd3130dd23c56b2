"""`python -m k8slab.cli` is labctl: what the Vagrantfile runs, with the Python it found."""

from k8slab.cli import main

main(prog_name="labctl")
