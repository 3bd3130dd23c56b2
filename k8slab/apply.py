"""Apply a lab to the cluster and delete it again (`labctl apply`, `labctl delete`), over SSH.

Applying prepares the nodes (the lab's `prepare:` commands), loads the topology's image
archives, builds the lab's images on the workers, kubectl applies its manifests on master
and waits until its `wait:` objects are ready. Deleting removes the objects (waiting until
they are gone), undoes the preparation and removes the built images. Reading a lab is
k8slab.labs, which connects nowhere::

    >>> steps = lab.select_steps()
    >>> with Fleet(topo.hosts) as fleet:
    ...     apply.prepare_nodes(lab, steps, topo, fleet, print)
    ...     apply.kubectl_apply(lab, render_manifests(lab, topo, steps), topo, fleet, print)
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from k8slab import archives
from k8slab.labs import Image, Lab, Manifest, Step, WaitFor
from k8slab.topology import Host, Topology

if TYPE_CHECKING:
    from k8slab.ssh import Fleet

REMOTE_DIR = ".k8s-lab"  # relative to the SSH user's home on the hosts

Say = Callable[[str], None]


class ApplyError(RuntimeError):
    """Applying or deleting went wrong on the cluster (build, kubectl, timeout); one line."""


def _targets(where: str, topo: Topology) -> tuple[Host, ...]:
    return {"every-node": topo.hosts, "every-worker": topo.workers}.get(
        where, (topo.control_plane,)
    )


def prepare_nodes(
    lab: Lab, steps: tuple[Step, ...], topo: Topology, fleet: Fleet, say: Say, undo: bool = False
) -> None:
    for pid in dict.fromkeys(p for s in steps for p in s.prepare):
        prep = lab.prepare[pid]
        for host in _targets(prep.where, topo):
            r = fleet.run(host.name, prep.undo if undo else prep.run)
            if not r.ok:
                raise ApplyError(f"{host.name}: {prep.title}: {_said(r)}")
            state = "no changes" if r.stdout.strip() == "unchanged" else "changed"
            say(f"{host.name}: {'undo ' if undo else ''}{prep.title}: {state}")


def load_archives(topo: Topology, fleet: Fleet, hosts: list[Host], say: Say) -> None:
    """docker load the topology's image_archives a host lacks (k8slab.archives), so that the
    lab's builds and pods find their images without a registry; each host only those of the
    images its role runs, as the deploy does."""
    placed = archives.placed(topo)
    if not placed:
        return
    for host in hosts:
        wanted = archives.for_role(placed, host.role)
        r = fleet.run(host.name, f"sudo {archives.TAGS_COMMAND}")
        if not r.ok:
            raise ApplyError(f"{host.name}: cannot list Docker's images: {_said(r)}")
        todo = archives.to_load(wanted, r.stdout.split())
        sudo = archives.sudo_prefix(host.ssh_user, fleet.sudo_password)
        for archive in todo:
            say(f"{host.name}: docker load {Path(archive['path']).name} ...")
            if sudo is not None:  # streamed, as the deploy does
                try:
                    archives.stream_load(fleet.client(host.name), archive["path"], sudo)
                except archives.LoadError as e:
                    raise ApplyError(f"{host.name}: {e}") from None
                continue
            remote = f"{REMOTE_DIR}/images/{archives.remote_name(archive)}"
            fleet.put_file(host.name, Path(archive["path"]), remote)
            r = fleet.run(host.name, f"sudo {archives.load_command(remote)}", timeout=900)
            if not r.ok:
                raise ApplyError(f"{host.name}: docker load {archive['path']} failed: {_said(r)}")
        say(f"{host.name}: image archives: {len(todo)} loaded, {len(wanted) - len(todo)} present")


def images_to_build(lab: Lab, steps: tuple[Step, ...]) -> list[Image]:
    names = dict.fromkeys(n for s in steps for n in s.images)
    return [lab.images[n] for n in names if lab.images[n].build]


def build_images(lab: Lab, steps: tuple[Step, ...], topo: Topology, fleet: Fleet, say: Say) -> None:
    """docker build on every worker: pods of the lab run there, and cri-dockerd lets kubelet
    use Docker's local images, so no registry is involved."""
    for image in images_to_build(lab, steps):
        failed: dict[str, str] = {}  # every worker is tried: one that fails is not all
        for host in topo.workers:
            remote = f"{REMOTE_DIR}/{lab.id}/images/{image.name}"
            fleet.run(host.name, f"rm -rf {shlex.quote(remote)}")
            fleet.put_tree(host.name, image.context, remote)
            say(f"{host.name}: docker build -t {image.tag} ({image.context.name}) ...")
            r = fleet.run(
                host.name,
                f"sudo docker build -q -t {shlex.quote(image.tag)} {shlex.quote(remote)}",
                timeout=900,
            )
            if not r.ok:
                failed[host.name] = _said(r)
                say(f"{host.name}: docker build {image.tag} failed")
                continue
            say(f"{host.name}: built {image.tag}")
        if failed:
            raise ApplyError(
                f"docker build {image.tag} failed on {', '.join(failed)}: "
                f"{next(iter(failed.values()))}{_base_advice(image.context)}"
            )


def base_images(context: Path) -> list[str]:
    """The FROM images of a build context's Dockerfile (`busybox` for the course's)."""
    names = []
    for line in (context / "Dockerfile").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM" and not words[1].startswith("--"):
            names.append(words[1])
    return names


