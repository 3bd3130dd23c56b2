"""Start-up time of labctl: the median of `labctl --help` and `labctl labs` against
`python -c pass` (the interpreter alone), measured in the same run. A script, not a test:

    .venv/bin/python bench/bench_startup.py [--runs 15]

The goal (issue #10) is a median of at most 0.3 s for both on a 2-core machine. What keeps
it there: paramiko, pyinfra, jinja2 and the checks are imported only by the commands that
use them (tests/test_first_hour.py checks that importing k8slab.cli loads none of them).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def medians(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall-clock and median CPU (user + sys) seconds; on a machine shared with other
    work the CPU figure moves less."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "labctl --help": [str(BIN / "labctl"), "--help"],
        "labctl labs": [str(BIN / "labctl"), "labs"],
    }
    medians(cases["labctl labs"], 2)  # warm the file cache and the .pyc files
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {runs} runs each")
    for name, cmd in cases.items():
        wall, cpu = medians(cmd, runs)
        print(f"{name:16} median {wall:.3f} s wall, {cpu:.3f} s CPU")


if __name__ == "__main__":
    main()
