"""Phase 1, host preparation: what kubeadm's "Before you begin" asks of every node.

https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/
https://kubernetes.io/docs/setup/production-environment/container-runtimes/#prerequisite-ipv4-forwarding-optional
"""

from __future__ import annotations

import logging

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, server

from k8slab.deploy.common import ensure_packages, lab, upload
from k8slab.facts import ActiveSwap, MissingKernelModules
from k8slab.render import render


def _not_the_beta_notice(record: logging.LogRecord) -> bool:
    # pyinfra 3 logs "The `files.block` operation is currently in beta!" once per host and
    # run; a learner reads it as a fault of the deploy. Only this notice is dropped.
    return "currently in beta" not in record.getMessage()


logging.getLogger("pyinfra").addFilter(_not_the_beta_notice)

MODULES = ["overlay", "br_netfilter"]
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "net.ipv4.ip_forward": 1,
}
# conntrack, socat: kubeadm preflight and `kubectl port-forward` on cri-dockerd nodes;
# net-tools: the course's `netstat -antp | grep weave`.
PACKAGES = ["ca-certificates", "curl", "iptables", "conntrack", "socat", "ethtool", "net-tools"]


@deploy("Host preparation")
def host_prep():
    values = lab()
    server.hostname(name="Set the hostname from the topology", hostname=values["node_name"])
    files.block(
        name="List every node in /etc/hosts",
        path="/etc/hosts",
        content=render("templates/hosts.block.j2", values).rstrip("\n"),
        marker="# {mark} k8s-lab nodes",
    )
    _swap_off()
    _kernel_modules()
    _sysctls()
    ensure_packages("Install the tools kubeadm and the labs use", PACKAGES)


def _swap_off():
    if host.get_fact(ActiveSwap):
        server.shell(name="Turn swap off now (kubelet)", commands=["swapoff -a"])
    else:
        host.noop("swap is off")
    files.replace(
        name="Keep swap off after reboot: comment out swap in /etc/fstab",
        path="/etc/fstab",
        text=r"^([^#].*[[:space:]]swap[[:space:]].*)$",
        replace=r"# \1  # swap off for kubelet (k8s-lab)",
        extended_regex=True,
    )


def _kernel_modules():
    upload(
        "Load overlay and br_netfilter at boot",
        "templates/modules-load.k8s-lab.conf.j2",
        "/etc/modules-load.d/k8s-lab.conf",
    )
    missing = host.get_fact(MissingKernelModules, modules=MODULES)
    if missing:
        server.shell(
            name="Load overlay and br_netfilter now", commands=[f"modprobe -a {' '.join(missing)}"]
        )
    else:
        host.noop("overlay and br_netfilter are loaded")


def _sysctls():
    # After the modules: the net.bridge.* keys exist only once br_netfilter is loaded.
    upload(
        "Keep bridged traffic and forwarding sysctls at boot",
        "templates/sysctl.k8s-lab.conf.j2",
        "/etc/sysctl.d/90-k8s-lab.conf",
        sysctls=SYSCTLS,
    )
    for key, value in SYSCTLS.items():
        server.sysctl(name=f"Set {key} = {value} now", key=key, value=value)
