"""Run one lab machine: systemd-nspawn in cgroups of its own, booted again when it reboots.

Started detached by k8slab.machines.nspawn; stdlib only (and procs); the nspawn command line
follows `--`:

    python3 -m k8slab.machines.supervise --name master --state DIR \
        --cgroup k8s-lab/default/master -- systemd-nspawn --boot ...

Where PID 1 is not systemd, nspawn runs with --register=no --keep-unit and uses the cgroup it is
started in: each machine gets its own (CGROUP) in every hierarchy, or they would collide. Where
PID 1 is systemd, the command line starts with systemd-run --scope and no --cgroup is given.
nspawn exits 133 when the machine reboots; then it is started again. SIGTERM (from `stop`) is
passed to nspawn, which powers the machine off; a STATE/NAME.stop.pid file means "do not
restart".
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from k8slab.machines.procs import cgroup_mounts

REBOOT_EXIT = 133


def log(msg):
    print(f"[supervise {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prepare_cgroups(rel):
    """Create REL in every hierarchy (cpuset needs cpus/mems filled in before it takes tasks;
    on cgroup v2 the parents hand their controllers down)."""
    dirs = []
    for mnt in cgroup_mounts():
        cur = mnt
        for part in Path(rel).parts:
            parent, cur = cur, cur / part
            if (parent / "cgroup.subtree_control").exists():
                wanted = (parent / "cgroup.controllers").read_text().split()
                for c in wanted:
                    try:
                        (parent / "cgroup.subtree_control").write_text(f"+{c}")
                    except OSError:
                        pass
            cur.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                f = cur / knob
                if f.exists() and not f.read_text().strip():
                    f.write_text((parent / knob).read_text())
        dirs.append(cur)
    return dirs


def remove_cgroups(dirs):
    for top in dirs:
        for d, _sub, _files in sorted(os.walk(top), key=lambda x: -x[0].count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--cgroup")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    state = Path(a.state)
    stopfile = state / f"{a.name}.stop.pid"
    pidfile = state / f"{a.name}.nspawn.pid"
    child = None
    stopping = False

    def on_term(signum, _frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    rc = 0
    boots = 0
    while not stopping and not stopfile.exists():
        dirs = prepare_cgroups(a.cgroup) if a.cgroup else []

        def join(dirs=dirs):
            pid = str(os.getpid())
            for d in dirs:
                (d / "cgroup.procs").write_text(pid)

        boots += 1
        log(f"{a.name}: boot #{boots}: {' '.join(argv)}")
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=join)
        pidfile.write_text(f"{child.pid}\n")
        rc = child.wait()
        log(f"{a.name}: systemd-nspawn exited {rc}")
        pidfile.unlink(missing_ok=True)
        if rc != REBOOT_EXIT:
            break
        log(f"{a.name}: the machine rebooted; starting it again")
    if a.cgroup:
        remove_cgroups([m / a.cgroup for m in cgroup_mounts()])
    sys.exit(0 if stopping or stopfile.exists() else rc)


if __name__ == "__main__":
    main()
