"""labctl doctor graded from recorded outputs: a support bundle (`--record` layout) of three
VirtualBox VMs is written, edited into a bad variant, and graded by the real CLI with
`labctl doctor --replay`. The outputs are shaped like Debian 12 VMs' (two adapters: NAT
enp0s3 with 10.0.2.15 on every VM, and a NAT network enp0s8 with the node IPs). The same
checks run live on the test bed in tests/testbed/test_doctor.py."""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import course_topology

from k8slab import doctor
from k8slab.checks import bundle
from k8slab.checks.engine import Commands
from k8slab.cli import main
from k8slab.ssh import Result
from k8slab.topology import parse

NODE = {"master": ("192.168.56.10", "08:00:27:8a:10:01", "4c1e5a2b-0001-4f0e-9d6b-5b1c2f3a4d01")}
NODE["slave1"] = ("192.168.56.11", "08:00:27:8a:10:02", "4c1e5a2b-0002-4f0e-9d6b-5b1c2f3a4d02")
NODE["slave2"] = ("192.168.56.12", "08:00:27:8a:10:03", "4c1e5a2b-0003-4f0e-9d6b-5b1c2f3a4d03")
TOPOLOGY = course_topology({name: ip for name, (ip, _, _) in NODE.items()})

FSTAB = """\
# /etc/fstab: static file system information.
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0b5c4d0e-6f1a-4f6e-8a7c-3b1f7d2c9e10 /               ext4    errors=remount-ro 0       1
# swap was on /dev/sda5 during installation
#UUID=7e2f1c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6 none            swap    sw              0       0
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
"""
# A 20 GB virtual disk after Debian's installer (df -P -k /var/lib).
DF_20G = (
    "Filesystem     1024-blocks    Used Available Capacity Mounted on\n"
    "/dev/sda1         19480400 2214336  16253656      12% /\n"
)
SWAPS_EMPTY = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
SS_EMPTY = (
    'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=612,fd=3))\n'
    'LISTEN 0      4096       127.0.0.1:39491     0.0.0.0:*    users:(("containerd",pid=598,fd=9))'
    "\n"
    'LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=612,fd=4))\n'
)


def _addrs(host: str) -> str:
    ip = NODE[host][0]
    return (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "2: enp0s3    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s3\\"
        "       valid_lft 86077sec preferred_lft 86077sec\n"
        f"3: enp0s8    inet {ip}/24 brd 192.168.56.255 scope global enp0s8\\"
        "       valid_lft forever preferred_lft forever\n"
    )


def _links(host: str) -> str:
    return (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT "
        "group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "2: enp0s3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode "
        "DEFAULT group default qlen 1000\\    link/ether 08:00:27:3e:7b:5c brd ff:ff:ff:ff:ff:ff\n"
        "3: enp0s8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode "
        f"DEFAULT group default qlen 1000\\    link/ether {NODE[host][1]} brd ff:ff:ff:ff:ff:ff\n"
    )


ROUTES = (
    "default via 10.0.2.2 dev enp0s3 proto dhcp src 10.0.2.15 metric 100 \n"
    "10.0.2.0/24 dev enp0s3 proto kernel scope link src 10.0.2.15 \n"
    "192.168.56.0/24 dev enp0s8 proto kernel scope link src {ip} \n"
)


# What the check's curl loop prints on a VM with internet access (registries answer 401).
SOURCES_OK = (
    "200 https://pkgs.k8s.io/core:/stable:/v1.36/deb/InRelease\n"
    "200 https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key\n"
    "200 https://download.docker.com/linux/debian/dists/bookworm/InRelease\n"
    "200 https://download.docker.com/linux/debian/gpg\n"
    "302 https://github.com/Mirantis/cri-dockerd/releases/download/v0.4.3/"
    "cri-dockerd-0.4.3.amd64.tgz\n"
    "401 https://registry.k8s.io/v2/\n"
    "401 https://registry-1.docker.io/v2/\n"
)


