"""`labctl machines` on the bed's own cluster (`testbed`), through the real CLI: what it
shows, and what it refuses without changing anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

LABCTL = str(Path(sys.executable).with_name("labctl"))


def machines(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LABCTL, "machines", *args], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_status_lists_the_bed_as_running(all_up):
    r = machines("status", "--cluster", "testbed", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["network"], data["offline"], data["bridge"]) == ("10.0.2.0/24", True, True)
    rows = {m["name"]: m for m in data["machines"]}
    for name in all_up.hosts:
        assert (rows[name]["state"], rows[name]["ssh"]) == ("running", "ok"), rows[name]
        assert rows[name]["memory"] > 0
    assert rows["slave3"]["state"] in ("not made", "stopped", "running")


def test_ssh_runs_a_command_as_the_topology_user(all_up):
    r = machines("ssh", "--cluster", "testbed", "slave1", "--", "id -un; sudo -n id -u")
    assert (r.returncode, r.stdout.split()) == (0, ["gurumee", "0"]), r.stderr


def test_a_second_cluster_on_the_beds_subnet_is_refused_naming_it(testbed):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    r = machines("up")  # the default cluster: the course's 10.0.2.0/24, which the bed holds
    assert r.returncode == 2, r
    assert r.stderr == (
        "Error: network 10.0.2.0/24: cluster testbed's machines use it: labctl machines "
        "destroy --cluster testbed, or choose another --subnet\n"
    )
    assert not Path("/var/lib/k8s-lab/machines/default").exists()
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout == links


def test_an_unknown_machine_is_one_line(testbed):
    r = machines("ssh", "--cluster", "testbed", "slave9", "--", "true")
    assert r.returncode == 2
    assert r.stderr == (
        "Error: no machine 'slave9' in cluster testbed (machines: master, slave1, slave2, slave3)\n"
    )
