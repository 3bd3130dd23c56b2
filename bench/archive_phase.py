"""The "Image archives" phase before and after archives went by role and were streamed, on the
test bed's machines with the offline folder's archives (tests/e2e/README.md). A script that
prints figures, not a test:

    sudo .venv/bin/python bench/archive_phase.py [--rounds 2]

Bare machines, then host preparation and Docker (not timed); then per round, for each way:
every image of the folder removed from the nodes, and `pyinfra deploys/images.py` timed.
The ways:
- before: what the deploy did before (every archive to every node, uploaded, then loaded),
  reproduced with today's code: the folder's archives merged into one, which mixes roles and
  so goes everywhere, and the upload path;
- by role, uploaded: the upload path is what the deploy takes when $LAB_SUDO_PASSWORD is set
  (sudo would read stdin); the bed's sudo needs no password, so setting it only picks the path;
- by role, streamed: the deploy's default.
The bytes each node receives are printed too.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
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

UPLOAD = {"LAB_SUDO_PASSWORD": "not-asked"}


def merged(archives: list[Path], out: Path) -> Path:
    """One `docker save` archive holding every image of `archives` (Docker's legacy layout:
    manifest.json and repositories list the images, the other members are content-named)."""
    manifest, repositories, seen = [], {}, set()
    with tarfile.open(out, "w") as dst:
        for path in archives:
            with tarfile.open(path) as src:
                for m in src:
                    if m.name == "manifest.json":
                        manifest += json.load(src.extractfile(m))
                    elif m.name == "repositories":
                        for repo, tags in json.load(src.extractfile(m)).items():
                            repositories.setdefault(repo, {}).update(tags)
                    elif m.name not in seen:
                        seen.add(m.name)
                        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        for name, data in (("manifest.json", manifest), ("repositories", repositories)):
            blob = json.dumps(data).encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            dst.addfile(info, io.BytesIO(blob))
    return out


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
        state = bed.cluster().state
        raw = yaml.safe_load(bed.cluster().topology.read_text())
        raw.update(offline.source_keys(folder, cgroup_v1=True))
        config = state / "bench-archives.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        one = state / "bench-one-archive"
        one.mkdir(exist_ok=True)
        merged(sorted(Path(raw["image_archives"]).glob("*.tar")), one / "all.tar")
        before = state / "bench-archives-before.yaml"
        before.write_text(yaml.safe_dump({**raw, "image_archives": str(one)}, sort_keys=False))
        tb = Testbed(config)
        ways = {
            "before": ({**tb.env(), **UPLOAD, "LAB_CONFIG": str(before)}, load(before)),
            "by role, uploaded": ({**tb.env(), **UPLOAD, "LAB_CONFIG": str(config)}, load(config)),
            "by role, streamed": ({**tb.env(), "LAB_CONFIG": str(config)}, load(config)),
        }
        tags = sorted({t for x in load(config).image_archives for t in x.tags})
        for way, (_, topo) in ways.items():
            for h in topo.hosts:
                sent = archives.for_host(topo, h)
                size = sum(Path(x["path"]).stat().st_size for x in sent)
                print(f"{way}: {h.name} gets {len(sent)} archive(s), {size:,} bytes")
        env = ways["by role, streamed"][0]
        print(f"prepare: {pyinfra(tb, env, 'deploys/hostprep.py', 'deploys/docker.py')} s")
        times: dict[str, list[float]] = {w: [] for w in ways}
        for i in range(1, a.rounds + 1):
            for way, (env, _) in ways.items():
                for h in tb.hosts:
                    tb.ssh(h, f"docker rmi -f {' '.join(tags)} >/dev/null 2>&1; true")
                seconds = pyinfra(tb, env, "deploys/images.py")
                times[way].append(seconds)
                print(f"round {i}, {way}: {seconds} s", flush=True)
    for way, secs in times.items():
        print(f"{way:>22}: median {statistics.median(secs)} s of {secs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
