"""The "Image archives" phase, uploaded then loaded against streamed into `docker load`, on the
test bed's machines with the offline folder's archives (tests/e2e/README.md). A script that
prints figures, not a test:

    sudo .venv/bin/python bench/archive_phase.py [--rounds 2]

Bare machines, then host preparation and Docker (not timed); then per round, for each way:
every image of the folder removed from the nodes, and `pyinfra deploys/images.py` timed. The
upload path is what the deploy takes when $LAB_SUDO_PASSWORD is set (sudo would read stdin);
the bed's sudo needs no password, so setting it only picks the path. Each node gets the
archives of its role either way (k8slab.archives); the bytes each receives are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from k8slab import archives  # noqa: E402
from k8slab.topology import load  # noqa: E402
from tests.e2e import offline  # noqa: E402
from tests.testbed import bed  # noqa: E402
from tests.testbed.fixtures import Testbed  # noqa: E402

WAYS = {"uploaded, then loaded": {"LAB_SUDO_PASSWORD": "not-asked"}, "streamed": {}}


def pyinfra(tb: Testbed, env: dict, *deploys: str) -> float:
    t0 = time.monotonic()
    r = subprocess.run(
        [tb.pyinfra_exe(), "-y", "inventory/lab.py", *deploys],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if r.returncode != 0:
        sys.exit(f"{' '.join(deploys)} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return round(time.monotonic() - t0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    folder = offline.folder()
    if not folder:
        sys.exit(f"no offline folder: set ${offline.ENV} or put one at {offline.DEFAULT}")
    with bed.locked(what="bench/archive_phase.py"):
        bed.up()
        bed.renew_roots()
        raw = yaml.safe_load(bed.cluster().topology.read_text())
        raw.update(offline.source_keys(folder, cgroup_v1=True))
        config = bed.cluster().state / "bench-archives.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        tb = Testbed(config)
        env = {**tb.env(), "LAB_CONFIG": str(config)}
        topo = load(config)
        tags = sorted({t for x in topo.image_archives for t in x.tags})
        for h in topo.hosts:
            sent = archives.for_host(topo, h)
            size = sum(Path(x["path"]).stat().st_size for x in sent)
            print(f"{h.name}: {len(sent)} of {len(topo.image_archives)} archives, {size:,} bytes")
        print(f"prepare: {pyinfra(tb, env, 'deploys/hostprep.py', 'deploys/docker.py')} s")
        times: dict[str, list[float]] = {w: [] for w in WAYS}
        for i in range(1, a.rounds + 1):
            for way, extra in WAYS.items():
                for h in tb.hosts:
                    tb.ssh(h, f"docker rmi -f {' '.join(tags)} >/dev/null 2>&1; true")
                seconds = pyinfra(tb, {**env, **extra}, "deploys/images.py")
                times[way].append(seconds)
                print(f"round {i}, {way}: {seconds} s", flush=True)
    for way, secs in times.items():
        print(f"{way:>22}: median {statistics.median(secs)} s of {secs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
