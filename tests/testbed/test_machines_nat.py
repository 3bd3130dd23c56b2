"""`labctl machines up` online: the machines reach "the internet" through this host's
masquerade and resolve names through the machines' DNS forwarder; `--offline` cuts them off;
`destroy` leaves the host as it was.

No packet may leave this computer, so the whole cluster lives in a network namespace of its own
(`natin`, the stand-in for "this host") whose one uplink is a second namespace (`natout`, the
stand-in for "outside") that owns 203.0.113.80 (a documentation address) with a small web
server and a DNS server answering `outside.test`. labctl runs in `natin` through
`nsenter --net` (only the network namespace: the cgroup mounts stay as they are).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

LABCTL = str(Path(sys.executable).with_name("labctl"))
IN, OUT = "k8slab-natin", "k8slab-natout"
UPLINK, OUTSIDE_GW, WEB = "198.51.100.1", "198.51.100.2", "203.0.113.80"
TOPOLOGY = """\
ssh_user: gurumee
hosts:
  - {name: master, role: control-plane, node_ip: 10.0.2.15}
  - {name: slave1, role: worker, node_ip: 10.0.2.4}
"""

# A DNS server that knows one name: outside.test is WEB; anything else is NXDOMAIN.
DNS_SERVER = f"""
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{OUTSIDE_GW}", 53))
while True:
    q, peer = s.recvfrom(512)
    qid, flags = q[:2], q[2:4]
    end = q.index(b"\\0", 12) + 5
    labels, i = [], 12
    while q[i]:
        labels.append(q[i + 1 : i + 1 + q[i]].decode()); i += 1 + q[i]
    name, qtype = ".".join(labels).lower(), struct.unpack("!H", q[end - 4 : end - 2])[0]
    if name == "outside.test" and qtype == 1:
        answer = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("{WEB}")
        s.sendto(qid + b"\\x81\\x80" + struct.pack("!HHHH", 1, 1, 0, 0) + q[12:end] + answer, peer)
    else:
        s.sendto(qid + b"\\x81\\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + q[12:end], peer)
"""


def sh(*args: str, check: bool = True, ns: str | None = None, timeout: float = 300):
    argv = [*(["nsenter", f"--net=/run/netns/{ns}"] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{' '.join(argv)}: {r.stdout}{r.stderr}"
    return r


def labctl(*args: str, check: bool = True, timeout: float = 600):
    return sh(LABCTL, *args, check=check, ns=IN, timeout=timeout)


def snapshot() -> dict[str, str]:
    """What `up` may change in the host's network: rules, links, addresses, routes, forwarding."""
    cmds = {
        "filter": ["iptables", "-S"],
        "nat": ["iptables", "-t", "nat", "-S"],
        "links": ["ip", "-o", "link"],
        "addrs": ["ip", "-o", "-4", "addr"],
        "routes": ["ip", "route"],
        "forward": ["cat", "/proc/sys/net/ipv4/ip_forward"],
    }
    return {k: sh(*v, ns=IN).stdout for k, v in cmds.items()}


@pytest.fixture(scope="module")
def outside(testbed, tmp_path_factory):
    """The two namespaces and the outside's servers; the base is the bed's (already built:
    debootstrap could not reach a mirror from inside)."""
    tmp = tmp_path_factory.mktemp("nat")
    for ns in (IN, OUT):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "natin-up", "netns", IN, "type", "veth", "peer", "natout-dn",
       "netns", OUT)  # fmt: skip
    sh("ip", "addr", "add", f"{UPLINK}/24", "dev", "natin-up", ns=IN)
    sh("ip", "addr", "add", f"{OUTSIDE_GW}/24", "dev", "natout-dn", ns=OUT)
    sh("ip", "addr", "add", f"{WEB}/32", "dev", "lo", ns=OUT)
    for ns, dev in ((IN, "natin-up"), (OUT, "natout-dn")):
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    sh("ip", "route", "add", "default", "via", OUTSIDE_GW, ns=IN)
    (tmp / "www").mkdir()
    (tmp / "www" / "hello.txt").write_text("hello from outside\n")
    web_log = open(tmp / "web.log", "w")
    servers = [
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{OUT}",
                sys.executable,
                "-m",
                "http.server",
                "--bind",
                WEB,
                "80",
                "--directory",
                str(tmp / "www"),
            ],
            stdout=web_log,
            stderr=subprocess.STDOUT,
        ),  # fmt: skip
        subprocess.Popen(["nsenter", f"--net=/run/netns/{OUT}", sys.executable, "-c", DNS_SERVER]),
    ]
    time.sleep(1)
    (tmp / "lab.yaml").write_text(TOPOLOGY)
    yield tmp
    labctl("machines", "destroy", "--cluster", "nat", "--yes", check=False)
    for p in servers:
        p.terminate()
        p.wait(10)
    web_log.close()
    for ns in (IN, OUT):
        sh("ip", "netns", "del", ns, check=False)


def test_online_machines_reach_outside_through_the_masquerade_and_offline_ones_do_not(outside):
    before = snapshot()
    config = ("--config", str(outside / "lab.yaml"))
    up = labctl(*config, "machines", "up", "--cluster", "nat", "--dns", OUTSIDE_GW)
    assert "2 machines up in" in up.stdout and "online: NAT via this host" in up.stdout, up.stdout
    again = labctl(*config, "machines", "up", "--cluster", "nat", "--dns", OUTSIDE_GW)
    assert again.stdout.startswith("already up: nothing changed"), again.stdout
    assert "machines:" not in again.stderr, again.stderr  # nothing done, nothing said

    fetch = "curl -sS --max-time 10 http://outside.test/hello.txt"
    for machine in ("master", "slave1"):
        r = labctl("machines", "ssh", "--cluster", "nat", machine, "--", fetch)
        assert r.stdout == "hello from outside\n", r.stderr
    log = (outside / "web.log").read_text().splitlines()
    clients = {line.split()[0] for line in log if '"GET /hello.txt' in line}
    assert clients == {UPLINK}, clients  # masqueraded: the outside never sees 10.0.2.x

    labctl("machines", "stop", "--cluster", "nat")
    off = labctl(*config, "machines", "up", "--cluster", "nat", "--offline")
    assert "offline" in off.stdout
    name = labctl("machines", "ssh", "--cluster", "nat", "master", "--", fetch, check=False)
    assert name.returncode != 0 and "Could not resolve host" in name.stderr, name
    direct = f"curl -sS --max-time 5 http://{WEB}/hello.txt"
    ip = labctl("machines", "ssh", "--cluster", "nat", "slave1", "--", direct, check=False)
    assert ip.returncode != 0 and "hello" not in ip.stdout, ip

    labctl("machines", "destroy", "--cluster", "nat", "--yes")
    assert snapshot() == before
    assert not Path("/var/lib/k8s-lab/machines/nat").exists()