def good_outputs(host: str) -> dict[str, str]:
    """(check id, run name) -> stdout of a host that passes every check."""
    ip, _, uuid = NODE[host]
    return {
        "sudo/uid": "0\n",
        "os/release": "debian 12\n",
        "cpus/nproc": "2\n",
        "disk/df": DF_20G,
        "memory.control-plane/meminfo": "MemTotal:        2014552 kB\nMemFree:  1300000 kB\n",
        "memory.worker/meminfo": "MemTotal:        2014552 kB\nMemFree:  1300000 kB\n",
        "swap.now/swaps": SWAPS_EMPTY,
        "swap.fstab/fstab": FSTAB,
        "cgroup-v2/fstype": "cgroup2fs\n",
        "kernel-modules/modules": "br_netfilter loadable\noverlay loaded\n",
        "weave-datapath/modules": "openvswitch loadable\n",
        "ip-forward/forward": "1\n",
        "unique.hostname/hostname": f"{host}\n",
        "unique.mac/links": _addrs(host) + _links(host),
        "unique.product-uuid/uuid": f"{uuid}\n",
        "node-ip/addrs": _addrs(host),
        "node-ip/routes": ROUTES.format(ip=ip),
        "subnets/addrs": _addrs(host),
        "subnets/routes": ROUTES.format(ip=ip),
        "ports/listening": SS_EMPTY,
        "sources/reach": SOURCES_OK,
        "clock/time": "1764233000.120000000\nlabctl-local-clock: 1764233000.100 1764233000.150\n",
    }


def write(directory: Path, edits: dict | None = None, topology: dict = TOPOLOGY) -> Path:
    """A doctor bundle, written by the code `labctl doctor --record` uses. `edits` maps
    (host, "check/run") to a new stdout or Result."""
    topo = parse(topology)
    lab = doctor.load(topo)
    outputs = {}
    for h in topo.hosts:
        for key, text in good_outputs(h.name).items():
            outputs[(h.name, key)] = text
    outputs.update(edits or {})
    by_command: dict[tuple[str, str], Result] = {}
    for (host, key), value in outputs.items():
        check_id, name = key.split("/")
        check = next(c for c in lab.checks if c.id == check_id)
        if host not in [x.name for x in check.hosts(topo)]:
            continue
        cmd = check.run[name].cmd
        by_command[(host, cmd)] = value if isinstance(value, Result) else Result(value, "", 0)
    commands = Commands(lambda host, cmd: by_command[(host, cmd)])
    for host, cmd in by_command:
        commands(host, cmd)
    bundle.write(directory, doctor.LAB_ID, [c.id for c in lab.checks], topo, commands)
    return directory


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def rows(output: str) -> dict[tuple[str, str], str]:
    """(check, host) -> "STATUS evidence" from the table (evidence wrapped under its column
    is joined back)."""
    found, last = {}, None
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[2] in ("PASS", "FAIL", "SKIP", "ERROR"):
            last = (words[0], words[1])
            found[last] = " ".join(words[2:])
        elif last and line.startswith(" ") and words and words[0] != "hint:":
            found[last] += " " + " ".join(words)
        else:
            last = None
    return found


def test_good_vms_pass_every_check(tmp_path):
    r = run("doctor", "--replay", str(write(tmp_path / "b")))
    assert r.exit_code == 0, r.output
    table = rows(r.output)
    assert len(table) == 20 * 3 - 5  # cpus, memory.* on master or workers only
    assert all(v.startswith("PASS") for v in table.values()), r.output
    assert table[("unique.mac", "slave1")] == (
        "PASS MAC of the node_ip interface 08:00:27:8a:10:02 (unique among 3 hosts)"
    )
    assert table[("memory.control-plane", "master")] == "PASS MemTotal: 1.92 GiB (need >= 1.7 GiB)"
    assert table[("disk", "slave2")].startswith(
        "PASS /: 15.5 GiB free of 18.6 GiB (83.4%); 67.3% once the cluster's"
    )
    assert "preflight: 55 results - 55 passed, 0 failed" in r.output


