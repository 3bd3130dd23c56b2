"""Helpers the phases share: rendered uploads, and installs that stay quiet on re-runs."""

from __future__ import annotations

from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server

from k8slab.facts import DpkgInterrupted
from k8slab.render import render

KEYRING_DIR = "/etc/apt/keyrings"
STATE_DIR = "/etc/k8s-lab"


def lab() -> dict[str, Any]:
    """This host's values: the topology's cluster values plus node_name, node_ip, node_role."""
    return host.data.lab


def upload(name: str, template: str, dest: str, mode: str = "644", **extra: Any):
    """Render a template of this repo for this host and put it at dest (no change if equal)."""
    text = render(template, {**lab(), **extra})
    return files.put(name=name, src=StringIO(text), dest=dest, mode=mode)


def ensure_packages(name: str, packages: list[str]):
    """Install what is missing; `apt-get update` first only then, so a re-run stays a no-op."""
    if host.get_fact(DpkgInterrupted):
        server.shell(
            name="Finish the install an earlier run left half-done",
            commands=["dpkg --configure -a"],
            _env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    installed = host.get_fact(DebPackages)
    missing = [p for p in packages if p not in installed]
    return apt.packages(name=name, packages=packages, update=bool(missing))


def apt_signing_key(name: str, url: str, keyring: str):
    """An armored key in /etc/apt/keyrings, for a source that is `signed-by` it alone."""
    files.directory(name="apt keyring directory", path=KEYRING_DIR, mode="755")
    return files.download(name=name, src=url, dest=keyring, mode="644")


def deb_arch() -> str:
    return host.get_fact(Command, command="dpkg --print-architecture").strip()


def barrier(name: str):
    """An operation every host runs at the same point, so that pyinfra orders what comes after
    it on any host after what came before it on every host (e.g. join after init): pyinfra
    only orders operations of different hosts through the operations they share."""
    return files.directory(name=name, path=STATE_DIR, mode="755")
