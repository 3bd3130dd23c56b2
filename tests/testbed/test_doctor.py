"""labctl doctor against the three real hosts of the test bed, run as a subprocess.

What the bed really is (and the assertions say so): Debian 12 containers (systemd-nspawn)
sharing this machine's kernel, which mounts cgroup v1; the topology `labctl machines` writes
allows it (`allow_cgroup_v1`), so `cgroup-v2` passes with a warning. They reach no download
source (offline), so `sources` FAILS: a true finding. Containers have no
/sys/class/dmi/id/product_uuid, so that check passes with a warning. Everything else the bed
satisfies. Then hosts are made bad on purpose (duplicate hostname, swap in fstab, a stopped
host) and restored.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

LABCTL = str(Path(sys.executable).with_name("labctl"))
SWAP_LINE = "/k8slab-doctor-test.swap none swap sw 0 0"


def doctor(
    testbed, *args: str, timeout: float = 120, columns: int = 80
) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [LABCTL, "--known-hosts", str(testbed.known_hosts), "doctor", *args],
        env={**testbed.env(), "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in r.stdout + r.stderr
    return r


def by_check(r: subprocess.CompletedProcess) -> dict[tuple[str, str], dict]:
    return {(c["id"], c["host"]): c for c in json.loads(r.stdout)["checks"]}


def test_good_bed_passes_all_but_sources(all_up):
    r = doctor(all_up, "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    results = by_check(r)
    failed = sorted(k for k, c in results.items() if c["status"] != "pass")
    assert failed == [("sources", h) for h in ("master", "slave1", "slave2")]
    # True findings: the bed has no DNS and no route out (it reaches only Debian's mirror).
    src = results[("sources", "slave2")]
    assert src["evidence"].startswith(
        "cannot reach: 000 https://pkgs.k8s.io/core:/stable:/v1.36/deb/InRelease: no answer "
        "(curl: (6) Could not resolve host: pkgs.k8s.io); "
    )
    assert src["evidence"].endswith(
        "000 https://registry-1.docker.io/v2/: no answer (curl: (6) Could not resolve host: "
        "registry-1.docker.io)"
    )
    assert "getent hosts pkgs.k8s.io" in src["hint"]
    cg = results[("cgroup-v2", "slave1")]["evidence"]
    assert cg.startswith("warning: cgroup v1, allowed by allow_cgroup_v1"), cg
    assert results[("os", "master")]["evidence"] == "debian 12"
    # the bed's hostnames are testbed-<host> until the deploy's host prep renames them
    name = all_up.ssh("slave2", "hostname")[1].strip()
    assert results[("unique.hostname", "slave2")]["evidence"] == (
        f"hostname {name} (unique among 3 hosts)"
    )
    assert results[("unique.product-uuid", "master")]["evidence"] == (
        "warning: no product_uuid on master: cannot compare"
    )
    assert results[("node-ip", "slave1")]["evidence"].endswith("10.0.2.4 on host0 (10.0.2.4/24)")
    assert results[("kernel-modules", "slave2")]["evidence"].startswith("no missing module in ")
    assert results[("clock", "master")]["evidence"].startswith("clock in step")


def test_skip_cgroup_v2_and_sources_exits_0_and_table_counts_warnings(all_up):
    r = doctor(all_up, "--skip", "cgroup-v2", "--skip", "sources")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cgroup-v2" not in r.stdout and "sources" not in r.stdout
    assert "preflight: 49 results - 49 passed, 0 failed" in r.stdout
    # product_uuid on each host, plus ip_forward=0 on hosts the deploy has not prepared
    forward_off = sum(
        all_up.ssh(h, "cat /proc/sys/net/ipv4/ip_forward")[1].strip() == "0" for h in all_up.hosts
    )
    assert f"{3 + forward_off} of the passes carry a warning" in r.stdout


def test_duplicate_hostname_fails_on_both_hosts(all_up):
    original = all_up.ssh("slave2", "hostname")[1].strip()
    taken = all_up.ssh("slave1", "hostname")[1].strip()
    try:
        rc, _, err = all_up.ssh("slave2", f"hostname {taken}")
        assert rc == 0, err
        # wide: a bare host's name (testbed-slave1, before the deploy renames it) fits
        r = doctor(all_up, "--skip", "cgroup-v2", columns=200)
        assert r.returncode == 1, r.stdout
        lines = r.stdout.splitlines()
        for host, other in (("slave1", "slave2"), ("slave2", "slave1")):
            at = next(i for i, x in enumerate(lines) if x.split()[:2] == ["unique.hostname", host])
            assert lines[at].split()[2] == "FAIL"
            assert f"hostname {taken} is also that of {other}" in lines[at]
            assert "hint: kubeadm names nodes after their hostname" in lines[at + 1]
        assert "unique.hostname       master  PASS" in r.stdout
    finally:
        all_up.ssh("slave2", f"hostname {original}")
    assert all_up.ssh("slave2", "hostname")[1].strip() == original


def test_swap_line_in_fstab_fails(all_up):
    try:
        rc, _, err = all_up.ssh("slave1", f"echo '{SWAP_LINE}' >> /etc/fstab")
        assert rc == 0, err
        r = doctor(all_up, "--skip", "cgroup-v2", "--skip", "sources", "--format", "json")
        assert r.returncode == 1, r.stdout
        results = by_check(r)
        swap = results[("swap.fstab", "slave1")]
        assert swap["status"] == "fail"
        assert swap["evidence"] == f"swap in /etc/fstab: {SWAP_LINE}"
        assert "comment out the swap line" in swap["hint"]
        assert results[("swap.fstab", "slave2")]["status"] == "pass"
        assert [k for k, c in results.items() if c["status"] == "fail"] == [
            ("swap.fstab", "slave1")
        ]
    finally:
        all_up.ssh("slave1", "sed -i '\\|^/k8slab-doctor-test.swap |d' /etc/fstab")
    assert "k8slab-doctor-test" not in all_up.ssh("slave1", "cat /etc/fstab")[1]


def test_stopped_host_is_one_line_naming_it_and_the_others_are_checked(all_up):
    all_up.stop("slave2")
    try:
        r = doctor(all_up)
        assert r.returncode == 2
        lines = [x for x in r.stderr.strip().splitlines() if not x.startswith("waiting for ")]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("Error: slave2 (10.0.2.5:22): cannot connect")
        assert re.search(r"^os\s+master\s+PASS\s", r.stdout, re.M), r.stdout
        assert re.search(r"^os\s+slave2\s+ERROR\s", r.stdout, re.M), r.stdout
    finally:
        all_up.start("slave2")
        # sshd answers before the boot is over; sessions opened then can be refused
        all_up.ssh("slave2", "systemctl is-system-running --wait >/dev/null || true", timeout=180)


def test_record_then_replay_grades_the_same(all_up, tmp_path):
    live = doctor(all_up, "--skip", "clock", "--format", "json", "--record", str(tmp_path / "b"))
    replayed = doctor(all_up, "--replay", str(tmp_path / "b"), "--format", "json")
    assert live.returncode == replayed.returncode == 1
    strip = lambda r: {k: (c["status"], c["evidence"]) for k, c in by_check(r).items()}  # noqa: E731
    assert strip(live) == strip(replayed)
    assert json.loads(replayed.stdout)["replayed"] is True
