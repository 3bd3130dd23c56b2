"""pyinfra inventory built from the topology file (inventory/lab.yaml, or $LAB_CONFIG).

    pyinfra -y inventory/lab.py deploys/cluster.py

Groups: `control_plane` (one host) and `workers`. Each host carries the values its
templates are rendered with as host data `lab`, so deploys never read the file themselves.

What pyinfra would report as a traceback (a file that is not UTF-8, a key file it cannot
read) is checked here first and said in one line. $LAB_SSH_PASSWORD and $LAB_SUDO_PASSWORD,
which labctl reads, reach pyinfra's connection too (it would otherwise prompt per host):
tested on the host data pyinfra reads (tests/test_first_hour.py), never with a real password
login, which no test host here accepts.
"""

import os
import sys

from k8slab.errors import LabctlError
from k8slab.ssh import PASSWORD_ENV, SUDO_PASSWORD_ENV, check_keys
from k8slab.topology import load, which_note

if which_note():
    print(f"k8s-lab: {which_note()}", file=sys.stderr)
try:
    _topo = load()
    check_keys(_topo.hosts)
    # host_vars reads the labs too (where each image archive goes): a bad override is a line.
    _vars = {h.name: _topo.host_vars(h) for h in _topo.hosts}
except LabctlError as e:
    # pyinfra would print a traceback for an exception raised here; one line is enough.
    sys.exit("\n".join(f"k8s-lab: {line}" for line in str(e).splitlines()))


def _entry(h):
    data = {
        "ssh_hostname": h.ssh_host,
        "ssh_port": h.ssh_port,
        "_sudo": True,
        "lab": _vars[h.name],
    }
    if h.ssh_user:
        data["ssh_user"] = h.ssh_user
    if h.ssh_key:
        data["ssh_key"] = h.ssh_key
    if os.environ.get("LAB_KNOWN_HOSTS"):
        # The same known_hosts file labctl uses; new hosts are accepted, changed keys refused.
        data["ssh_known_hosts_file"] = os.environ["LAB_KNOWN_HOSTS"]
    if os.environ.get(PASSWORD_ENV):
        data["ssh_password"] = os.environ[PASSWORD_ENV]
    if os.environ.get(SUDO_PASSWORD_ENV):
        data["_sudo_password"] = os.environ[SUDO_PASSWORD_ENV]
    return h.name, data


control_plane = [_entry(_topo.control_plane)]
workers = [_entry(h) for h in _topo.workers]