def test_json_format(tmp_path):
    r = run("doctor", "--replay", str(write(tmp_path / "b")), "--format", "json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["lab"] == "preflight" and data["totals"]["pass"] == 55
    first = data["checks"][0]
    assert set(first) >= {"id", "host", "status", "evidence", "hint"}


BAD = [
    # (edits, check, host, evidence substring, hint substring)
    (
        {("slave1", "os/release"): "debian 11\n"},
        "os",
        "slave1",
        "printed: debian 11",
        "Debian 12/13 or Ubuntu 22.04/24.04",
    ),
    (
        {("master", "cpus/nproc"): "1\n"},
        "cpus",
        "master",
        "CPUs: 1 CPUs (need >= 2 CPUs)",
        "kubeadm init refuses fewer than 2 CPUs",
    ),
    (
        {
            ("slave1", "disk/df"): DF_20G.replace(
                "2214336  16253656      12%", "14904520   3563472      81%"
            )
        },
        "disk",
        "slave1",
        "/: 3.4 GiB free of 18.6 GiB (18.3%); 2.1% once the cluster's ~3 GiB are there "
        "(under kubelet's 15%)",
        "under 15% free, kubelet marks the node DiskPressure",
    ),
    (
        {("master", "memory.control-plane/meminfo"): "MemTotal:        1012552 kB\n"},
        "memory.control-plane",
        "master",
        "MemTotal: 0.97 GiB (need >= 1.7 GiB)",
        "2 GiB or more",
    ),
    (
        {
            ("slave2", "swap.now/swaps"): SWAPS_EMPTY
            + "/dev/sda5                               partition\t998396\t\t0\t\t-2\n"
        },
        "swap.now",
        "slave2",
        "active swap: /dev/sda5",
        "swapoff -a",
    ),
    (
        {("slave1", "swap.fstab/fstab"): FSTAB + "/swap.img\tnone\tswap\tsw\t0\t0\n"},
        "swap.fstab",
        "slave1",
        "swap in /etc/fstab: /swap.img none swap sw 0 0",
        "comment out the swap line",
    ),
    (
        {("master", "cgroup-v2/fstype"): "tmpfs\n"},
        "cgroup-v2",
        "master",
        "printed: tmpfs",
        "refuse cgroup v1",
    ),
    (
        {("slave2", "kernel-modules/modules"): "br_netfilter missing\noverlay loaded\n"},
        "kernel-modules",
        "slave2",
        "missing module: br_netfilter missing",
        "linux-modules-extra",
    ),
    (
        {("slave2", "unique.hostname/hostname"): "slave1\n"},
        "unique.hostname",
        "slave1",
        "hostname slave1 is also that of slave2",
        "hostnamectl set-hostname",
    ),
    (
        {("slave2", "unique.product-uuid/uuid"): NODE["slave1"][2] + "\n"},
        "unique.product-uuid",
        "slave2",
        f"product_uuid {NODE['slave1'][2]} is also that of slave1",
        "--hardwareuuid",
    ),
    (
        {("slave1", "unique.mac/links"): _addrs("slave1") + _links("master")},
        "unique.mac",
        "master",
        "MAC of the node_ip interface 08:00:27:8a:10:01 is also that of slave1",
        "regenerate them",
    ),
    (
        {
            ("slave1", "node-ip/addrs"): _addrs("slave2"),
            ("slave1", "subnets/addrs"): _addrs("slave2"),
        },
        "node-ip",
        "slave1",
        "node_ip 192.168.56.11 is not on this host",
        "address shown by `ip -4 addr`",
    ),
    (
        {
            ("master", "subnets/routes"): ROUTES.format(ip="192.168.56.10")
            + "10.96.0.0/16 via 192.168.56.1 dev enp0s8 \n"
        },
        "subnets",
        "master",
        "kube_service_subnet 10.96.0.0/12 overlaps route: 10.96.0.0/16 via 192.168.56.1",
        "outside the VMs' networks",
    ),
    (
        {
            ("slave1", "ports/listening"): SS_EMPTY
            + 'LISTEN 0 511 0.0.0.0:10250 0.0.0.0:* users:(("nginx",pid=9,fd=6))'
            "\n"
        },
        "ports",
        "slave1",
        "port 10250 is held by nginx (want free or kubelet)",
        "ss -tlnp",
    ),
    (
        {("slave1", "sources/reach"): SOURCES_OK.replace("200 https://pkgs", "000 https://pkgs")},
        "sources",
        "slave1",
        "cannot reach: 000 https://pkgs.k8s.io/core:/stable:/v1.36/deb/InRelease",
        "getent hosts pkgs.k8s.io",
    ),
    (
        {
            ("master", "sources/reach"): SOURCES_OK.replace(
                "302 https://github", "404 https://github"
            )
        },
        "sources",
        "master",
        "cannot reach: 404 https://github.com/Mirantis/cri-dockerd/releases/download/v0.4.3/",
        "the version in it when the answer is 404",
    ),
    (
        {
            (
                "slave2",
                "clock/time",
            ): "1764233042.5\nlabctl-local-clock: 1764233000.100 1764233000.150\n"
        },
        "clock",
        "slave2",
        "clock ahead by 42.",
        "timedatectl set-ntp true",
    ),
]


@pytest.mark.parametrize("edits,check,host,evidence,hint", BAD, ids=[b[1] for b in BAD])
def test_bad_host_fails_with_evidence_and_hint(tmp_path, edits, check, host, evidence, hint):
    r = run("doctor", "--replay", str(write(tmp_path / "b", edits)))
    assert r.exit_code == 1, r.output
    table = rows(r.output)
    assert table[(check, host)].startswith("FAIL"), r.output
    # evidence wraps at the column's width, long words included
    assert "".join(evidence.split()) in "".join(table[(check, host)].split())
    lines = r.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == [check, host])
    # the hint follows the row's (wrapped) evidence, and wraps under itself
    start = next(i for i in range(at + 1, len(lines)) if lines[i].strip().startswith("hint: "))
    said = [lines[start].strip()]
    for line in lines[start + 1 :]:
        if not line.startswith("              "):
            break
        said.append(line.strip())
    assert hint in " ".join(said)
    failed = [k for k, v in table.items() if v.startswith("FAIL")]
    # Only the edited host fails, except that duplicates fail on both hosts that share them.
    assert all(k[0] == check for k in failed), failed


