"""Helpers the phases share: rendered uploads, apt sources, and installs that stay quiet
on re-runs."""

from __future__ import annotations

import hashlib
import logging
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, FileContents
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server

from k8slab.facts import DpkgInterrupted
from k8slab.render import render

logger = logging.getLogger("k8slab")
KEYRING_DIR = "/etc/apt/keyrings"
STATE_DIR = "/etc/k8s-lab"
CACHE_DIR = "/var/cache/k8s-lab"


def lab() -> dict[str, Any]:
    """This host's values: the topology's cluster values plus node_name, node_ip, node_role."""
    return host.data.lab


def upload(name: str, template: str, dest: str, mode: str = "644", **extra: Any):
    """Render a template of this repo for this host and put it at dest (no change if equal)."""
    text = render(template, {**lab(), **extra})
    return files.put(name=name, src=StringIO(text), dest=dest, mode=mode)


def ensure_packages(name: str, packages: list[str], source: AptRepo | None = None):
    """Install what is missing; `apt-get update` first only then, so a re-run stays a no-op.

    With `source`, that repository alone is updated first and must pass (its signature
    above all) before any package changes; see AptRepo.check."""
    if host.get_fact(DpkgInterrupted):
        server.shell(
            name="Finish the install an earlier run left half-done",
            commands=["dpkg --configure -a"],
            _env={"DEBIAN_FRONTEND": "noninteractive"},
        )
    installed = host.get_fact(DebPackages)
    missing = [p for p in packages if p not in installed]
    if source:
        source.check(force=bool(missing))
    return apt.packages(name=name, packages=packages, update=bool(missing))


@dataclass(frozen=True)
class AptPlan:
    """Where an apt source of the topology (k8slab.topology.AptSource) goes on a host."""

    keyring: str
    url: str
    suite: str
    upload_dir: str | None

    @classmethod
    def of(cls, source: dict, slug: str, suite: str, **fmt: str) -> AptPlan:
        """`suite` is the URL repository's ("/" for a flat one); a local directory is always a
        flat repository, uploaded to /var/cache/k8s-lab/apt/<slug>/ and read as file:."""
        name = slug
        if source["key"]["url"]:
            # files.download keeps a file that exists: a changed key URL needs a new name.
            name += (
                "-" + hashlib.sha256(source["key"]["url"].format(**fmt).encode()).hexdigest()[:8]
            )
        keyring = f"{KEYRING_DIR}/{name}.{'asc' if source['armored'] else 'gpg'}"
        if source["repo"]["local"]:
            upload_dir = f"{CACHE_DIR}/apt/{slug}/"
            return cls(keyring, f"file:{upload_dir}", "/", upload_dir)
        return cls(keyring, source["repo"]["url"].format(**fmt), suite, None)


