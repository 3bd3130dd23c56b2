"""How often does the cluster come up? Repeated deploys on the test bed's machines from an
offline folder (tests/e2e/README.md), then Weave's pods deleted one node at a time. A script
that prints figures, not a test:

    sudo .venv/bin/python bench/repeat_deploys.py [--fresh 10] [--resets 5] [--out DIR]

1. `--fresh` times: bare machines (roots copied anew), then the deploy to Ready;
2. `--resets` times: `labctl reset --yes`, then the deploy again on the same machines;
3. on the last cluster, each node's weave-net pod deleted in turn: the DaemonSet must bring a
   ready one back (a restart of Weave on a node without fastdp was fatal before
   `weave_fastdp: false`, weaveworks/weave#3634); then `labctl verify --only cluster --only net`.

Each deploy's log and phase times go to OUT/<run>.log and .json; a failed one also leaves
OUT/<run>-diagnosis.txt (every pod, and the logs of kube-system's pods that are not ready).
OUT/summary.json holds the figures printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import offline, runs  # noqa: E402
from tests.testbed import bed  # noqa: E402
from tests.testbed.fixtures import Testbed  # noqa: E402

LABCTL = str(Path(sys.executable).with_name("labctl"))
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def topology(out: Path, folder: Path) -> Path:
    raw = yaml.safe_load(bed.cluster().topology.read_text())
    raw.update(
        offline.source_keys(
            folder, cgroup_v1=not Path("/sys/fs/cgroup/cgroup.controllers").exists()
        )
    )
    # The product's default rather than the `false` labctl machines writes: the machines have
    # no openvswitch, so these runs also prove auto's choice (sleeve) on a real cluster.
    raw["weave_fastdp"] = "auto"
    path = out / "lab.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def ready_nodes(tb: Testbed) -> int:
    rc, out, _ = tb.ssh("master", f"{KUBECTL} get nodes --no-headers")
    return sum(1 for line in out.splitlines() if line.split()[1:2] == ["Ready"]) if rc == 0 else 0


def one_deploy(tb: Testbed, env: dict, out: Path, name: str) -> dict:
    r = runs.deploy(tb, env, out, name)
    r["ready_nodes"] = ready_nodes(tb)
    ok = r["exit_code"] == 0 and r["ready_nodes"] == len(tb.hosts)
    if not ok:
        runs.diagnosis(tb, out, name)
    say(f"{name}: {'ok' if ok else 'FAILED'} in {r['seconds']} s, {r['ready_nodes']} Ready")
    return {"name": name, "ok": ok, "seconds": r["seconds"], "phases": r["phases"]}


def delete_weave_pods(tb: Testbed) -> list[dict]:
    done = []
    for node in tb.hosts:
        pod = tb.ssh(
            "master",
            f"{KUBECTL} -n kube-system get pods -l name=weave-net -o name "
            f"--field-selector spec.nodeName={node}",
        )[1].strip()
        t0 = time.monotonic()
        tb.ssh("master", f"{KUBECTL} -n kube-system delete {pod} --wait=true")
        rc, _, err = tb.ssh(
            "master", f"{KUBECTL} -n kube-system rollout status ds/weave-net --timeout=300s"
        )
        seconds = round(time.monotonic() - t0, 1)
        new = tb.ssh(
            "master",
            f"{KUBECTL} -n kube-system get pods -l name=weave-net -o jsonpath="
            f'\'{{range .items[?(@.spec.nodeName=="{node}")]}}{{.metadata.name}} '
            f"{{.status.containerStatuses[0].ready}} "
            f"{{.status.containerStatuses[0].restartCount}}{{end}}'",
        )[1].split()
        ok = rc == 0 and new[1:2] == ["true"]
        say(f"weave-net on {node} deleted: {'back' if ok else 'NOT back'} in {seconds} s {new}")
        if not ok:
            runs.diagnosis(tb, tb.state, f"weave-{node}")
        done.append({"node": node, "ok": ok, "seconds": seconds, "pod": new, "err": err[-300:]})
    return done


def spread(secs: list[float]) -> str:
    if not secs:
        return "-"
    return f"min {min(secs)} / median {statistics.median(secs)} / max {max(secs)} s"


def figures(rows: list[dict], phase: str | None = None) -> str:
    if phase:
        return spread([r["phases"][phase] for r in rows if r["ok"] and phase in r["phases"]])
    secs = [r["seconds"] for r in rows if r["ok"]]
    return f"{sum(r['ok'] for r in rows)}/{len(rows)} ok, {spread(secs)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fresh", type=int, default=10)
    ap.add_argument("--resets", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "repeat")
    a = ap.parse_args()
    folder = offline.folder()
    if not folder:
        sys.exit(f"no offline folder: set ${offline.ENV} or put one at {offline.DEFAULT}")
    reason = bed.unavailable_reason()
    if reason:
        sys.exit(f"test bed unavailable: {reason}")
    a.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"offline": str(folder)}
    with bed.locked(what="bench/repeat_deploys.py"):
        bed.up()
        config = topology(a.out, folder)
        tb = Testbed(config)
        env = {**tb.env(), "LAB_CONFIG": str(config)}
        fresh = []
        for i in range(1, a.fresh + 1):
            bed.renew_roots()
            fresh.append(one_deploy(tb, env, a.out, f"fresh-{i}"))
        resets = []
        for i in range(1, a.resets + 1):
            r = subprocess.run(
                [LABCTL, "--config", str(config), "--known-hosts", str(tb.known_hosts), "reset",
                 "--yes"], capture_output=True, text=True, timeout=900, env=env,
            )  # fmt: skip
            if r.returncode != 0:
                say(f"reset-{i}: labctl reset failed: {r.stderr.strip()[-300:]}")
            resets.append(one_deploy(tb, env, a.out, f"reset-{i}"))
        weave = delete_weave_pods(tb)
        verify = subprocess.run(
            [LABCTL, "--config", str(config), "--known-hosts", str(tb.known_hosts), "verify",
             "--only", "cluster", "--only", "net", "--format", "json"],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        totals = json.loads(verify.stdout)["totals"] if verify.stdout.strip() else {}
    summary |= {"fresh": fresh, "resets": resets, "weave_deleted": weave, "verify": totals}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"bare machines -> Ready:  {figures(fresh)}")
    print(f"  of it, image archives: {figures(fresh, 'Image archives')}")
    print(f"reset -> deploy again:   {figures(resets)}")
    back = [w for w in weave if w["ok"]]
    print(f"weave-net pod deleted:   {len(back)}/{len(weave)} back and ready")
    print(f"verify (cluster, weave): {totals}")
    return 0 if all(r["ok"] for r in fresh + resets + weave) else 1


if __name__ == "__main__":
    sys.exit(main())