def _base_advice(context: Path) -> str:
    bases = ", ".join(base_images(context))
    if not bases:
        return ""
    return (
        f"; its base {bases} comes from Docker Hub: let the workers reach it, or put it in "
        f"image_archives (docker save -o lab.tar {bases}; docs/offline.md)"
    )


def remove_images(
    lab: Lab, steps: tuple[Step, ...], topo: Topology, fleet: Fleet, say: Say
) -> None:
    for image in images_to_build(lab, steps):
        for host in topo.workers:
            r = fleet.run(host.name, f"sudo docker image rm {shlex.quote(image.tag)}")
            if r.ok:
                state = "done"
            elif "No such image" in r.stderr:
                state = "not present"
            else:  # e.g. a container still uses it: say so rather than "not present"
                state = f"kept: {_said(r)}"
            say(f"{host.name}: docker image rm {image.tag}: {state}")


def upload_manifests(
    lab: Lab, manifests: list[Manifest], topo: Topology, fleet: Fleet
) -> list[str]:
    remote = f"{REMOTE_DIR}/{lab.id}/manifests"
    master = topo.control_plane.name
    fleet.run(master, f"rm -rf {shlex.quote(remote)}")
    fleet.put_files(master, {m.filename: m.text for m in manifests}, remote)
    return [f"{remote}/{m.filename}" for m in manifests]


def kubectl_apply(
    lab: Lab, manifests: list[Manifest], topo: Topology, fleet: Fleet, say: Say
) -> None:
    paths = upload_manifests(lab, manifests, topo, fleet)
    files = " ".join(f"-f {shlex.quote(p)}" for p in paths)
    r = fleet.run(topo.control_plane.name, f"{lab.values['kubectl']} apply {files}")
    for line in r.stdout.splitlines():
        say(f"{topo.control_plane.name}: {line}")
    if not r.ok:
        raise ApplyError(f"{topo.control_plane.name}: kubectl apply failed: {_said(r)}")


def kubectl_delete(
    lab: Lab, manifests: list[Manifest], topo: Topology, fleet: Fleet, say: Say
) -> None:
    paths = upload_manifests(lab, manifests, topo, fleet)
    # Reverse order: the Namespace (first applied) goes last.
    files = " ".join(f"-f {shlex.quote(p)}" for p in reversed(paths))
    # Wait until they are gone: the images are removed next, which fails while a container of
    # a terminating pod still uses them, and an apply right after would meet a terminating
    # namespace.
    wait = int(lab.values["wait_timeout"])
    say(f"{topo.control_plane.name}: deleting; waiting up to {wait}s for the objects to go ...")
    r = fleet.run(
        topo.control_plane.name,
        f"{lab.values['kubectl']} delete --ignore-not-found --timeout={wait}s {files}",
        timeout=wait + 60,
    )
    for line in r.stdout.splitlines():
        say(f"{topo.control_plane.name}: {line}")
    if not r.ok:
        raise ApplyError(f"{topo.control_plane.name}: kubectl delete failed: {_said(r)}")


_CONDITION = {"deployment": "Available", "pod": "Ready", "daemonset": "Ready"}
# kubectl's AGE column and RESTARTS' "(5s ago)": they change every poll, the state does not.
_AGE = re.compile(r"(?<!\S)\(?\d+[smhdy](\d+[smhdy])?( ago\))?(?!\S)")


def _without_ages(line: str) -> str:
    return " ".join(_AGE.sub("", line).split())


def wait_ready(
    lab: Lab,
    steps: tuple[Step, ...],
    topo: Topology,
    fleet: Fleet,
    say: Say,
    timeout: float,
) -> None:
    """Poll until every `wait:` object is ready, saying each change; on timeout, say which
    object is not ready and its latest events."""
    kubectl, master = lab.values["kubectl"], topo.control_plane.name
    pending = list(dict.fromkeys(w for s in steps for w in s.wait))
    last: dict[WaitFor, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for w in list(pending):
            cond = _CONDITION.get(w.kind, "Ready")
            r = fleet.run(
                master,
                f"{kubectl} wait --for=condition={cond} {w.kind}/{w.name}"
                f" -n {w.namespace} --timeout=2s",
            )
            if r.ok:
                pending.remove(w)
                say(f"ready: {w}")
                continue
            state = fleet.run(
                master, f"{kubectl} get {w.kind}/{w.name} -n {w.namespace} --no-headers"
            )
            now = " ".join((state.stdout or state.stderr).split())
            if _without_ages(last.get(w, "")) != _without_ages(now):
                last[w] = now
                say(f"waiting: {w}: {now}")
        if pending and time.monotonic() > deadline:
            w = pending[0]
            events = fleet.run(
                master,
                f"{kubectl} get events -n {w.namespace} --sort-by=.lastTimestamp"
                f" | grep -F {shlex.quote(w.name)} | tail -n 3",
            )
            why = " | ".join(" ".join(line.split()) for line in events.stdout.splitlines())
            raise ApplyError(
                f"timed out after {timeout:.0f}s: {w} not ready ({last.get(w, '?')}); "
                f"events: {why or 'none'}"
            )
        if pending:
            time.sleep(2)


def _said(r) -> str:
    lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
    return lines[-1] if lines else f"exit {r.exit_code}"
