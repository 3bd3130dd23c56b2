"""Phase 5, the control plane: kubeadm init, kubeconfig for the SSH user, Weave Net (its data
path, fastdp or sleeve, decided by k8slab.weave from openvswitch on every node).

https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/
https://github.com/rajch/weave (Weave Net fork; manifests/weave-net.yaml.j2 is our own)

CI drives it only as a `--dry` plan; it ran for real on the test bed only through tests/e2e
(an offline folder with a Kubernetes built from source), the reconfiguration of a running
API server once by hand on it.
"""

from __future__ import annotations

import getpass
from io import StringIO

import yaml
from pyinfra import host, inventory
from pyinfra.api import OperationError, deploy, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.server import Home
from pyinfra.operations import files, server

from k8slab import weave
from k8slab.deploy.common import STATE_DIR, lab, upload
from k8slab.facts import KernelModuleState, KubeadmVersion, KubeObjectExists
from k8slab.render import render
from k8slab.topology import DATA_ROOT

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBEADM_CONFIG = f"{STATE_DIR}/kubeadm-config.yaml"
WEAVE_MANIFEST = f"{STATE_DIR}/weave-net.yaml"
READY_SCRIPT = "/usr/local/lib/k8s-lab/cluster-ready.sh"
# Crash loops whose cause is known: the readiness check gives up on them early, with the fix.
CRASH_LOOPS = "templates/kubernetes/crash-loops.yaml"
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"


@deploy("Control plane")
def control_plane():
    config = kubeadm_config(
        name="kubeadm configuration (v1beta4), for the installed kubeadm's version"
    )
    if host.get_fact(File, path=ADMIN_CONF):
        host.noop("kubeadm init has run (admin.conf exists)")
        # kubeadm reads its config only at init: a changed config (a k8s-lab update, such as
        # the 1.36 API server flag) reaches the running API server only through the static
        # pod manifest kubeadm writes from it.
        server.shell(
            name="kube-apiserver follows the changed kubeadm configuration",
            commands=[APISERVER_FROM_CONFIG],
            _if=config.did_change,
        )
    else:
        # --skip-token-print: join tokens are made per join, never printed or kept.
        server.shell(
            name="kubeadm init",
            commands=[f"kubeadm init --config {KUBEADM_CONFIG} --skip-token-print"],
        )
    _kubeconfig_for_ssh_user()
    upload(
        "Cluster readiness check",
        "templates/kubernetes/cluster-ready.sh.j2",
        READY_SCRIPT,
        mode="755",
        crash_loops=known_crash_loops(),
    )
    _weave_net()


def known_crash_loops() -> list[dict[str, str]]:
    """The entries of CRASH_LOOPS (`match`, `fix`, `see`), as cluster-ready.sh.j2 takes them.

    >>> [c["id"] for c in known_crash_loops()]
    ['weave-fastdp-bridge']
    """
    entries = yaml.safe_load((DATA_ROOT / CRASH_LOOPS).read_text())
    for c in entries:
        missing = {"id", "match", "fix", "see"} - set(c)
        if missing or "\n" in c["match"] + c["fix"] + c["see"]:
            raise ValueError(f"{CRASH_LOOPS}: {c.get('id')}: needs one-line id, match, fix, see")
    return entries


# Rewrite the manifest; when it changed, wait for kubelet to start the new API server (a new
# process), for it to answer, and for the control plane's pods to be Ready again, so that
# the phases and checks after this find it up.
APISERVER_FROM_CONFIG = f"""m=/etc/kubernetes/manifests/kube-apiserver.yaml
before=$(sha256sum < $m); old=$(pgrep -xo kube-apiserver)
kubeadm init phase control-plane apiserver --config {KUBEADM_CONFIG} || exit 1
[ "$(sha256sum < $m)" = "$before" ] && exit 0
for i in $(seq 90); do
  new=$(pgrep -xo kube-apiserver)
  if [ -n "$new" ] && [ "$new" != "$old" ] && {KUBECTL} get --raw /readyz >/dev/null 2>&1; then
    # The scheduler and controller-manager lose their lease meanwhile and restart too.
    exec {KUBECTL} -n kube-system wait pod -l tier=control-plane \\
      --for=condition=Ready --timeout=180s >/dev/null
  fi
  sleep 2
done
echo 'kube-apiserver did not come back within 3 minutes: see' \\
  '"docker ps -a | grep kube-apiserver" and "journalctl -u kubelet" on master' >&2
exit 1"""


@operation()
def kubeadm_config():
    """The kubeadm config with kubernetesVersion = the installed kubeadm's own version, read
    when this runs: on a first deploy, kubeadm is installed by an earlier phase of the run."""
    version = host.get_fact(KubeadmVersion)
    if version is None and host.state.is_executing:
        raise OperationError("kubeadm is not installed (run deploys/kube_packages.py first)")
    text = render(
        "templates/kubernetes/kubeadm-config.v1beta4.yaml.j2",
        {**lab(), "kubernetes_version": version or "(kubeadm version -o short)"},
    )
    yield from files.put._inner(src=StringIO(text), dest=KUBEADM_CONFIG, mode="600")


def _kubeconfig_for_ssh_user():
    user = host.data.get("ssh_user") or getpass.getuser()
    home = host.get_fact(Home, user=user)
    dest = f"{home}/.kube/config"
    admin = host.get_fact(Sha256File, path=ADMIN_CONF)
    if admin is None or admin != host.get_fact(Sha256File, path=dest):
        server.shell(
            name=f"kubectl for {user}: copy admin.conf to {dest}",
            commands=[f'install -D -m 0600 -o {user} -g "$(id -gn {user})" {ADMIN_CONF} {dest}'],
        )
    # The admin credentials: readable by that user only, even if someone loosened them.
    files.file(name=f"{dest} is private to {user}", path=dest, user=user, mode="600")


def _weave_net():
    setting = lab()["weave_fastdp"]
    states = weave_module_states() if setting == "auto" else {}
    manifest = upload(
        f"Weave Net {lab()['weave_version']} manifest, {weave.why(setting, states)}",
        "manifests/weave-net.yaml.j2",
        WEAVE_MANIFEST,
        weave_datapath=weave.datapath(setting, states),
    )
    applied = host.get_fact(
        KubeObjectExists, kind="daemonset", object_name="weave-net", namespace="kube-system"
    )
    if manifest.changed or not applied:
        server.shell(name="Apply Weave Net", commands=[f"{KUBECTL} apply -f {WEAVE_MANIFEST}"])
    else:
        host.noop("Weave Net is applied and unchanged")


def weave_module_states() -> dict[str, str]:
    """openvswitch on every node of the topology, read when the manifest is rendered (before
    any operation of the run has executed): the DaemonSet's env is the same on every node.
    Nodes outside a --limit are connected for it; a node that cannot be read counts as
    missing (sleeve works everywhere)."""
    nodes = [*inventory.get_group("control_plane"), *inventory.get_group("workers", [])]
    return {
        node.name: node.get_fact(KernelModuleState, module=weave.MODULE) or "missing"
        for node in nodes
    }
