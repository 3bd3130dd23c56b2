"""Run one test-bed host: systemd-nspawn in its own cgroups, booted again when it reboots.

Started detached by tests/testbed/bed.py; stdlib only; not imported by anything.

    supervise.py --name master --root /var/lib/k8s-lab-testbed/master --bridge k8slab-br0 \
        --state tests/testbed/.state --cgroup k8s-lab-testbed/master

PID 1 here is not systemd, so nspawn runs with --register=no --keep-unit and uses the cgroup it
is started in: each host gets its own (CGROUP) in every hierarchy, or the three would collide.
nspawn exits 133 when the host reboots; then it is started again. SIGTERM (from `stop`) is
passed to nspawn, which powers the host off; a STATE/NAME.stop file means "do not restart".
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REBOOT_EXIT = 133


def log(msg):
    print(f"[supervise {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cgroup_mounts():
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
            out.append(Path(fields[4]))
    return out


def prepare_cgroups(rel):
    """Create REL in every hierarchy (cpuset needs cpus/mems filled in before it takes tasks)."""
    dirs = []
    for mnt in cgroup_mounts():
        cur = mnt
        for part in Path(rel).parts:
            parent, cur = cur, cur / part
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
    ap.add_argument("--root", required=True)
    ap.add_argument("--bridge", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--cgroup", required=True)
    a = ap.parse_args()
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

    argv = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--directory={a.root}",
        f"--machine={a.name}",
        f"--network-bridge={a.bridge}",
        "--resolv-conf=off",
        "--console=pipe",
        "--link-journal=no",
        "--system-call-filter=@keyring bpf",
        # kubelet opens /dev/kmsg, which needs CAP_SYSLOG (nspawn drops it by default)
        "--capability=CAP_SYSLOG",
    ]
    rc = 0
    boots = 0
    while not stopping and not stopfile.exists():
        dirs = prepare_cgroups(a.cgroup)

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
        log(f"{a.name}: the host rebooted; starting it again")
    remove_cgroups([m / a.cgroup for m in cgroup_mounts()])
    sys.exit(0 if stopping or stopfile.exists() else rc)


if __name__ == "__main__":
    main()
