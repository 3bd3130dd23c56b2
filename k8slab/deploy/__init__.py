"""The deploy phases, one module each, in the order of the kubeadm install guide.

Each phase is a pyinfra `@deploy` function; deploys/<phase>.py runs one alone and
deploys/cluster.py runs them all. The values come from host data `lab` (inventory/lab.py).
"""
