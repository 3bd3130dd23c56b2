"""The `testbed` fixture: three real SSH hosts (systemd-nspawn) for the deploy tests and the
end-to-end run (tests/e2e); tests/conftest.py makes it one fixture for both.

    def test_x(testbed):
        rc, out, err = testbed.ssh("master", "hostname")   # as root, via gurumee + sudo
        testbed.config                                     # Path of the topology file
        testbed.stop("slave1"); testbed.start("slave1"); testbed.reboot("slave2")

Brought up once per session (reused when it already runs) and torn down at the end unless
KEEP_TESTBED=1. Skips when the machine cannot run it, unless TESTBED_REQUIRED=1 (CI): then fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from k8slab.machines import MachinesError, manage, nspawn

from . import bed


class Testbed:
    hosts = ("master", "slave1", "slave2")

    def __init__(self, config: Path):
        self.config = config
        c = bed.cluster()
        # the course's addresses, or the virtualbox shape's (bed.py)
        self.ips = {m.name: m.ip for m in c.machines}
        self.spare_ips = {m.name: m.ip for m in c.spares}
        self.state = c.state
        self.known_hosts = c.known_hosts
        self.key = c.key

    def ssh(self, host: str, cmd: str, timeout: float = 600) -> tuple[int, str, str]:
        """Run cmd with sh as root on host; (returncode, stdout, stderr)."""
        return bed.ssh(host, cmd, root=True, timeout=timeout)

    def ssh_user(self, host: str, cmd: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run cmd as the unprivileged user gurumee."""
        return bed.ssh(host, cmd, root=False, timeout=timeout)

    def stop(self, host: str, hard: bool = False) -> None:
        nspawn.stop(bed.cluster(), host, bed.log, hard=hard)

    def start(self, host: str) -> None:
        manage.start(bed.cluster(), [host], bed.log)

    def reboot(self, host: str) -> None:
        nspawn.reboot(bed.cluster(), host, bed.log)

    def ensure_all_up(self) -> None:
        """Start any host that is not running (a test that stopped one may have failed)."""
        manage.start(bed.cluster(), [], bed.log)

    def running(self, host: str) -> bool:
        return nspawn.running(bed.cluster(), host)

    def renew_roots(self) -> None:
        """Bare hosts again: every root copied anew from the base, then booted."""
        bed.renew_roots()

    def add_spare(self, host: str) -> None:
        """Boot a bare spare host (slave3, 10.0.2.6: spare_ips), not in the topology file."""
        bed.add_spare(host)

    def peak_memory(self, host: str) -> int | None:
        """The most memory the host has used since it booted, in bytes (cgroup v1 only)."""
        return nspawn.peak_memory(bed.cluster(), host)

    def env(self) -> dict[str, str]:
        """Environment for running pyinfra/labctl against the bed."""
        return {
            **os.environ,
            "LAB_CONFIG": str(self.config),
            "LAB_KNOWN_HOSTS": str(self.known_hosts),
        }

    repo = bed.REPO

    @staticmethod
    def pyinfra_exe() -> str:
        return os.environ.get("PYINFRA") or str(Path(sys.executable).with_name("pyinfra"))

    def pyinfra(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        """`pyinfra -y inventory/lab.py ARGS` from the repo root against the bed."""
        return subprocess.run(
            [self.pyinfra_exe(), "-y", "inventory/lab.py", *args],
            cwd=bed.REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _unavailable(reason: str):
    if os.environ.get("TESTBED_REQUIRED") == "1":
        pytest.fail(
            f"test bed required (TESTBED_REQUIRED=1) but unavailable: {reason}", pytrace=False
        )
    pytest.skip(f"test bed unavailable: {reason}")


@pytest.fixture(scope="session")
def testbed():
    reason = bed.unavailable_reason()
    if reason:
        _unavailable(reason)
    lock = bed.locked(what="pytest session")
    lock.__enter__()  # held for the session: a second session waits instead of tearing it down
    try:
        config = bed.up()
    except BaseException as e:
        lock.__exit__(None, None, None)
        if isinstance(e, bed.TestbedError | MachinesError):
            pytest.fail(f"the test bed did not come up: {e}", pytrace=False)
        raise
    tb = Testbed(config)
    try:
        yield tb
    finally:
        try:
            if os.environ.get("KEEP_TESTBED") != "1":
                bed.down()
        finally:
            lock.__exit__(None, None, None)


@pytest.fixture
def all_up(testbed):
    """The bed with every host running (a test that stopped one may have failed midway)."""
    testbed.ensure_all_up()
    return testbed


@pytest.fixture(scope="module")
def docker_hosts(testbed):
    """Every host prepared and running Docker (the deploy's hostprep and docker phases; a
    no-op when done before), with busybox:latest imported from the bed's own tarball."""
    testbed.ensure_all_up()
    r = testbed.pyinfra("deploys/hostprep.py", "deploys/docker.py")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for h in testbed.hosts:
        testbed.ssh(
            h,
            "docker image inspect busybox:latest >/dev/null 2>&1 || "
            f"docker import /{bed.BUSYBOX} busybox:latest",
        )
    return testbed
