"""`labctl verify --replay` on bundles built from the course's printed outputs (passing) and
edited copies of them (failing): the real CLI, the real parsers and kinds, no SSH."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from conftest import MADE_HERE, SEED, write_bundle

from k8slab.cli import main
from k8slab.ssh import Result


def verify(bundle_dir, *args):
    result = CliRunner().invoke(main, ["verify", "--replay", str(bundle_dir), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def statuses(result) -> dict[tuple[str, str], dict]:
    data = json.loads(result.output)
    return {(c["id"], c["host"]): c for c in data["checks"]}


@pytest.fixture
def passing(tmp_path):
    return write_bundle(tmp_path / "bundle")


def test_course_outputs_pass_every_check(passing):
    result = verify(passing, "--format", "json")
    assert result.exit_code == 0, result.output
    checks = statuses(result)
    assert len(checks) == 31
    assert {c["status"] for c in checks.values()} == {"pass"}
    data = json.loads(result.output)
    assert data["totals"] == {"pass": 31, "fail": 0, "skip": 0, "error": 0, "checks": 31}
    assert data["replayed"] is True


def test_evidence_is_the_course_line_that_proved_it(passing):
    checks = statuses(verify(passing, "--format", "json"))
    assert "k8s_POD_" in checks[("net.pause", "master")]["evidence"]
    assert checks[("net.pause", "master")]["evidence"].startswith("6 pods, one pause each")
    assert "4229/weaver" in checks[("net.weave-ports", "master")]["evidence"]
    assert (
        "10.0.2.15:6783 10.0.2.4:37053 ESTABLISHED"
        in (checks[("net.weave-peers", "master")]["evidence"])
    )
    assert "--ipalloc-range=10.32.0.0/12" in checks[("net.weave-ipalloc", "master")]["evidence"]
    assert "-j KUBE-SVC-" in checks[("net.svc-iptables", "slave1")]["evidence"]
    assert checks[("dns.curl", "master")]["evidence"].startswith("Hello World v1 | 10.104.37.211")
    assert checks[("storage.emptydir-serves", "master")]["evidence"] == "RUNNING loop seq 48"
    assert checks[("storage.emptydir-counts", "master")]["evidence"] == "48 -> 49"
    assert checks[("storage.hostpath-forward", "master")]["evidence"] == (
        "printed slave1; volume-hostpath runs on slave1"
    )
    assert all(c["hint"] == "" for c in checks.values())


def _drop(text: str, needle: str) -> str:
    kept = [line for line in text.splitlines(keepends=True) if needle not in line]
    assert len(kept) < len(text.splitlines()), f"{needle!r} not in the fixture"
    return "".join(kept)


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} not in the fixture"
    return text.replace(old, new)


def _seed(name: str) -> str:
    return (SEED / name).read_text(encoding="utf-8")


# A case: ({(host, check id, run name): the course's output -> the broken one}, the (check,
# host) that fails, a part of its evidence)
BROKEN = {
    "pause sandbox gone": (
        {("master", "net.pause", "containers"): lambda o: _drop(o, "k8s_POD_etcd-master_")},
        ("net.pause", "master"),
        "kube-system/etcd-master: 0 running k8s_POD_etcd-master_kube-system_* containers",
    ),
    "scheduler crashing": (
        {
            ("master", "net.pause", "pods"): lambda o: _replace(
                o,
                "kube-scheduler-master            1/1     Running",
                "kube-scheduler-master            0/1     CrashLoopBackOff",
            )
        },
        ("net.control-plane-pods", "master"),
        "kube-scheduler-master 0/1 CrashLoopBackOff 8 25d",
    ),
    "weave pod not ready": (
        {
            ("master", "net.weave-ds", "ds"): lambda o: _replace(
                o,
                "3         3         3       3            3",
                "3         3         2       3            2",
            )
        },
        ("net.weave-ds", "master"),
        "weave-net 3 3 2 3 2",
    ),
    "weave status port closed": (
        {("master", "net.weave-ports", "sockets"): lambda o: _drop(o, "127.0.0.1:6784")},
        ("net.weave-ports", "master"),
        "no weaver listening on 127.0.0.1:6784",
    ),
    "weave peer unreachable": (
        {("master", "net.weave-ports", "sockets"): lambda o: _drop(o, "10.0.2.4:37053")},
        ("net.weave-peers", "master"),
        "no weaver connection on 6783 to slave1 (10.0.2.4)",
    ),
    "ipalloc differs from podSubnet": (
        {
            ("master", "net.weave-ipalloc", "kubeadm"): lambda o: _replace(
                o, "podSubnet: 10.32.0.0/12", "podSubnet: 10.244.0.0/16"
            )
        },
        ("net.weave-ipalloc", "master"),
        "--ipalloc-range=10.32.0.0/12 vs podSubnet: 10.244.0.0/16",
    ),
    "kube-dns udp rule missing on slave2": (
        {
            ("slave2", "net.svc-iptables", "nat"): lambda o: _drop(
                o, "--dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU"
            )
        },
        ("net.svc-iptables", "slave2"),
        "no KUBE-SERVICES jump for kube-system/kube-dns 10.96.0.10:53/UDP",
    ),
    "simple-app-svc created but no rule": (
        {
            ("master", "net.svc-iptables", "services"): lambda o: (
                o
                + "gurumee   simple-app-svc   ClusterIP   10.104.37.211   <none>   8080/TCP   5m\n"
            )
        },
        ("net.svc-iptables", "slave1"),
        "no KUBE-SERVICES jump for gurumee/simple-app-svc 10.104.37.211:8080/TCP",
    ),
    "kube-dns without endpoints": (
        {("master", "dns.coredns", "endpoints"): lambda o: ""},
        ("dns.coredns", "master"),
        "0 ready endpoints",
    ),
    "name does not resolve": (
        {
            ("master", "dns.curl", "resolve"): lambda o: Result("", "", 2),
            ("master", "dns.curl", "curl"): lambda o: Result(
                "", (MADE_HERE / "curl-6-could-not-resolve.err").read_text(), 6
            ),
        },
        ("dns.curl", "master"),
        "curl: (6) Could not resolve host: simple-app-svc.gurumee",
    ),
    "counter stuck": (
        {("master", "storage.emptydir-counts", "reads"): lambda o: "RUNNING loop seq 48\n"},
        ("storage.emptydir-counts", "master"),
        "read only 48; the value did not change in time",
    ),
    "hostpath file of another node": (
        {("slave2", "storage.hostpath-file", "file"): lambda o: "slave1\n"},
        ("storage.hostpath-file", "slave2"),
        "slave1 (expected slave2)",
    ),
    "hostpath file missing": (
        {
            ("slave1", "storage.hostpath-file", "file"): lambda o: Result(
                "", "cat: /var/htdocs/index.html: No such file or directory\n", 1
            )
        },
        ("storage.hostpath-file", "slave1"),
        "exited 1: cat: /var/htdocs/index.html: No such file or directory",
    ),
    "port-forward prints another node": (
        {("master", "storage.hostpath-forward", "forward"): lambda o: "slave2\n"},
        ("storage.hostpath-forward", "master"),
        "printed slave2; volume-hostpath runs on slave1",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_course_output_fails_its_check_with_evidence_and_hint(tmp_path, case):
    from conftest import course_outputs

    edits, failing, evidence = BROKEN[case]
    original = course_outputs()
    bundle_dir = write_bundle(tmp_path / "b", {k: f(original[k]) for k, f in edits.items()})
    result = verify(bundle_dir, "--format", "json")
    assert result.exit_code == 1, result.output
    checks = statuses(result)
    failed = {k for k, c in checks.items() if c["status"] == "fail"}
    assert failing in failed
    assert evidence in checks[failing]["evidence"]
    assert checks[failing]["hint"]
    # Everything the edit did not touch still passes (or fails for the same cause).
    assert sum(c["status"] == "pass" for c in checks.values()) >= 31 - 4


def test_a_failed_prerequisite_skips_the_checks_after_it(tmp_path):
    bundle_dir = write_bundle(
        tmp_path / "b",
        {
            ("master", "dns.simple-app", "deploy"): (
                "NAME             READY   UP-TO-DATE   AVAILABLE   AGE\n"
                "simple-app-dep   2/3     3            2           12m\n"
            )
        },
    )
    checks = statuses(verify(bundle_dir, "--format", "json"))
    assert checks[("dns.simple-app", "master")]["status"] == "fail"
    assert checks[("dns.curl", "master")]["status"] == "skip"
    assert checks[("dns.curl", "master")]["evidence"] == (
        "dns.simple-app did not pass (fail on master: simple-app-dep 2/3 3 2 12m)"
    )


def test_only_selects_checks_and_groups(passing):
    checks = statuses(
        verify(passing, "--format", "json", "--only", "storage", "--only", "dns.curl")
    )
    assert {k[0] for k in checks} == {
        "dns.curl",
        "storage.emptydir-ready",
        "storage.emptydir-serves",
        "storage.emptydir-counts",
        "storage.hostpath-file",
        "storage.hostpath-ready",
        "storage.hostpath-forward",
    }


def test_a_command_missing_from_the_bundle_is_an_error_row(tmp_path):
    bundle_dir = write_bundle(tmp_path / "b", {("slave1", "net.svc-iptables", "nat"): None})
    result = verify(bundle_dir, "--format", "json", "--only", "net.svc-iptables")
    assert result.exit_code == 1
    row = statuses(result)[("net.svc-iptables", "slave1")]
    assert row["status"] == "error"
    assert row["evidence"] == "slave1: not in the bundle: `sudo iptables -S -t nat`"


def test_table_shows_hint_under_a_failure_and_totals(tmp_path):
    bundle_dir = write_bundle(
        tmp_path / "b", {("slave2", "storage.hostpath-file", "file"): "slave1\n"}
    )
    result = verify(bundle_dir, "--only", "storage.hostpath-file")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split() == ["CHECK", "HOST", "STATUS", "EVIDENCE"]
    fail = next(i for i, line in enumerate(lines) if "FAIL" in line)
    assert lines[fail].split()[:3] == ["storage.hostpath-file", "slave2", "FAIL"]
    assert lines[fail + 1].strip().startswith("hint: `labctl apply ch09 --only hostpath`")
    totals = next(i for i, line in enumerate(lines) if line.startswith("ch09: 2 results"))
    summary = " ".join(lines[totals:])
    assert summary.startswith("ch09: 2 results - 1 passed, 1 failed, 0 skipped, 0 errors in")
    assert summary.endswith("(replayed from a bundle) failed: storage.hostpath-file on slave2")


def test_junit_has_a_testcase_per_check_and_host(tmp_path):
    bundle_dir = write_bundle(
        tmp_path / "b", {("master", "storage.hostpath-forward", "forward"): "slave2\n"}
    )
    result = verify(bundle_dir, "--format", "junit")
    assert result.exit_code == 1
    suite = ET.fromstring(result.output.split("\n", 1)[1])
    assert suite.get("tests") == "31" and suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["storage.hostpath-forward@master"]
    assert "slave2" in failed[0].find("failure").get("message")
    assert failed[0].find("failure").text.startswith("hint: ")


def test_a_modern_cluster_output_parses_too(tmp_path):
    """kubectl >= 1.22 prints RESTARTS as "8 (3m ago)"; docker shows registry.k8s.io/pause."""
    from conftest import course_outputs

    o = course_outputs()
    pods = o[("master", "net.pause", "pods")].replace(
        "Running   8          25d", "Running   8 (3m ago)   25d"
    )
    ps = o[("master", "net.pause", "containers")].replace(
        "k8s.gcr.io/pause:3.4.1", "registry.k8s.io/pause:3.10"
    )
    bundle_dir = write_bundle(
        tmp_path / "b",
        {("master", "net.pause", "pods"): pods, ("master", "net.pause", "containers"): ps},
    )
    checks = statuses(verify(bundle_dir, "--format", "json", "--only", "net"))
    assert checks[("net.pause", "master")]["status"] == "pass"
    assert checks[("net.control-plane-pods", "master")]["status"] == "pass"
    assert "8 (3m ago)" in checks[("net.control-plane-pods", "master")]["evidence"]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d.mkdir(), "bundle.json not found: not a bundle written by --record"),
        (
            lambda d: (d.mkdir(), (d / "bundle.json").write_text('{"format": "other"}')),
            "format 'other', expected k8s-lab-bundle/1",
        ),
    ],
)
def test_not_a_bundle_is_a_usage_error(tmp_path, setup, message):
    setup(tmp_path / "b")
    result = verify(tmp_path / "b")
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_seed_fixtures_are_used(passing):
    """Guard: the passing bundle really contains the course's printed lines."""
    recorded = "".join(p.read_text() for p in (passing / "commands").glob("*.out"))
    for name in ("iptables-S-nat-grep-10.96.master.txt", "netstat-antp-grep-weave.master.txt"):
        assert _seed(name) in recorded
