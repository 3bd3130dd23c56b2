"""The machines' network on this host: a bridge holding the gateway address (like VirtualBox's
NAT Network), and either a way out or none.

* online (default): forwarding, a masquerade for the machines' subnet only, and a DNS forwarder
  on the gateway, so the deploy downloads packages and images as on VMs;
* ``--offline``: no route out; the machines' apt reaches the Debian mirror through a proxy on
  the gateway that forwards GET/HEAD to that mirror's hosts only (mirrors and image archives
  bring the rest).

Every iptables rule added is recorded in the cluster's state, with the ip_forward value found,
so ``destroy`` removes exactly those and leaves the host's own rules alone. The masquerade path
is proven here only inside a network namespace whose one uplink is a stand-in "outside" on
this machine (tests/testbed/test_machines_nat.py); never towards a real default route.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from k8slab.machines import MachinesError, procs
from k8slab.machines.spec import Cluster

PROXY_PORT = 3142
COMMENT = "k8s-lab machines {name}"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def ensure_bridge(c: Cluster) -> bool:
    """The bridge with the gateway address, up; True when it had to be made."""
    made = False
    if _ip("link", "show", c.bridge, check=False).returncode != 0:
        _ip("link", "add", c.bridge, "type", "bridge")
        made = True
    addrs = _ip("-o", "-4", "addr", "show", "dev", c.bridge).stdout
    if f"{c.gateway}/{c.prefix}" not in addrs:
        _ip("addr", "add", f"{c.gateway}/{c.prefix}", "dev", c.bridge)
    _ip("link", "set", c.bridge, "up")
    return made


def remove_bridge(c: Cluster) -> None:
    if _ip("link", "show", c.bridge, check=False).returncode == 0:
        _ip("link", "del", c.bridge)


def bridge_up(c: Cluster) -> bool:
    return _ip("link", "show", c.bridge, check=False).returncode == 0


def wanted_rules(c: Cluster) -> list[tuple[str, ...]]:
    """(table, chain, match...) of the rules the machines need: traffic among them and to the
    gateway's services passes a host firewall that drops by default (Docker's, ufw's), and,
    online, their traffic out is forwarded and masqueraded."""
    b, tag = c.bridge, ("-m", "comment", "--comment", COMMENT.format(name=c.name))
    ports = ("udp", "53"), ("tcp", "53")
    if c.offline:
        ports = (("tcp", str(PROXY_PORT)),)
    rules = [("filter", "INPUT", "-i", b, "-p", p, "--dport", n, *tag, "-j", "ACCEPT")
             for p, n in ports]  # fmt: skip
    if c.offline:
        return rules + [("filter", "FORWARD", "-i", b, "-o", b, *tag, "-j", "ACCEPT")]
    return rules + [
        ("filter", "FORWARD", "-i", b, *tag, "-j", "ACCEPT"),
        (
            "filter",
            "FORWARD",
            "-o",
            b,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            *tag,
            "-j",
            "ACCEPT",
        ),  # fmt: skip
        ("nat", "POSTROUTING", "-s", c.network, "!", "-o", b, *tag, "-j", "MASQUERADE"),
    ]


def add_rules(c: Cluster) -> Cluster:
    """The rules in place (each inserted first, once) and forwarding on where online; the
    cluster returned records what was added, for `remove_rules`."""
    if not shutil.which("iptables"):
        if not c.offline:
            raise MachinesError("iptables: not found: apt-get install iptables")
        return c  # no iptables, no firewall of its kind to pass
    wanted = wanted_rules(c)
    for table, chain, *spec in (r for r in c.added_rules if r not in wanted):  # other mode's
        while _iptables("-t", table, "-C", chain, *spec).returncode == 0:
            _iptables("-t", table, "-D", chain, *spec)
    added = [r for r in c.added_rules if r in wanted]
    for rule in wanted:
        table, chain, *spec = rule
        if _iptables("-t", table, "-C", chain, *spec).returncode != 0:
            r = _iptables("-t", table, "-I", chain, *spec)
            if r.returncode != 0:
                raise MachinesError(f"iptables -t {table} -I {chain}: {r.stderr.strip()}")
        if rule not in added:
            added.append(rule)
    forward_was = c.ip_forward_was
    if not c.offline and IP_FORWARD.read_text().strip() != "1":
        forward_was = forward_was or IP_FORWARD.read_text().strip()
        IP_FORWARD.write_text("1\n")
    elif c.offline and forward_was is not None:  # online before: forwarding back as it was
        IP_FORWARD.write_text(forward_was + "\n")
        forward_was = None
    return c.but(added_rules=tuple(added), ip_forward_was=forward_was)


def remove_rules(c: Cluster, others_online: bool) -> Cluster:
    """Exactly the rules `add_rules` recorded; ip_forward back to what it was, unless another
    cluster here still forwards."""
    for table, chain, *spec in c.added_rules:
        while _iptables("-t", table, "-C", chain, *spec).returncode == 0:
            _iptables("-t", table, "-D", chain, *spec)
    if c.ip_forward_was is not None and not others_online:
        IP_FORWARD.write_text(c.ip_forward_was + "\n")
    return c.but(added_rules=(), ip_forward_was=None)


def _iptables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise MachinesError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


# --- the gateway's services -------------------------------------------------------------


def service(c: Cluster, mirror_hosts: list[str] = ()) -> tuple[str, list[str], int]:
    """(name, python -m argv, port) of the program the gateway runs for this cluster's mode."""
    if c.offline:
        listen = ["--listen", f"{c.gateway}:{PROXY_PORT}", "--allow", ",".join(mirror_hosts)]
        return "proxy", ["k8slab.machines.proxy", *listen], PROXY_PORT
    upstream = ["--upstream", c.dns] if c.dns else []
    return "dns", ["k8slab.machines.dns", "--listen", c.gateway, *upstream], 53


def service_pid(c: Cluster, mirror_hosts: list[str] = ()) -> int | None:
    """The gateway's program, if it runs with exactly this cluster's settings."""
    name, argv, _port = service(c, mirror_hosts)
    return procs.running(c.state, name, " ".join(argv))


def ensure_service(c: Cluster, mirror_hosts: list[str]) -> bool:
    """The gateway's program running as the cluster's mode and settings; True if started."""
    if service_pid(c, mirror_hosts):
        return False
    stop_service(c)  # the other mode's, or the same with other settings
    name, argv, port = service(c, mirror_hosts)
    log = c.state / f"{name}.log"
    pid = procs.start(c.state, name, argv, log)
    err = 0
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            err = s.connect_ex((c.gateway, port))
            if err == 0:
                return True
        if procs.zombie(pid):
            break
        time.sleep(0.1)
    tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-2:])
    why = os.strerror(err) if err else "it exited"
    raise MachinesError(
        f"the machines' {name} on {c.gateway}:{port} did not answer ({why}); its log: {tail}"
    )


def stop_service(c: Cluster) -> None:
    """Stop the gateway's program of either mode (a cluster may have changed mode)."""
    for name, module in (("proxy", "k8slab.machines.proxy"), ("dns", "k8slab.machines.dns")):
        pid = procs.running(c.state, name, f"{module} --listen {c.gateway}")
        if pid:
            procs.terminate(pid)
        procs.pidfile(c.state, name).unlink(missing_ok=True)
