"""Lab machines on this Linux box: one systemd-nspawn container per topology host, booted with
systemd and sshd, on a private bridge with the topology's addresses, so the deploy and labctl
reach them exactly as they reach VMs (``labctl machines up``, then the usual commands).

The layers, each its own module:

* ``spec``: which machines a cluster has, its network, where its files live (from the
  topology file; recorded in the cluster's state folder so later commands need no topology);
* ``host``: what this computer must have, and what the machines need of it, probed;
* ``base``: the cached Debian 12 root every machine is copied from (debootstrap);
* ``network``: the bridge, the way out (masquerade and a resolver) or none (``--offline``:
  an apt proxy only), and exactly the host changes to undo on ``destroy``;
* ``nspawn``: the provider: roots, boots (``supervise``), power, SSH;
* ``manage``: ``up``/``status``/``start``/``stop``/``destroy`` over those.

The provider is the one place that knows about systemd-nspawn; a second one (Vagrant) would sit
beside it with the same verbs.
"""

from k8slab.errors import LabctlError


class MachinesError(LabctlError):
    """A request about lab machines that cannot be done as asked; one line with the fix."""
