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
from pyinfra.facts.files import File, FileContents, Sha256File
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


OFFLINE = 'docs/offline.md "Offline and mirror sources"'
# What to change when a download fails, by the topology key it came from (or defaulted to).
ADVICE = {
    "cri_dockerd_url": f"set cri_dockerd_url to a mirror URL or a local file ({OFFLINE})",
    "kube_apt_repo": (
        f"set kube_apt_repo (and kube_apt_key) to a mirror URL or a local folder ({OFFLINE})"
    ),
    "docker_apt_repo": (
        "set docker_apt_repo (and docker_apt_key) to a mirror URL or a local folder, or "
        f"docker_source: distro for the distribution's docker.io ({OFFLINE})"
    ),
}


class _Kept:
    """What `download` returns for a file that is there: an operation that changed nothing."""

    changed = False

    @staticmethod
    def did_change() -> bool:
        return False


KEPT = _Kept()


def download(name: str, url: str, dest: str, key: str, mode: str = "644", sha256: str = ""):
    """files.download, but a failure is one line naming the URL, the topology key it came
    from, curl's own reason and what to change (ADVICE), instead of curl's raw line. Like
    files.download, a file that is there (with the right sha256, when given) is kept."""
    info = host.get_fact(File, path=dest)
    if info and (not sha256 or host.get_fact(Sha256File, path=dest) == sha256):
        host.noop(f"{name}: {dest} is there")
        return KEPT
    q = shlex.quote
    check = ""
    if sha256:
        wrong = f"k8s-lab: {url} ({key}): its sha256 is not cri_dockerd_sha256 {sha256}"
        check = (
            f'echo "{sha256}  $tmp" | sha256sum -c --status || '
            f'{{ rm -f "$tmp"; echo {q(wrong)} >&2; exit 1; }}\n'
        )
    script = DOWNLOAD.format(
        part=q(dest + ".part"),
        url=q(url),
        said=q(f"k8s-lab: cannot download {url} ({key}):"),
        advice=q(ADVICE[key]),
        check=check,
        mode=mode,
        dest=q(dest),
    )
    return server.shell(name=name, commands=[script])


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
        self.key = f"{'kube' if slug == 'kubernetes' else slug}_apt_repo"
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
            key_op = download(
                f"{label}: signing key",
                key["url"].format(**fmt),
                self.plan.keyring,
                key=self.key,
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
            what=shlex.quote(
                f"k8s-lab: {self.label} ({self.plan.url}, {self.key}): apt-get update fails:"
            ),
            advice=shlex.quote(ADVICE[self.key]),
        )
        return server.shell(
            name=f"{self.label}: apt-get update of it alone passes (signature, reachability)",
            commands=[script],
            _if=lambda: need or any(op.did_change() for op in self.ops),
        )


# curl (hostprep installs it) says why on its last line ("curl: (6) Could not resolve host:
# github.com"); it goes on the one line with the URL, the key and what to change.
DOWNLOAD = """tmp={part}; rm -f "$tmp"
if ! why=$(curl -sSLf --connect-timeout 20 -o "$tmp" {url} 2>&1); then
  rm -f "$tmp"; echo {said} "$(printf '%s' "$why" | tail -n 1);" {advice} >&2; exit 1
fi
{check}chmod {mode} "$tmp" && mv "$tmp" {dest}"""

# Signature problems first (apt prints them after a vaguer "Err:" line), then any error; the
# reason of an "Err:" line is on the line after it. The stamp says it passed with this source.
APT_CHECK = """rm -f {stamp}
out=$(apt-get update -q -o Dir::Etc::SourceList={sources} -o Dir::Etc::SourceParts=- \
-o APT::Get::List-Cleanup=0 2>&1); rc=$?
why=$(printf '%s\\n' "$out" | grep -E 'NO_PUBKEY|EXPKEYSIG|BADSIG|is not signed' | head -n 1)
[ -n "$why" ] || why=$(printf '%s\\n' "$out" | grep -A1 -E '^(Err|E):' | head -n 2 | tr '\\n' ' ')
if [ "$rc" -ne 0 ] || [ -n "$why" ]; then
  echo {what} $(printf '%s' "${{why:-exit $rc}}")";" {advice} >&2; exit 1
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
