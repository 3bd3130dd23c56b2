"""labctl reset on the real test-bed hosts: KUBE-*/WEAVE-* chains, the rules jumping to them,
Weave's files and link go; every other rule (Docker's, an SSH ACCEPT) stays, byte for byte.
No Kubernetes runs on the bed, so the kube/weave leftovers are made by hand (kubeadm is not
installed there: reset says so and skips it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

LABCTL = str(Path(sys.executable).with_name("labctl"))
HOST = "slave1"
TABLES = ("filter", "nat")
SSH_RULE = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
LEFTOVERS = """
set -e
iptables -N KUBE-TEST
iptables -N WEAVE-TEST
iptables -A KUBE-TEST -j WEAVE-TEST
iptables -A WEAVE-TEST -s 10.32.0.0/12 -j ACCEPT
iptables -A INPUT -j KUBE-TEST
iptables -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-TEST
iptables -t nat -N KUBE-TEST-SERVICES
iptables -t nat -A KUBE-TEST-SERVICES -d 10.96.0.10/32 -p udp --dport 53 -j RETURN
iptables -t nat -A OUTPUT -j KUBE-TEST-SERVICES
mkdir -p /etc/cni/net.d /var/lib/weave
echo '{}' > /etc/cni/net.d/10-weave.conflist
echo state > /var/lib/weave/weave-netdata.db
"""


def labctl(testbed, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [LABCTL, "--known-hosts", str(testbed.known_hosts), *args],
        env=testbed.env(),
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in r.stdout + r.stderr
    return r


def rules(testbed, table: str) -> list[str]:
    rc, out, err = testbed.ssh(HOST, f"iptables -S -t {table}")
    assert rc == 0, err
    return out.splitlines()


@pytest.fixture
def leftovers(all_up):
    """slave1 with an SSH ACCEPT rule plus kube/weave chains, jumps, files and a link."""
    rc, out, err = all_up.ssh(HOST, f"iptables {SSH_RULE}")
    assert rc == 0, err
    before = {t: rules(all_up, t) for t in TABLES}
    rc, out, err = all_up.ssh(HOST, LEFTOVERS)
    assert rc == 0, err
    # no dummy driver in the bed's kernel: a veth pair stands in for weave and its vethwe-*
    rc, out, err = all_up.ssh(HOST, "ip link add vethwe-bridge type veth peer name weave")
    assert rc == 0, err
    yield all_up, before
    # whatever the test did: leave the host as it was
    all_up.ssh(
        HOST,
        "for t in filter nat; do iptables -S -t $t | grep -E '^-A (INPUT|FORWARD|OUTPUT) .*-j "
        "(KUBE|WEAVE)-' | sed 's/^-A/-D/' | while read -r r; do eval iptables -t $t $r; done;"
        " for c in $(iptables -S -t $t | awk '/^-N (KUBE|WEAVE)-/ {print $2}'); do"
        " iptables -t $t -F $c; done;"
        " for c in $(iptables -S -t $t | awk '/^-N (KUBE|WEAVE)-/ {print $2}'); do"
        " iptables -t $t -X $c; done; done;"
        f" iptables {SSH_RULE.replace('-A', '-D', 1)}; ip link del vethwe-bridge 2>/dev/null;"
        " rm -rf /var/lib/weave /etc/cni/net.d/10-weave.conflist; true",
    )


def test_reset_without_yes_or_terminal_refuses_and_changes_nothing(leftovers):
    testbed, _ = leftovers
    snapshot = {t: rules(testbed, t) for t in TABLES}
    r = labctl(testbed, "reset")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == (
        "Error: reset changes master, slave1, slave2: pass --yes (no terminal to ask on)"
    )
    assert {t: rules(testbed, t) for t in TABLES} == snapshot
    assert testbed.ssh(HOST, "test -d /var/lib/weave")[0] == 0


def test_reset_says_one_line_per_host_by_default(leftovers):
    testbed, _ = leftovers
    r = labctl(testbed, "reset", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x for x in r.stdout.splitlines() if x.startswith(f"{HOST}:")] == [
        f"{HOST}: kubeadm not installed: nothing to reset; removed 2 files, 1 link, "
        "3 iptables rules, 3 chains"
    ]


def test_reset_removes_only_kube_and_weave(leftovers):
    testbed, before = leftovers
    r = labctl(testbed, "reset", "--yes", "-v")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert f"{HOST}: kubeadm not installed: nothing to reset" in out
    assert f"{HOST}: removed /etc/cni/net.d/10-weave.conflist" in out
    assert f"{HOST}: removed /var/lib/weave" in out
    assert f"{HOST}: iptables -t filter -D INPUT -j KUBE-TEST" in out
    assert (
        f"{HOST}: iptables -t filter -D FORWARD -m comment --comment 'kubernetes forwarding "
        "rules' -j KUBE-TEST" in out
    )
    assert f"{HOST}: iptables -t filter: deleted chains KUBE-TEST, WEAVE-TEST" in out
    assert f"{HOST}: iptables -t nat: deleted chains KUBE-TEST-SERVICES" in out
    # deleting one end of the pair takes the other with it: whichever went first is named
    assert [x for x in out if "deleted link" in x] in (
        [f"{HOST}: deleted link weave"],
        [f"{HOST}: deleted link vethwe-bridge"],
    )
    assert testbed.ssh(HOST, "ip -o link | grep -E ' (weave|vethwe-)'")[0] != 0
    assert out[-1].startswith("reset master, slave1, slave2; ~/.kube/config left as it was")
    # every other rule, Docker's and the SSH ACCEPT included, is exactly as before
    after = {t: rules(testbed, t) for t in TABLES}
    assert after == before
    assert SSH_RULE in after["filter"]
    assert not any("KUBE-" in x or "WEAVE-" in x for t in TABLES for x in after[t])
    assert testbed.ssh(HOST, "ls /var/lib/weave /etc/cni/net.d/10-weave.conflist")[0] != 0
    rc, out2, _ = testbed.ssh_user(HOST, "echo still reachable")
    assert rc == 0 and out2.strip() == "still reachable"
    # a second reset finds nothing of ours on slave1
    again = labctl(testbed, "reset", "--yes")
    assert again.returncode == 0
    assert [x for x in again.stdout.splitlines() if x.startswith(f"{HOST}:")] == [
        f"{HOST}: kubeadm not installed: nothing to reset"
    ]
