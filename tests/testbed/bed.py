"""The k8s-lab test bed: the product's own lab machines (k8slab.machines, `labctl machines`)
as the cluster `testbed`, offline (no way out; apt through the proxy on 10.0.2.1), at the
course's addresses, so every bed test exercises the product feature.

What only the tests add: a spare worker `slave3` (10.0.2.6) made on request, Debian's busybox
as a root file system in every machine (`docker import`, no registry pulls), and a lock so
that one test session at a time uses the bed.

TESTBED_SHAPE=virtualbox gives the bed a learner's VirtualBox shape instead (its own cluster,
`tbvbox`): every host also has a NAT-like interface with 10.0.2.15 and the default route, and
the node IPs are 192.168.56.x on the bridge (`labctl machines up --nat-nic`).
TESTBED_NAME and TESTBED_SUBNET (VirtualBox shape only) give a second such cluster beside it,
so that two test sessions can each have a cluster (with their own TESTBED_LOCK).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from k8slab.machines import manage, nspawn, spec
from k8slab.machines.spec import Machine
from k8slab.topology import REPO_ROOT, load

REPO = REPO_ROOT
SHAPE = os.environ.get("TESTBED_SHAPE") or "course"
VIRTUALBOX = SHAPE == "virtualbox"
NAME = os.environ.get("TESTBED_NAME") or ("tbvbox" if VIRTUALBOX else "testbed")
# None: the course's 10.0.2.0/24, which only one cluster on this host can have.
SUBNET = (os.environ.get("TESTBED_SUBNET") or "192.168.56.0/24") if VIRTUALBOX else None
SPARES = (Machine("slave3", "worker", "10.0.2.6"),)  # moved to SUBNET, keeping .6
BUSYBOX = "opt/testbed/busybox-rootfs.tar"  # in every machine's root
# This host on the bed's bridge: the subnet's first address, as labctl machines gives it.
GATEWAY = str(next(ipaddress.ip_network(SUBNET or "10.0.2.0/24").hosts()))


class TestbedError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


def cluster() -> spec.Cluster:
    c = spec.recorded(NAME)
    if c is None:
        raise TestbedError("the test bed is not up")
    return c


# --------------------------------------------------------------------------- lock

LOCK_PATH = Path(os.environ.get("TESTBED_LOCK") or "/run/k8s-lab-testbed.lock")
_lock_depth = 0


@contextlib.contextmanager
def locked(timeout: float | None = None, what: str = "use"):
    """One user of the bed at a time (a pytest session, or a CLI command); re-entrant."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    if timeout is None:
        timeout = float(os.environ.get("TESTBED_LOCK_TIMEOUT", "1800"))
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            if time.monotonic() > deadline:
                os.close(fd)
                raise TestbedError(
                    f"the test bed is busy ({holder}); gave up after {timeout:.0f}s"
                ) from None
            if not told:
                log(f"waiting for the test bed, in use by {holder}")
                told = True
            time.sleep(1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} ({what})\n".encode(), 0)
    _lock_depth = 1
    try:
        yield
    finally:
        _lock_depth = 0
        os.close(fd)


# --------------------------------------------------------------------------- the bed


def unavailable_reason() -> str | None:
    """Why this machine cannot run the bed, or None when it can."""
    if SHAPE not in ("course", "virtualbox"):
        return f"TESTBED_SHAPE={SHAPE}: give course (the default) or virtualbox"
    if os.environ.get("TESTBED_SUBNET") and not VIRTUALBOX:
        return "TESTBED_SUBNET needs TESTBED_SHAPE=virtualbox (the course shape is 10.0.2.0/24)"
    if sys.platform != "linux":
        return "the test bed needs Linux"
    if os.geteuid() != 0:
        return "the test bed needs root (systemd-nspawn, a bridge, cgroups)"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} not found (run tests/testbed/install-deps.sh)"
    if not Path("/bin/busybox").exists():
        return "/bin/busybox not found (run tests/testbed/install-deps.sh)"
    return None


def busybox_tar() -> Path:
    """A busybox root file system for `docker import` inside the machines."""
    tar = spec.CACHE_ROOT / "busybox-rootfs.tar"
    if tar.exists():
        return tar
    tmp = spec.CACHE_ROOT / "busybox-rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tmp / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for a in applets.split():
        if a != "busybox":
            os.symlink("busybox", tmp / "bin" / a)
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (tmp / d).mkdir()
    (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp / "etc" / "group").write_text("root:x:0:\n")
    subprocess.run(["tar", "-C", tmp, "-cf", f"{tar}.part", "."], check=True)
    os.rename(f"{tar}.part", tar)
    shutil.rmtree(tmp)
    return tar


def _give_busybox(c: spec.Cluster, name: str) -> None:
    dst = nspawn.root_of(c, name) / BUSYBOX
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox_tar(), dst)


def up() -> Path:
    """The bed's three machines running (made when missing); the topology file's path."""
    reason = unavailable_reason()
    if reason:
        raise TestbedError(reason)
    try:
        done = manage.up(
            load(REPO / "inventory" / "lab.yaml"),
            NAME,
            offline=True,
            nat_nic=VIRTUALBOX,
            subnet=SUBNET,
            spares=SPARES,
            say=log,
        )
    except manage.MachinesError as e:
        raise TestbedError(str(e)) from None
    for m in done.cluster.machines:
        _give_busybox(done.cluster, m.name)
    if done.changed:
        log(f"up in {done.seconds:.1f}s ({', '.join(done.changed)})")
    return done.cluster.topology


def add_spare(name: str) -> None:
    """The spare machine with a fresh root, started (the bed must be up)."""
    c = cluster()
    nspawn.stop(c, name, log)
    nspawn.remove_root(c, name)
    manage.start_spare(c, name, say=log)
    _give_busybox(c, name)


def renew_roots() -> None:
    """Every machine (the spare too) stopped and its root copied anew: bare hosts."""
    c = spec.recorded(NAME)
    if c is not None:
        for m in c.all:
            nspawn.stop(c, m.name, log)
            nspawn.remove_root(c, m.name)
    up()


def down() -> None:
    c = spec.recorded(NAME)
    if c is not None:
        manage.destroy(c, say=log)


def ssh(name: str, cmd: str, root: bool = True, timeout: float = 600) -> tuple[int, str, str]:
    return nspawn.ssh(cluster(), name, cmd, root=root, timeout=timeout)
