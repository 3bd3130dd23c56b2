"""Bad input that needs the real hosts: sudo that wants a password (a temporary user on
slave2 in the sudo group, which Debian makes ask for a password), and an address on the
bed's bridge that no host answers."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.testbed

LABCTL = str(Path(sys.executable).with_name("labctl"))
USER = "k8slabpw"


@pytest.fixture
def password_sudo_user(all_up):
    pub = Path(f"{all_up.key}.pub").read_text().strip()
    rc, _, err = all_up.ssh(
        "slave2",
        f"id {USER} >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo {USER};"
        f" install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh;"
        f" echo '{pub}' > /home/{USER}/.ssh/authorized_keys;"
        f" chown {USER}: /home/{USER}/.ssh/authorized_keys",
    )
    assert rc == 0, err
    yield all_up
    all_up.ssh("slave2", f"userdel -r {USER} 2>/dev/null; true")


@pytest.mark.parametrize("command", ["doctor", "reset --yes"])
def test_sudo_wanting_a_password_is_one_line(password_sudo_user, tmp_path, command):
    testbed = password_sudo_user
    data = yaml.safe_load(Path(testbed.config).read_text())
    data["hosts"][2]["ssh_user"] = USER
    config = tmp_path / "lab.yaml"
    config.write_text(yaml.safe_dump(data))
    # a leftover on master proves reset stops before changing any host
    rc, _, err = testbed.ssh("master", "iptables -N KUBE-PROBE")
    assert rc == 0, err
    before = testbed.ssh("slave2", "iptables -S; ls /var/lib")[1]
    r = subprocess.run(
        [
            LABCTL,
            "--config",
            str(config),
            "--known-hosts",
            str(testbed.known_hosts),
            *command.split(),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == (
        f"Error: slave2 (10.0.2.5:22): sudo wants a password; allow NOPASSWD sudo for {USER} "
        "or set $LAB_SUDO_PASSWORD"
    )
    try:
        assert testbed.ssh("slave2", "iptables -S; ls /var/lib")[1] == before
        assert "-N KUBE-PROBE" in testbed.ssh("master", "iptables -S")[1]
    finally:
        testbed.ssh("master", "iptables -X KUBE-PROBE")


def test_an_unreachable_host_is_one_line_within_the_connect_timeout(all_up, tmp_path):
    # 10.0.2.99 is on the bed's bridge and no host has it: the SYN goes unanswered.
    topo = yaml.safe_load(Path(all_up.config).read_text())
    topo["hosts"] = [topo["hosts"][0], {**topo["hosts"][1], "node_ip": "10.0.2.99"}]
    config = tmp_path / "lab.yaml"
    config.write_text(yaml.safe_dump(topo))
    started = time.monotonic()
    result = subprocess.run(
        [LABCTL, "--config", str(config), "--known-hosts", str(all_up.known_hosts), "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 2
    # master is still checked (its rows are on stdout); slave1 is named once it gives up
    *waiting, line = result.stderr.strip().splitlines()
    assert waiting in ([], ["waiting for slave1 (10.0.2.99:22) to answer SSH (up to 10 s) ..."])
    # the kernel either gives up on ARP (no route to host) or the SYN goes unanswered
    assert re.match(
        r"Error: slave1 \(10\.0\.2\.99:22\): cannot connect: (no answer within 10 s|"
        r"no host answers at 10\.0\.2\.99 \(no route to host\)); is the VM running\?",
        line,
    ), line
    assert re.search(r"^os\s+master\s+PASS\s", result.stdout, re.M), result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert seconds < 30
