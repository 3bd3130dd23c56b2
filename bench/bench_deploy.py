"""Wall time of the deploy phases on the test bed, and of the same no-op re-run in Ansible.

    sudo /opt/k8slab-venv/bin/python bench/bench_deploy.py [--reuse] [--runs 3] [--down]

For each phase (hostprep, docker): first converge on fresh hosts and no-op re-runs with
pyinfra (`pyinfra -y inventory/lab.py deploys/PHASE.py`), then no-op re-runs of an equivalent
Ansible playbook (bench/ansible/PHASE.yml, same rendered files) on the same converged hosts.
ansible-core comes from PyPI into its own venv (ANSIBLE_VENV, default in the test bed's cache)
at the first run. Prints a table; also writes bench/results/<time>.json. A script, not a test.
--reuse keeps the running hosts (first-converge figures are then not from fresh hosts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed import bed  # noqa: E402

PHASES = ("hostprep", "docker")
ANSIBLE_VENV = Path(os.environ.get("ANSIBLE_VENV") or bed.spec.CACHE_ROOT / "ansible-venv")


def pyinfra_exe() -> str:
    return str(Path(sys.executable).with_name("pyinfra"))


def timed(argv, env=None, cwd=REPO):
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.monotonic() - t0, r


def run_pyinfra(phase: str, lab: Path) -> tuple[float, int]:
    env = {**os.environ, "LAB_CONFIG": str(lab), "LAB_KNOWN_HOSTS": str(bed.cluster().known_hosts)}
    secs, r = timed([pyinfra_exe(), "-y", "inventory/lab.py", f"deploys/{phase}.py"], env)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        sys.exit(f"pyinfra {phase} failed:\n{out[-4000:]}")
    return secs, len(re.findall(r"^\s*\[\S+\] Success\s*$", out, re.M))


def ensure_ansible() -> Path:
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not exe.exists():
        print(f"installing ansible-core into {ANSIBLE_VENV} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin/pip"), "install", "-q", "ansible-core"], check=True)
    return exe


def ansible_workdir(lab: Path) -> Path:
    """Inventory and the files rendered exactly as the pyinfra deploy renders them."""
    from k8slab.render import render
    from k8slab.topology import load

    topo = load(lab)
    values = topo.cluster_vars()
    work = Path(tempfile.mkdtemp(prefix="k8slab-bench-"))
    files = work / "files"
    files.mkdir()
    (files / "hosts.block").write_text(render("templates/hosts.block.j2", values).rstrip("\n"))
    (files / "modules-load.conf").write_text(
        render("templates/modules-load.k8s-lab.conf.j2", values)
    )
    sys.path.insert(0, str(REPO))
    from k8slab.deploy.hostprep import SYSCTLS

    (files / "sysctl.conf").write_text(
        render("templates/sysctl.k8s-lab.conf.j2", {**values, "sysctls": SYSCTLS})
    )
    (files / "daemon.json").write_text(render("templates/docker/daemon.json.j2", values))
    lines = ["[lab]"]
    for h in topo.hosts:
        lines.append(
            f"{h.name} ansible_host={h.ssh_host} ansible_port={h.ssh_port} node_name={h.name}"
        )
    lines += [
        "[lab:vars]",
        f"ansible_user={bed.cluster().user}",
        f"ansible_ssh_private_key_file={bed.cluster().key}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={bed.cluster().known_hosts} "
        "-o StrictHostKeyChecking=yes'",
        "ansible_python_interpreter=/usr/bin/python3",
        f"files_dir={files}",
    ]
    (work / "inventory.ini").write_text("\n".join(lines) + "\n")
    return work


def run_ansible(exe: Path, work: Path, phase: str) -> tuple[float, int]:
    env = {
        **os.environ,
        "ANSIBLE_PIPELINING": "True",  # Ansible's usual speed-up; without it it is slower still
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    argv = [
        str(exe),
        "-i",
        str(work / "inventory.ini"),
        str(REPO / "bench/ansible" / f"{phase}.yml"),
    ]
    secs, r = timed(argv, env)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        sys.exit(f"ansible-playbook {phase} failed:\n{out[-4000:]}")
    changed = sum(int(x) for x in re.findall(r"changed=(\d+)", out))
    return secs, changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reuse", action="store_true", help="do not start from fresh hosts")
    ap.add_argument("--runs", type=int, default=3, help="no-op runs per tool and phase (median)")
    ap.add_argument("--down", action="store_true", help="tear the bed down at the end")
    a = ap.parse_args()
    reason = bed.unavailable_reason()
    if reason:
        sys.exit(f"bench: test bed unavailable: {reason}")
    results: dict = {"phases": {}}
    with bed.locked(what="bench/bench_deploy.py"):
        if not a.reuse:
            print("fresh hosts: testbed down + up", file=sys.stderr, flush=True)
            bed.down()
        lab = bed.up()
        for phase in PHASES:
            first, first_changes = run_pyinfra(phase, lab)
            noops = []
            for _ in range(a.runs):
                secs, changes = run_pyinfra(phase, lab)
                if changes:
                    print(f"warning: pyinfra {phase} re-run changed {changes}", file=sys.stderr)
                noops.append(secs)
            results["phases"][phase] = {
                "pyinfra_first": first,
                "pyinfra_first_changes": first_changes,
                "pyinfra_noop": statistics.median(noops),
                "pyinfra_noop_runs": noops,
            }
            print(
                f"{phase}: pyinfra first {first:.1f}s, no-op {statistics.median(noops):.1f}s",
                file=sys.stderr,
                flush=True,
            )
        exe = ensure_ansible()
        work = ansible_workdir(lab)
        for phase in PHASES:
            _, warm_changes = run_ansible(exe, work, phase)  # also proves the end state matches
            noops, changed = [], []
            for _ in range(a.runs):
                secs, c = run_ansible(exe, work, phase)
                noops.append(secs)
                changed.append(c)
            results["phases"][phase].update(
                {
                    "ansible_warmup_changed": warm_changes,
                    "ansible_noop": statistics.median(noops),
                    "ansible_noop_runs": noops,
                    "ansible_noop_changed": changed,
                }
            )
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
        results["ansible"] = version.stdout.splitlines()[0] if version.stdout else "?"
        if a.down:
            bed.down()

    print(
        f"\n{'phase':10} {'pyinfra first':>14} {'pyinfra no-op':>14} {'ansible no-op':>14} "
        f"{'ansible/pyinfra':>16}"
    )
    for phase, r in results["phases"].items():
        ratio = r["ansible_noop"] / r["pyinfra_noop"]
        r["noop_ratio_ansible_over_pyinfra"] = ratio
        print(
            f"{phase:10} {r['pyinfra_first']:13.1f}s {r['pyinfra_noop']:13.1f}s "
            f"{r['ansible_noop']:13.1f}s {ratio:15.2f}x"
        )
        if r["ansible_warmup_changed"] or any(r["ansible_noop_changed"]):
            print(
                f"  note: the Ansible {phase} playbook changed "
                f"{r['ansible_warmup_changed']} task(s) on its first run after pyinfra "
                f"(no-op runs: {r['ansible_noop_changed']})"
            )
    print(
        f"(median of {a.runs} no-op runs; 3 hosts; {results['ansible']}, pipelining on; "
        f"fresh hosts: {not a.reuse})"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
