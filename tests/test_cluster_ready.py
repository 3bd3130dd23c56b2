"""cluster-ready.sh, the deploy's last phase, run for real by sh against a stand-in kubectl
that prints what the real one prints for the script's jsonpath queries (recorded ones from
tests/fixtures/weave-crash-loop/ for the crash loops)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from k8slab.deploy.control_plane import known_crash_loops
from k8slab.render import render

CRASH = Path(__file__).parent / "fixtures" / "weave-crash-loop"

# The per-container queries (`crashing`) and `kubectl logs` are served from files in $DIR:
# containers.weave-net, containers.coredns, logs[-previous].POD.CONTAINER. Each call of a
# per-container query is its next step N; FILE.N (the highest N reached) stands for a later
# moment of the cluster than FILE, and a pod's logs follow its query's steps.
FAKE_KUBECTL = """#!/bin/sh
serve() {  # $1 a file name, $2 the query whose calls count its steps
    n=$(cat "$DIR/step.$2" 2>/dev/null || echo 0)
    while [ "$n" -gt 0 ] && [ ! -f "$DIR/$1.$n" ]; do n=$((n - 1)); done
    if [ "$n" -gt 0 ]; then cat "$DIR/$1.$n"
    elif [ -f "$DIR/$1" ]; then cat "$DIR/$1"
    else return 1; fi
}
step() { n=$(cat "$DIR/step.$1" 2>/dev/null || echo 0); echo $((n + 1)) > "$DIR/step.$1"; }
case "$*" in
  *"get nodes"*) printf '%b' "$NODES" ;;
  *"get ds weave-net -o jsonpath={.metadata.generation} {.status.observedGeneration}"*)
    printf '%s' "${WEAVE_GENERATIONS:-2 2}" ;;
  *"get deploy coredns -o jsonpath={.metadata.generation} {.status.observedGeneration}"*)
    printf '%s' "${COREDNS_GENERATIONS:-1 1}" ;;
  *"get ds weave-net"*) printf '%s' "$WEAVE" ;;
  *"get deploy coredns"*) printf '%s' "$COREDNS" ;;
  *"get pods -l name=weave-net -o jsonpath={range .items[*]}pod "*)
    step containers.weave-net; serve containers.weave-net containers.weave-net ;;
  *"get pods -l k8s-app=kube-dns -o jsonpath={range .items[*]}pod "*)
    step containers.coredns; serve containers.coredns containers.coredns ;;
  *"get pods -l name=weave-net"*) printf '%b' "$WEAVE_PODS" ;;
  *"get pods -l k8s-app=kube-dns -o jsonpath={range .items[*]}{.metadata.name} {.status.phase}"*)
    printf '%b' "$DNS_PODS" ;;
  *"get pod "*"terminated.message}"*) printf '%s' "$MESSAGE" ;;
  *" logs "*)
    for a; do case "$prev" in -c) c=$a ;; esac; prev=$a; pod=$a; done
    case "$*" in *--previous*) name=logs-previous.$pod.$c ;; *) name=logs.$pod.$c ;; esac
    case "$pod" in weave*) query=containers.weave-net ;; *) query=containers.coredns ;; esac
    serve "$name" "$query" || {
      printf '%s "%s" in pod "%s" not found\\n' \\
        'Error from server (BadRequest): previous terminated container' "$c" "$pod" >&2
      exit 1; } ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def run(tmp_path: Path):
    script = tmp_path / "cluster-ready.sh"
    script.write_text(
        render("templates/kubernetes/cluster-ready.sh.j2", {"crash_loops": known_crash_loops()})
    )
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    served = tmp_path / "served"
    served.mkdir()

    def run(
        nodes: str,
        weave: str,
        coredns: str,
        *names: str,
        weave_pods: str = "",
        files: dict[str, str] | None = None,
        message: str = "",
        wait: int = 0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        for name, text in (files or {}).items():
            (served / name).write_text(text)
        env = {
            "WEAVE_PODS": weave_pods,
            "DNS_PODS": "",
            **os.environ,
            "PATH": f"{kubectl.parent}:{os.environ['PATH']}",
            "NODES": nodes,
            "WEAVE": weave,
            "COREDNS": coredns,
            "MESSAGE": message,
            "DIR": str(served),
            "K8SLAB_READY_POLL_S": "0.1",
            **(env or {}),
        }
        return subprocess.run(
            ["sh", str(script), str(wait), *names],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


NAMES = ("master", "slave1", "slave2")


def test_ready_cluster(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "2 2", *NAMES)
    assert r.returncode == 0
    assert r.stdout.strip() == "cluster ready: 3 nodes Ready, weave-net and coredns running"


def test_names_every_thing_that_is_not_ready(run):
    r = run(r"master=True\nslave1=False\n", "2 1", "2 0", *NAMES)
    assert r.returncode == 1
    assert r.stdout.strip().splitlines() == [
        "node slave1 is not Ready",
        "node slave2 has not joined",
        "weave-net: 1 of 3 pods ready",
        "coredns: 0 of 2 replicas ready",
    ]


# The script's jsonpath over the weave-net pods (name, node, each container's ready, waiting
# reasons): slave2's weave container crash-loops, weave-npc runs.
WEAVE_PODS = (
    r"weave-net-4mm98 master true true \n"
    r"weave-net-dx5h9 slave2 false true CrashLoopBackOff\n"
    r"weave-net-g4fr2 slave1 true true \n"
)


def test_names_the_weave_pod_that_is_not_ready_and_its_node(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 2", "2 2", *NAMES, weave_pods=WEAVE_PODS)
    assert r.returncode == 1
    assert r.stdout.strip() == (
        "weave-net: 2 of 3 pods ready (weave-net-dx5h9 on slave2: CrashLoopBackOff)"
    )


def test_a_node_added_to_the_topology_is_waited_for(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "2 2", *NAMES, "slave3")
    assert r.returncode == 1
    assert "node slave3 has not joined" in r.stdout
    assert "weave-net: 3 of 4 pods ready" in r.stdout


def test_no_coredns_yet_is_not_ready(run):
    r = run(r"master=True\nslave1=True\nslave2=True\n", "3 3", "", *NAMES)
    assert r.returncode == 1
    assert r.stdout.strip() == "coredns: 0 of ? replicas ready"


def test_nodes_under_disk_pressure_and_the_pods_they_keep_off_are_named(run):
    """Recorded on a real cluster whose disk was under kubelet's threshold: every node Ready,
    CoreDNS Pending; the wait said only "0 of 2 replicas ready" before."""

    def rec(name: str) -> str:
        return (Path(__file__).parent / "fixtures" / "disk-pressure" / name).read_text()

    nodes = rec("nodes.txt").replace("\n", r"\n")
    dns = rec("pods.coredns-scheduled.txt").replace("\n", r"\n")
    r = run(nodes, rec("ds.txt"), rec("coredns.txt"), *NAMES, env={"DNS_PODS": dns})
    assert r.returncode == 1
    lines = r.stdout.strip().splitlines()
    assert lines[:3] == [
        f"node {n}: DiskPressure, so its kubelet keeps new pods off it; its disk is nearly "
        "full: free space on it (kubelet wants 15% free where Docker keeps images, 10% on /)"
        for n in NAMES
    ]
    assert lines[3] == "coredns: 0 of 2 replicas ready"
    assert lines[4].startswith(
        "coredns-7d764666f9-4g45s is not scheduled: 0/3 nodes are available: "
        "3 node(s) had untolerated taint(s)."
    )
    assert len(lines) == 6


# --- Crash loops: a container that keeps dying is named with why, and the wait stops early.


def recorded(name: str) -> str:
    return (CRASH / name).read_text()


NODES_UP = recorded("nodes.txt").replace("\n", r"\n")
FATA = (
    'FATA: 2026/12/05 00:36:52.910668 Existing bridge type "bridge" is different than '
    "requested \"bridged_fastdp\". Please do 'weave reset' and try again"
)
WEAVE_FIX = (
    "fix: this node's kernel cannot do Weave's fastdp (no openvswitch: containers, some cloud "
    "kernels), so Weave made a plain bridge on its first start and refuses it on every "
    "restart; set `weave_fastdp: false` in the topology (`labctl machines` writes it), then "
    "`labctl reset` and deploy again (https://github.com/weaveworks/weave/issues/3634)"
)


def weave_crash(**files: str) -> dict:
    """What the recorded cluster answered: slave2's weave in CrashLoopBackOff, 4 restarts."""
    return {
        "containers.weave-net": recorded("containers.weave-net.txt"),
        "logs-previous.weave-net-4psp4.weave": recorded("logs-previous.weave-net-4psp4.weave.txt"),
        **files,
    }


def crash_run(run, files: dict, wait: int = 0, **kw) -> subprocess.CompletedProcess:
    return run(
        NODES_UP,
        recorded("ds.txt"),
        recorded("coredns.txt"),
        *NAMES,
        weave_pods=recorded("pods.weave-net.txt").replace("\n", r"\n"),
        files=files,
        wait=wait,
        **kw,
    )


def test_a_crash_looping_pod_is_named_with_its_restarts_last_line_and_known_fix(run):
    r = crash_run(run, weave_crash())
    assert r.returncode == 1
    # master's weave restarted once too (its first start could not reach the API server) and
    # is ready now: not a crash loop.
    assert r.stdout.splitlines() == [
        "weave-net: 2 of 3 pods ready (weave-net-4psp4 on slave2: CrashLoopBackOff)",
        "weave-net-4psp4 on slave2: container weave restarted 4 times (CrashLoopBackOff); "
        f"its last start ended: {FATA}",
        WEAVE_FIX,
    ]


def test_the_wait_gives_up_at_once_on_a_known_cause_at_3_restarts_or_more(run):
    started = time.monotonic()
    r = crash_run(run, weave_crash(), wait=600)
    assert r.returncode == 1
    assert time.monotonic() - started < 30
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        "weave-net: 2 of 3 pods ready (weave-net-4psp4 on slave2: CrashLoopBackOff)",
        "weave-net-4psp4 on slave2: container weave restarted 4 times (CrashLoopBackOff); "
        f"its last start ended: {FATA}",
        WEAVE_FIX,
    ]
    assert lines[3].startswith("gave up after ")
    assert lines[3].endswith(
        " s of 600: weave-net-4psp4 on slave2 (container weave) fails the same way at every "
        "start, 4 restarts; waiting longer will not help"
    )
    assert len(lines) == 4


def restarts(text: str, pod: str, container: str, count: int) -> str:
    """The recorded query's line of that container, with another restart count (an edit)."""
    out, current = [], None
    for line in text.splitlines(keepends=True):
        f = line.split(" ")
        if f[0] == "containerStatuses" and f[1] == container and current == pod:
            f[3] = str(count)
        if f[0] == "pod":
            current = f[1]
        out.append(" ".join(f))
    return "".join(out)


def fata_at(second: int) -> str:
    """The recorded log, its FATA line stamped at another second (each start has its own)."""
    log = recorded("logs-previous.weave-net-4psp4.weave.txt")
    return log.replace("00:36:52.910668", f"00:37:{second:02d}.123456")


def test_the_wait_follows_a_fresh_crash_loop_and_gives_up_at_the_third_restart(run):
    # The recorded moment edited back in time: restarts 1, 2, then 3, each start ending with
    # the known line at its own timestamp.
    containers = recorded("containers.weave-net.txt")
    files = {"containers.weave-net": containers}
    for step, count in ((1, 1), (3, 2), (5, 3)):
        files[f"containers.weave-net.{step}"] = restarts(
            containers, "weave-net-4psp4", "weave", count
        )
        files[f"logs-previous.weave-net-4psp4.weave.{step}"] = fata_at(10 * step)
    r = crash_run(run, files, wait=600)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    waiting = [line for line in lines if line.startswith("waiting: ")]
    assert len(waiting) == 4  # steps 1 to 4: one and two restarts; at step 5 it stops
    assert (
        "container weave restarted 1 time (CrashLoopBackOff); its last start ended: FATA: "
        "2026/12/05 00:37:10.123456 Existing bridge type" in waiting[0]
    )
    assert WEAVE_FIX in waiting[0]
    assert "restarted 3 times" in lines[-3]
    assert "00:37:50.123456 Existing bridge type" in lines[-3]
    assert lines[-2] == WEAVE_FIX
    assert "fails the same way at every start, 3 restarts" in lines[-1]


def test_the_wait_gives_up_on_an_unknown_line_seen_at_3_restarts_without_a_fix(run):
    # CoreDNS's loop detection (its documented message; numbers differ per start) edited into
    # the recorded query: both replicas crash-loop, seen at restarts 3, 4 and 5.
    loop = (
        '[FATAL] plugin/loop: Loop (127.0.0.1:{port} -> :53) detected for zone ".", see '
        'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO {n}.{m}."\n'
    )
    dns = recorded("containers.coredns.txt").replace(
        "coredns true 0 last= now= ", "coredns false {count} last=1 now= CrashLoopBackOff"
    )
    files = {}
    for step, count in ((1, 3), (2, 4), (3, 5)):
        files[f"containers.coredns.{step}"] = dns.format(count=count)
        for pod in ("coredns-589f44dc88-ffdb6", "coredns-589f44dc88-pmk2f"):
            files[f"logs-previous.{pod}.coredns.{step}"] = loop.format(
                port=40000 + step, n=7 * step, m=11 * step
            )
    r = run(NODES_UP, "3 3", "2 0", *NAMES, files=files, wait=600)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("waiting: coredns: 0 of 2 replicas ready;")
    assert (
        "coredns-589f44dc88-ffdb6 on master: container coredns restarted 3 times "
        "(CrashLoopBackOff); its last start ended: [FATAL] plugin/loop: Loop (127.0.0.1:40001"
        in lines[0]
    )
    assert "fix:" not in r.stdout
    assert lines[-1].startswith("gave up after ")
    assert (
        "coredns-589f44dc88-pmk2f on master (container coredns) fails the same way at every "
        "start, 5 restarts" in lines[-1]
    )


def test_a_daemonset_not_yet_rolled_to_its_new_spec_is_not_given_up_on(run):
    # Right after the deploy applies a changed weave-net (weave_fastdp), the old pods' crash
    # loop says nothing of the new spec: the wait names it but waits for the rollout.
    r = crash_run(run, weave_crash(), wait=2, env={"WEAVE_GENERATIONS": "3 2"})
    assert r.returncode == 1
    assert "gave up" not in r.stdout
    assert f"its last start ended: {FATA}" in r.stdout.splitlines()[-2]


def test_a_pod_being_deleted_is_not_a_crash_loop(run):
    containers = recorded("containers.weave-net.txt").replace(
        "pod weave-net-4psp4 slave2", "pod weave-net-4psp4 slave2 2026-12-05T00:37:00Z"
    )
    assert containers != recorded("containers.weave-net.txt")
    r = crash_run(run, weave_crash(**{"containers.weave-net": containers}), wait=2)
    assert r.returncode == 1
    assert "weave-net: 2 of 3 pods ready" in r.stdout
    assert "restarted" not in r.stdout
    assert "gave up" not in r.stdout


def test_a_crash_loop_that_ends_differently_each_time_waits_the_full_time(run):
    containers = recorded("containers.weave-net.txt")
    files = {}
    for step in range(1, 6):
        files[f"containers.weave-net.{step}"] = restarts(
            containers, "weave-net-4psp4", "weave", 2 + step
        )
        files[f"logs-previous.weave-net-4psp4.weave.{step}"] = (
            f"FATA: failure number {'x' * step}\n"
        )
    r = crash_run(run, files, wait=2)
    assert r.returncode == 1
    assert "gave up" not in r.stdout
    assert r.stdout.splitlines()[-1] == (
        "weave-net-4psp4 on slave2: container weave restarted 7 times (CrashLoopBackOff); "
        "its last start ended: FATA: failure number xxxxx"
    )


def test_a_container_dead_this_second_is_read_from_its_own_log(run):
    # Between a death and the back-off: `now=1`, no waiting reason, and `--previous` would
    # be the start before (kubectl then said "unable to retrieve container logs").
    r = crash_run(
        run,
        {
            "containers.weave-net": recorded("containers.weave-net.now-dead.txt"),
            "logs.weave-net-4psp4.weave": recorded("logs.weave-net-4psp4.weave.now-dead.txt"),
        },
    )
    assert r.stdout.splitlines()[1] == (
        "weave-net-4psp4 on slave2: container weave restarted 5 times; its last start ended: "
        + FATA.replace("00:36:52.910668", "00:38:22.925414")
    )


def test_a_termination_message_comes_before_the_log(run):
    r = crash_run(run, weave_crash(), message="first line\nlast words of the container\n\n")
    assert r.stdout.splitlines()[1].endswith("its last start ended: last words of the container")
    assert "fix:" not in r.stdout


def test_a_crash_loop_with_no_log_left_is_still_named(run):
    r = crash_run(run, {"containers.weave-net": recorded("containers.weave-net.txt")}, wait=0)
    assert r.returncode == 1
    assert (
        "weave-net-4psp4 on slave2: container weave restarted 4 times (CrashLoopBackOff); "
        "its last start ended: (no log left)"
    ) in r.stdout


def test_every_known_crash_loop_renders_into_the_script_quoted():
    script = render(
        "templates/kubernetes/cluster-ready.sh.j2", {"crash_loops": known_crash_loops()}
    )
    for c in known_crash_loops():
        assert c["match"].replace("'", "'\\''") in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
