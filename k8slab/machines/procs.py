"""The background programs behind a cluster (one supervisor per machine, the apt proxy, the
DNS forwarder): started detached, found again by PID file plus command line, stopped by PID;
and the cgroups they run in. Stdlib only: the supervisor imports it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def pidfile(state: Path, name: str) -> Path:
    return state / f"{name}.pid"


def running(state: Path, name: str, marker: str) -> int | None:
    """The PID recorded under `name`, if that process still runs and its command line holds
    `marker` (a PID reused by another program is not ours)."""
    try:
        pid = int(pidfile(state, name).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    if marker not in cmdline or zombie(pid):
        return None
    return pid


def start(state: Path, name: str, argv: list[str], log: Path) -> int:
    """Run `python -m <argv...>` detached, its output appended to `log`; its PID recorded."""
    state.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    pidfile(state, name).write_text(f"{p.pid}\n")
    return p.pid


def terminate(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def cgroup_mounts() -> list[Path]:
    """Where each cgroup hierarchy is mounted (one on cgroup v2)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
            out.append(Path(fields[4]))
    return out
