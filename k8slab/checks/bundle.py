"""Support bundles: every command a `labctl verify` ran, with its output, saved to a directory
(`--record DIR`) and graded again offline (`--replay DIR`, or the `.tgz` of it a learner sends).

Layout (documented in docs/grading.md, "Support bundles"; the checks in labs/ch09/README.md)::

    DIR/bundle.json          index: format, lab, checks, tool, created, topology, commands[]
    DIR/commands/NNN-HOST.out  stdout of command NNN on HOST
    DIR/commands/NNN-HOST.err  its stderr

Each commands[] entry: {"host", "command", "exit_code", "seconds", "stdout", "stderr"}, the
last two being paths relative to DIR. `checks` lists the ids that were run: replaying grades
those unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from k8slab.checks.engine import Commands, NotRecorded
from k8slab.errors import LabctlError
from k8slab.ssh import Result
from k8slab.topology import Topology, TopologyError, parse

FORMAT = "k8s-lab-bundle/1"
INDEX = "bundle.json"


class BundleError(LabctlError, ValueError):
    """A bundle directory that cannot be written or read; one line."""


def topology_data(topo: Topology) -> dict[str, Any]:
    """What replaying needs of the topology, every value a check command may be rendered
    with, and no SSH details: they are not needed offline."""
    return {
        "hosts": [{"name": h.name, "role": h.role, "node_ip": h.node_ip} for h in topo.hosts],
        **topo.settings,
    }


def _tool() -> str:
    try:
        return f"k8s-lab {metadata.version('k8s-lab')}"
    except metadata.PackageNotFoundError:
        return "k8s-lab (not installed)"


def write(
    directory: Path, lab_id: str, check_ids: list[str], topo: Topology, commands: Commands
) -> None:
    entries = []
    files = directory / "commands"
    try:
        files.mkdir(parents=True, exist_ok=True)
        for i, ((host, cmd), (result, seconds)) in enumerate(commands.results.items(), 1):
            stem = f"commands/{i:03d}-{host}"
            (directory / f"{stem}.out").write_text(result.stdout, encoding="utf-8")
            (directory / f"{stem}.err").write_text(result.stderr, encoding="utf-8")
            entries.append(
                {
                    "host": host,
                    "command": cmd,
                    "exit_code": result.exit_code,
                    "seconds": round(seconds, 3),
                    "stdout": f"{stem}.out",
                    "stderr": f"{stem}.err",
                }
            )
        index = {
            "format": FORMAT,
            "lab": lab_id,
            "checks": check_ids,
            "tool": _tool(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "topology": topology_data(topo),
            "commands": entries,
        }
        (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise BundleError(f"{directory}: cannot write the bundle: {e.strerror}") from None


def _unpack(archive: Path, into: Path) -> Path:
    """A bundle's .tgz (as `tar czf bundle.tgz DIR` makes it): its files only, never a path
    outside `into`; returns the directory holding bundle.json."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                plain = member.isfile() or member.isdir()  # no links, devices or fifos
                if name.is_absolute() or ".." in name.parts or not plain:
                    raise BundleError(f"{archive}: refusing archive member {member.name!r}")
                tar.extract(member, into)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BundleError(f"{archive}: not a readable .tgz bundle: {e}") from None
    indexes = sorted(into.rglob(INDEX), key=lambda p: len(p.parts))
    if not indexes:
        raise BundleError(f"{archive}: no {INDEX} inside: not a bundle written by --record")
    return indexes[0].parent


class Replay:
    """A recorded bundle, read back: its topology, lab id and command results. `directory`
    may also be the bundle's .tgz (or .tar.gz, .tar): it is unpacked to a temporary folder."""

    def __init__(self, directory: Path):
        if not directory.exists():
            raise BundleError(f"{directory}: no such bundle (a folder or .tgz from --record)")
        if directory.is_file():
            self._unpacked = tempfile.TemporaryDirectory(prefix="k8s-lab-bundle-")
            directory = _unpack(directory, Path(self._unpacked.name))
        path = directory / INDEX
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{path} not found: not a bundle written by --record") from None
        except (OSError, ValueError) as e:
            raise BundleError(f"{path}: unreadable: {e}") from None
        if index.get("format") != FORMAT:
            raise BundleError(f"{path}: format {index.get('format')!r}, expected {FORMAT}")
        try:
            self.topology = parse(index["topology"], path, check_files=False)
        except TopologyError as e:
            raise BundleError(str(e)) from None
        self.lab = index["lab"]
        self.check_ids = tuple(index["checks"])
        self.directory = directory
        self._entries = {(e["host"], e["command"]): e for e in index["commands"]}

    def run(self, host: str, cmd: str) -> Result:
        entry = self._entries.get((host, cmd))
        if entry is None:
            raise NotRecorded(f"{host}: not in the bundle: `{' '.join(cmd.split())[:70]}`")
        try:
            out = (self.directory / entry["stdout"]).read_text(encoding="utf-8")
            err = (self.directory / entry["stderr"]).read_text(encoding="utf-8")
        except OSError as e:
            raise BundleError(f"{self.directory}: {e.filename}: {e.strerror}") from None
        return Result(out, err, int(entry["exit_code"]))