class AptRepo:
    """An apt source installed the one way for every origin: its key in /etc/apt/keyrings, a
    list file `signed-by` that key, and (for a local folder) the repository uploaded first."""

    def __init__(self, label: str, slug: str, source: dict, suite: str, arch: str = "", **fmt):
        self.label = label
        self.plan = AptPlan.of(source, slug, suite, **fmt)
        self.list_path = f"/etc/apt/sources.list.d/{slug}.list"
        self.stamp = f"{STATE_DIR}/apt-verified-{slug}"
        files.directory(name="apt keyring directory", path=KEYRING_DIR, mode="755")
        key = source["key"]
        if key["local"]:
            key_op = files.put(
                name=f"{label}: signing key", src=key["local"], dest=self.plan.keyring, mode="644"
            )
        else:
            key_op = files.download(
                name=f"{label}: signing key",
                src=key["url"].format(**fmt),
                dest=self.plan.keyring,
                mode="644",
            )
        self.ops = [key_op]
        if self.plan.upload_dir:
            files.directory(name="Download cache", path=f"{CACHE_DIR}/apt", mode="755")
            self._upload(source["repo"]["local"], f"{CACHE_DIR}/apt/{slug}.uploaded")
        self.ops.append(
            upload(
                f"{label}: apt source, signed-by its key",
                "templates/apt-source.list.j2",
                self.list_path,
                apt_comment=label,
                apt_arch=arch,
                apt_keyring=self.plan.keyring,
                apt_url=self.plan.url,
                apt_suite=self.plan.suite,
            )
        )

    def _upload(self, local: str, marker: str):
        """files.sync uploads only what differs, but finds that out by hashing every file on
        both ends (seconds for a few debs on each re-run); the marker holds a digest of the
        folder's listing as last uploaded, so an unchanged folder costs one small read."""
        digest = tree_digest(local)
        if host.get_fact(FileContents, path=marker) == [digest]:
            host.noop(f"{self.label}: {self.plan.upload_dir} holds the local repository")
            return
        self.ops.append(
            files.sync(
                name=f"{self.label}: upload the local repository to {self.plan.upload_dir}",
                src=local,
                dest=self.plan.upload_dir,
                delete=True,
                mode="644",
                dir_mode="755",
            )
        )
        # Written after the sync: a run cut off mid-upload leaves the old marker, so the next
        # run syncs again.
        files.put(
            name=f"{self.label}: remember what was uploaded",
            src=StringIO(digest + "\n"),
            dest=marker,
            mode="644",
        )

    def check(self, force: bool):
        """`apt-get update` of this source alone, when it changed, packages are missing, or it
        never passed here: a wrong key, an unreachable URL or a broken repository stops the
        host with apt's own reason on one line, before any package changes."""
        need = force or not host.get_fact(File, path=self.stamp)
        script = APT_CHECK.format(
            stamp=shlex.quote(self.stamp),
            sources=shlex.quote(self.list_path),
            state=STATE_DIR,
            what=shlex.quote(f"k8s-lab: {self.label} ({self.plan.url}): apt-get update fails:"),
        )
        return server.shell(
            name=f"{self.label}: apt-get update of it alone passes (signature, reachability)",
            commands=[script],
            _if=lambda: need or any(op.did_change() for op in self.ops),
        )


# Signature problems first (apt prints them after a vaguer "Err:" line), then any error; the
# reason of an "Err:" line is on the line after it. The stamp says it passed with this source.
APT_CHECK = """rm -f {stamp}
out=$(apt-get update -q -o Dir::Etc::SourceList={sources} -o Dir::Etc::SourceParts=- \
-o APT::Get::List-Cleanup=0 2>&1); rc=$?
why=$(printf '%s\\n' "$out" | grep -E 'NO_PUBKEY|EXPKEYSIG|BADSIG|is not signed' | head -n 1)
[ -n "$why" ] || why=$(printf '%s\\n' "$out" | grep -A1 -E '^(Err|E):' | head -n 2 | tr '\\n' ' ')
if [ "$rc" -ne 0 ] || [ -n "$why" ]; then
  echo {what} $(printf '%s' "${{why:-exit $rc}}") >&2; exit 1
fi
mkdir -p {state} && touch {stamp}"""


def tree_digest(folder: str) -> str:
    """sha256 of every file's path, size and mtime under `folder`: what `cp -a`, a rebuilt
    repository or an edited file changes, without reading the files."""
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def control_plane_host():
    """The control plane's pyinfra Host, connected: a worker's operation runs commands there
    (join tokens, readiness), even in a run whose --limit leaves it out."""
    control_plane = inventory.get_group("control_plane")[0]
    if not control_plane.connected:
        control_plane.connect(raise_exceptions=True)
    return control_plane


def failed(on_host, message: str) -> bool:
    """Log one red line for `on_host` and tell pyinfra its python.call operation failed."""
    on_host.log_styled(message, fg="red", log_func=logger.error)
    return False


def deb_arch() -> str:
    return host.get_fact(Command, command="dpkg --print-architecture").strip()


def barrier(name: str):
    """An operation every host runs at the same point, so that pyinfra orders what comes after
    it on any host after what came before it on every host (e.g. join after init): pyinfra
    only orders operations of different hosts through the operations they share."""
    return files.directory(name=name, path=STATE_DIR, mode="755")