def test_ports_held_by_our_own_services_pass(tmp_path):
    held = SS_EMPTY + (
        'LISTEN 0 4096 *:6443 *:* users:(("kube-apiserver",pid=1501,fd=3))\n'
        'LISTEN 0 4096 *:10250 *:* users:(("kubelet",pid=1320,fd=18))\n'
        'LISTEN 0 4096 *:6783 *:* users:(("weaver",pid=2331,fd=7))\n'
    )
    r = run("doctor", "--replay", str(write(tmp_path / "b", {("master", "ports/listening"): held})))
    assert r.exit_code == 0, r.output
    assert rows(r.output)[("ports", "master")] == (
        "PASS 6443 held by kube-apiserver, 10250 held by kubelet, 6783 held by weaver"
    )


def test_ip_forward_off_is_a_warning_not_a_failure(tmp_path):
    r = run(
        "doctor", "--replay", str(write(tmp_path / "b", {("slave1", "ip-forward/forward"): "0\n"}))
    )
    assert r.exit_code == 0, r.output
    assert rows(r.output)[("ip-forward", "slave1")].startswith(
        "PASS warning: net.ipv4.ip_forward is 0"
    )
    assert "1 of the passes carry a warning" in r.output


def test_shared_virtualbox_nat_address_as_node_ip_warns(tmp_path):
    topo = {
        **TOPOLOGY,
        "hosts": [
            {"name": "master", "role": "control-plane", "node_ip": "10.0.2.15"},
            *TOPOLOGY["hosts"][1:],
        ],
    }
    r = run("doctor", "--replay", str(write(tmp_path / "b", topology=topo)), "--format", "json")
    assert r.exit_code == 0, r.output
    evidence = {(c["id"], c["host"]): c["evidence"] for c in json.loads(r.output)["checks"]}
    assert evidence[("node-ip", "master")].startswith(
        "warning: 10.0.2.15 is the default-route address of master, slave1, slave2: that is "
        "VirtualBox's NAT address"
    )
    assert evidence[("node-ip", "slave1")].startswith(
        "node_ip 192.168.56.11 is not a shared NAT address; the default route leaves by "
        "10.0.2.15, VirtualBox's NAT address on master, slave1, slave2, which the deploy never "
        "uses"
    )
    table = run("doctor", "--replay", str(tmp_path / "b"))
    assert "1 of the passes carry a warning" in table.output


# What the probe prints (k8slab.weave.probe_command): a stock VM kernel has openvswitch as a
# module (loadable, or loaded once Weave ran); this machine's kernel and its lab machines
# (containers sharing it: no /proc/modules, no /lib/modules) have none.
NO_OVS = "openvswitch missing\n"


def _datapath(tmp_path, setting, edits) -> dict[str, dict]:
    topo = {**TOPOLOGY, "weave_fastdp": setting}
    bundle = str(write(tmp_path / "b", edits, topology=topo))
    r = run("doctor", "--replay", bundle, "--format", "json")
    assert r.exit_code == 0, r.output
    return {c["host"]: c for c in json.loads(r.output)["checks"] if c["id"] == "weave-datapath"}


