"""Phase 6, workers join with a token made on the control plane at that moment.

https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-join/
The token lives only in memory for this call: never written to disk, never printed (its
place in pyinfra's logs shows *MASKED*); it expires after 15 minutes anyway.
CI on a fresh machine runs the join only as a plan (the command is unit-tested); it ran for
real on the test bed through tests/e2e with a Kubernetes built from source, a fourth worker
added with --limit included.
"""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.facts.files import File
from pyinfra.operations import python

from k8slab.deploy.common import control_plane_host, failed

KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
_JOIN = re.compile(r"--token\s+(\S+)\s+--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})")


@deploy("Join workers")
def join_worker():
    if host.get_fact(File, path=KUBELET_CONF):
        host.noop("already joined (kubelet.conf exists)")
        return
    python.call(name="kubeadm join with a fresh token", function=_join)


def parse_join_command(output: str) -> tuple[str, str] | None:
    """(token, CA cert hash) from `kubeadm token create --print-join-command`."""
    found = _JOIN.search(output)
    return found.groups() if found else None


def join_command(values: dict, token: str, ca_hash: str) -> StringCommand:
    """`kubeadm join` for this worker; the token shows as *MASKED* wherever pyinfra logs it."""
    # allow_cgroup_v1: SystemVerification refuses cgroup v1 hosts (kubeadm init: its config).
    skip = ["--ignore-preflight-errors=SystemVerification"] if values["allow_cgroup_v1"] else []
    return StringCommand(
        "kubeadm",
        "join",
        f"{values['kube_api_address']}:6443",
        "--token",
        QuoteString(HiddenValue(token)),
        "--discovery-token-ca-cert-hash",
        ca_hash,
        "--cri-socket",
        values["kube_cri_socket"],
        "--node-name",
        values["node_name"],
        *skip,
    )


def _join(state, host) -> bool:
    values = host.data.lab
    control_plane = control_plane_host()
    ok, out = control_plane.run_shell_command(
        StringCommand(
            "kubeadm token create --ttl 15m --print-join-command",
            "--description",
            QuoteString(f"k8s-lab join of {values['node_name']}"),
        ),
        _sudo=True,
    )
    found = parse_join_command(out.stdout) if ok else None
    if not found:
        why = out.stderr.strip().splitlines()[-1:] or ["no join command in its output"]
        return failed(host, f"could not make a join token on {control_plane.name}: {why[0]}")
    token, ca_hash = found
    ok, out = host.run_shell_command(join_command(values, token, ca_hash), _sudo=True)
    if not ok:
        last = [line for line in out.stderr.splitlines() if line.strip()][-3:]
        return failed(host, "kubeadm join failed: " + " | ".join(last).replace(token, "*MASKED*"))
    return True
