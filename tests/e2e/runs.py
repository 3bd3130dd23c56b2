"""Running the deploy against the bed and reading what it says: shared by the end-to-end steps
(test_full_run.py) and the repeated-deploys script (bench/repeat_deploys.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

LABCTL = str(Path(sys.executable).with_name("labctl"))
# What the project's own commands print in the end-to-end steps (git-ignored).
OUT = Path(os.environ.get("K8SLAB_E2E_OUT") or Path(__file__).parent / ".out")
PHASE = re.compile(r"Starting operation: ([^|\n]+?) \|")


def e2e_env(bed) -> dict[str, str]:
    """The bed's environment with the run's topology (bed.e2e_config) as LAB_CONFIG."""
    return {**bed.env(), "LAB_CONFIG": str(bed.e2e_config)}


def deploy(bed, env: dict[str, str], out: Path, name: str, *extra: str) -> dict:
    """`pyinfra -y inventory/lab.py deploys/cluster.py`, timed per phase from its own output;
    the log and the figures go to out/<name>.log and .json."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [bed.pyinfra_exe(), "-y", "inventory/lab.py", "deploys/cluster.py", *extra],
        cwd=bed.repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, starts = [], []
    for line in proc.stdout:
        lines.append(line)
        found = PHASE.search(line)
        if found and (not starts or starts[-1][0] != found.group(1)):
            starts.append((found.group(1), time.monotonic() - t0))
    proc.wait(timeout=3600)
    total = time.monotonic() - t0
    output = "".join(lines)
    (out / f"{name}.log").write_text(output)
    phases = {"(connect, facts, pre-flight)": round(starts[0][1] if starts else total, 1)}
    ends = [s for _, s in starts[1:]] + [total]
    for (phase, start), end in zip(starts, ends[: len(starts)], strict=True):
        phases[phase] = round(phases.get(phase, 0) + end - start, 1)
    result = {
        "command": "pyinfra -y inventory/lab.py deploys/cluster.py " + " ".join(extra),
        "exit_code": proc.returncode,
        "seconds": round(total, 1),
        "phases": phases,
        "changes": changes(output),
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    result["output"] = output
    return result


def changes(output: str) -> dict[str, int]:
    """Operations pyinfra reports as changed ("[host] Success"), per host."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^\s*\[(\S+)\] Success\s*$", output, re.M):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def diagnosis(bed, out: Path, name: str) -> str:
    """What a failed step leaves to read: the nodes, every pod, the logs of kube-system's pods
    that are not Running, and for each running machine that is not a Ready node its kubelet's
    journal (a node that never registered shows no pod at all), kept in
    out/<name>-diagnosis.txt (the bed is gone after a CI run)."""
    script = (
        "export KUBECONFIG=/etc/kubernetes/admin.conf; kubectl get nodes -o wide; "
        "kubectl get pods -A -o wide; "
        "for p in $(kubectl -n kube-system get pods --no-headers "
        "| awk '{split($2, r, \"/\"); if (r[1] != r[2]) print $1}'); do "
        "for c in $(kubectl -n kube-system get pod $p -o jsonpath='{.spec.containers[*].name}'); "
        'do echo "== $p $c"; '
        "kubectl -n kube-system logs $p -c $c --tail=40 2>&1; "
        "kubectl -n kube-system logs $p -c $c --previous --tail=40 2>/dev/null; done; done"
    )
    _, stdout, stderr = bed.ssh("master", script)
    text = stdout + stderr
    ready = set(re.findall(r"^(\S+)\s+Ready\s", stdout, re.M))
    for host in (*bed.hosts, *bed.spare_ips):
        if host not in ready and bed.running(host):
            _, log, err = bed.ssh(
                host, "journalctl -u kubelet -n 40 --no-pager; systemctl is-active cri-docker"
            )
            text += f"== {host} is not a Ready node: its kubelet's journal\n{log}{err}"
    (out / f"{name}-diagnosis.txt").write_text(text)
    return text[-8000:]


def labctl(bed, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """labctl ARGS with the run's topology (bed.e2e_config); `.seconds` it took."""
    t0 = time.monotonic()
    r = subprocess.run(
        [LABCTL, "--config", str(bed.e2e_config), "--known-hosts", str(bed.known_hosts)]
        + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r.seconds = round(time.monotonic() - t0, 1)
    return r


def kubectl(bed, args: str) -> str:
    rc, out, err = bed.ssh("master", f"kubectl --kubeconfig /etc/kubernetes/admin.conf {args}")
    assert rc == 0, err
    return out