@pytest.mark.parametrize(
    "setting, edits, want",
    [
        (
            "auto",
            {},
            {h: "openvswitch loadable: Weave runs fastdp (weave_fastdp auto)" for h in NODE},
        ),
        (
            "auto",
            {("slave1", "weave-datapath/modules"): "openvswitch loaded\n"},
            {"slave1": "openvswitch loaded: Weave runs fastdp (weave_fastdp auto)"},
        ),
        (
            "auto",
            {("slave2", "weave-datapath/modules"): NO_OVS},
            {
                "master": "openvswitch loadable, but not on slave2: Weave runs sleeve on every "
                "node (weave_fastdp auto)",
                "slave2": "openvswitch not available: Weave runs sleeve (weave_fastdp auto)",
            },
        ),
        (
            "auto",
            {(h, "weave-datapath/modules"): NO_OVS for h in NODE},
            {h: "openvswitch not available: Weave runs sleeve (weave_fastdp auto)" for h in NODE},
        ),
        (
            False,
            {("slave1", "weave-datapath/modules"): NO_OVS},
            {
                "master": "openvswitch loadable: Weave runs sleeve (weave_fastdp false)",
                "slave1": "openvswitch not available: Weave runs sleeve (weave_fastdp false)",
            },
        ),
        (
            True,
            {("master", "weave-datapath/modules"): "openvswitch built in\n"},
            {"master": "openvswitch built in: Weave runs fastdp (weave_fastdp true)"},
        ),
        (
            True,
            {("slave2", "weave-datapath/modules"): NO_OVS},
            {
                "slave1": "openvswitch loadable: Weave runs fastdp (weave_fastdp true)",
                "slave2": "warning: openvswitch not available: Weave falls back to a plain bridge "
                "here and refuses it on every restart (weaveworks/weave#3634); set "
                "weave_fastdp: auto or false",
            },
        ),
    ],
    ids=["auto-all", "auto-loaded", "auto-one-lacks", "auto-none", "false", "true", "true-lacks"],
)
def test_weave_datapath_says_which_mode_each_node_gets(tmp_path, setting, edits, want):
    rows = _datapath(tmp_path, setting, edits)
    assert all(row["status"] == "pass" for row in rows.values())
    for host, evidence in want.items():
        assert rows[host]["evidence"] == evidence


def test_weave_datapath_warns_in_the_table_where_true_cannot_work(tmp_path):
    topo = {**TOPOLOGY, "weave_fastdp": True}
    edits = {("slave2", "weave-datapath/modules"): NO_OVS}
    r = run("doctor", "--replay", str(write(tmp_path / "b", edits, topology=topo)))
    assert r.exit_code == 0, r.output
    assert "1 of the passes carry a warning" in r.output


def test_weave_datapath_probes_as_the_deploy_does():
    from k8slab import weave
    from k8slab.facts import KernelModuleState

    lab = doctor.load(parse(TOPOLOGY))
    (check,) = [c for c in lab.checks if c.id == "weave-datapath"]
    assert (
        check.run["modules"].cmd
        == weave.probe_command()
        == KernelModuleState().command(weave.MODULE)
    )
    assert KernelModuleState().process(["openvswitch loadable"]) == "loadable"
    assert KernelModuleState().process([]) == "missing"


def test_no_product_uuid_is_a_warning(tmp_path):
    edits = {(h, "unique.product-uuid/uuid"): "missing\n" for h in NODE}
    r = run("doctor", "--replay", str(write(tmp_path / "b", edits)))
    assert r.exit_code == 0, r.output
    assert rows(r.output)[("unique.product-uuid", "slave2")] == (
        "PASS warning: no product_uuid on slave2: cannot compare"
    )


def test_skip_leaves_checks_out(tmp_path):
    bad = {("slave2", "unique.hostname/hostname"): "slave1\n"}
    r = run(
        "doctor", "--replay", str(write(tmp_path / "b", bad)), "--skip", "unique", "--skip", "clock"
    )
    assert r.exit_code == 0, r.output
    checks = {k[0] for k in rows(r.output)}
    assert not any(c.startswith("unique.") or c == "clock" for c in checks)
    assert "swap.fstab" in checks


def test_skip_unknown_check_is_one_line_exit_2(tmp_path):
    r = run("doctor", "--replay", str(write(tmp_path / "b")), "--skip", "clocks")
    assert r.exit_code == 2
    assert (
        r.output.strip().splitlines() == [r.output.strip().splitlines()[0]]
        and "Error: preflight: no check 'clocks' (did you mean 'clock'?) (groups: memory, swap, "
        "unique; checks: sudo, os,"
        in r.output
    )


def test_replay_of_a_lab_bundle_is_refused(tmp_path):
    from conftest import write_bundle

    r = run("doctor", "--replay", str(write_bundle(tmp_path / "ch09")))
    assert r.exit_code == 2
    assert (
        r.output.strip()
        == f"Error: {tmp_path / 'ch09'} is a bundle of lab ch09, not of labctl doctor"
    )


def test_cgroup_v1_is_a_warning_when_the_topology_allows_it(tmp_path):
    edits = {(h, "cgroup-v2/fstype"): "tmpfs\n" for h in ("master", "slave1", "slave2")}
    allowed = {**TOPOLOGY, "allow_cgroup_v1": True}
    bundle = str(write(tmp_path / "b", edits, topology=allowed))
    r = run("doctor", "--replay", bundle, "--format", "json")
    assert r.exit_code == 0, r.output
    (row,) = [
        c
        for c in json.loads(r.output)["checks"]
        if c["id"] == "cgroup-v2" and c["host"] == "slave2"
    ]
    assert (row["status"], row["evidence"]) == (
        "pass",
        "warning: cgroup v1, allowed by allow_cgroup_v1 (kubelet failCgroupV1: false) "
        "(printed: tmpfs)",
    )
    r = run("doctor", "--replay", str(write(tmp_path / "c", edits)))
    assert r.exit_code == 1 and rows(r.output)[("cgroup-v2", "slave2")].startswith("FAIL")


def test_sources_probes_the_configured_urls_and_never_local_files(tmp_path):
    repo = tmp_path / "apt"
    repo.mkdir()
    (repo / "Release").write_text("Origin: test\n")
    (repo / "Release.key").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    images = tmp_path / "images"
    images.mkdir()
    topo = parse(
        {
            **TOPOLOGY,
            "kube_apt_repo": str(repo),
            "docker_apt_repo": "http://mirror.example:8080/docker/{distro}",
            "cri_dockerd_url": "file:/srv/cri-dockerd-{version}.{arch}.tgz",
            "kube_image_repository": "registry.example:5000/k8s",
        },
        tmp_path / "lab.yaml",
    )
    lab, checks = doctor.prepare(topo)
    reach = next(c for c in checks if c.id == "sources").run["reach"].cmd
    probed = re.findall(r"'([^']+://[^']*|file:[^']*)'", reach)
    assert probed == [
        "http://mirror.example:8080/docker/{distro}/dists/{codename}/InRelease",
        "http://mirror.example:8080/docker/{distro}/gpg",
        "file:/srv/cri-dockerd-0.4.3.{arch}.tgz",
        "https://registry.example:5000/v2/",
        "https://registry-1.docker.io/v2/",
    ]
    assert str(repo) not in reach


def test_sources_loop_answers_for_http_and_host_file_urls(tmp_path):
    """The check's own shell loop, run here against a loopback HTTP server and a file: URL."""
    served = tmp_path / "www"
    (served / "kube").mkdir(parents=True)
    (served / "kube" / "InRelease").write_text("signed\n")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    tgz = tmp_path / f"cri-dockerd-0.4.3.{arch.stdout.strip()}.tgz"
    tgz.write_bytes(b"")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}/kube/"
        topo = parse(
            {
                **TOPOLOGY,
                "docker_source": "distro",
                "kube_apt_repo": base,
                "cri_dockerd_url": f"file:{tmp_path}/cri-dockerd-{{version}}.{{arch}}.tgz",
                # loopback only: the registries' probes must not leave this machine
                "kube_image_repository": f"127.0.0.1:{server.server_address[1]}/k8s",
                "weave_image_repo": f"127.0.0.1:{server.server_address[1]}/weave",
            },
            tmp_path / "lab.yaml",
        )
        reach = next(c for c in doctor.load(topo).checks if c.id == "sources").run["reach"].cmd
        out = subprocess.run(["sh", "-c", reach], capture_output=True, text=True, timeout=60)
        server.shutdown()
    assert out.stdout.splitlines()[:3] == [
        f"200 {base}InRelease",
        f"404 {base}Release.key: not found (a wrong version or path?)",
        f"200 file:{tgz}",
    ]
