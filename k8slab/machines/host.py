"""This computer, as the machines see it: what it must have (checked before anything is made,
one line each with the fix) and what kubelet inside a machine needs of it (probed, so the
machines get exactly the work-arounds this host calls for).

Proven on this project's CI machine only: a cgroup v1 host whose PID 1 is not systemd, with no
CAP_SYS_RESOURCE and ``kernel.dmesg_restrict=1``. The cgroup v2 and systemd-as-PID-1 branches
follow systemd-nspawn's and kind's documented behaviour and never ran here.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# What kubelet reads and writes when they differ (pkg/kubelet/cm/container_manager_linux.go);
# nspawn mounts /proc/sys read-only, so a machine sees the host's values unless given its own.
# Every machine's kubelet, Docker and systemd hold inotify instances of root, counted against
# this host's one per-user limit (128 on Debian): a second cluster, or a fourth machine, runs
# out ("inotify_init: too many open files" from kubelet, seen here). kind's documented values.
INOTIFY = {"fs/inotify/max_user_instances": 512, "fs/inotify/max_user_watches": 524288}
PROC_SYS = Path("/proc/sys")
KUBELET_TUNABLES = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
# Kernel modules the deploy loads inside the machines; they share this kernel, so each must be
# built in or loaded here (a machine cannot load one: nspawn drops CAP_SYS_MODULE).
# Each with the kernel option that builds it in (built-in modules without parameters are
# missing from /sys/module; /proc/config.gz or modules.builtin tells).
MODULES = {
    "bridge": "CONFIG_BRIDGE",
    "br_netfilter": "CONFIG_BRIDGE_NETFILTER",
    "overlay": "CONFIG_OVERLAY_FS",
    "veth": "CONFIG_VETH",
    "ip_tables": "CONFIG_IP_NF_IPTABLES",
    "iptable_nat": "CONFIG_IP_NF_NAT",
}
CAP_SYS_RESOURCE = 24
GIB = 1 << 30
NOT_ROOT = "root: lab machines need root (a bridge, containers): run with sudo"
MEMORY_FOR_THREE = 2.5 * GIB  # a three-node cluster with the chapter's lab (2.8 GiB peak seen)
DISK_PER_MACHINE = 3 * GIB  # Debian, Docker, the Kubernetes packages and images


@dataclass(frozen=True)
class Needs:
    """What the machines get because of this host."""

    cgroup2: bool  # unified hierarchy: each machine gets a delegated subtree
    systemd_pid1: bool  # nspawn then runs in a scope of its own (systemd-run)
    clamp_oom: bool  # no CAP_SYS_RESOURCE: negative oom_score_adj raised to 0 in the machines
    cap_syslog: bool  # dmesg_restrict=1: /dev/kmsg opens only with CAP_SYSLOG
    tunables: tuple[tuple[str, str], ...]  # /proc/sys entries to show kubelet its values
    module_dir: bool  # /lib/modules/<release> exists: bound read-only into the machines


def probe() -> Needs:
    return Needs(
        cgroup2=_fs_type("/sys/fs/cgroup") == "cgroup2",
        systemd_pid1=_comm(1) == "systemd",
        clamp_oom=not _has_capability(CAP_SYS_RESOURCE),
        cap_syslog=_read("/proc/sys/kernel/dmesg_restrict") == "1",
        tunables=tuple((k, v) for k, v in KUBELET_TUNABLES.items() if _read(f"/proc/sys/{k}") != v),
        module_dir=Path("/lib/modules", os.uname().release).is_dir(),
    )


def cgroup_v1() -> bool:
    return _fs_type("/sys/fs/cgroup") != "cgroup2"


def problems(network: str, bridge: str, machines: int, need_base: bool, nat: bool) -> list[str]:
    """Everything this host lacks for `machines` new machines on `network`, one line each with
    the fix; empty when it can go ahead."""
    if sys.platform != "linux":
        return ["lab machines need Linux (systemd-nspawn); on Windows or macOS use VMs"]
    out = [NOT_ROOT] if os.geteuid() != 0 else []
    tools = [
        ("systemd-nspawn", "systemd-container"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ]
    if need_base:
        tools.append(("debootstrap", "debootstrap"))
    if nat:
        tools.append(("iptables", "iptables"))
    for tool, package in tools:
        if not shutil.which(tool):
            out.append(f"{tool}: not found: apt-get install {package}")
    for module in MODULES:
        if not module_available(module):
            out.append(
                f"kernel module {module}: neither built in nor loadable here "
                f"(modprobe {module}); the machines share this kernel"
            )
    memory = _meminfo("MemAvailable")
    wanted = MEMORY_FOR_THREE * machines / 3
    if machines and memory is not None and memory < wanted:
        out.append(
            f"memory: {memory / GIB:.1f} GiB available, about {wanted / GIB:.1f} GiB wanted for "
            f"{machines} machines with the lab: stop other programs or VMs"
        )
    from k8slab.machines.spec import STATE_ROOT

    where = next((p for p in (STATE_ROOT, *STATE_ROOT.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(where).free
    if free < DISK_PER_MACHINE * machines:
        out.append(
            f"disk: {free / GIB:.1f} GiB free under {where}, about "
            f"{DISK_PER_MACHINE * machines / GIB:.0f} GiB wanted: free some, or set "
            "K8SLAB_MACHINES_STATE to a larger disk"
        )
    out += [f"network {network}: {why}" for why in network_in_use(network, bridge)]
    return out


def network_in_use(network: str, bridge: str) -> list[str]:
    """Addresses and routes of this host that overlap `network` on any link but `bridge`."""
    net = ipaddress.ip_network(network)
    found = []
    addrs = _ip("-o", "-4", "addr", "show")
    for line in addrs.splitlines():
        words = line.split()
        dev, cidr = words[1], words[3]
        if dev != bridge and ipaddress.ip_interface(cidr).network.overlaps(net):
            found.append(f"this host has {cidr} on {dev}: choose another --subnet")
    for line in _ip("-o", "-4", "route", "show").splitlines():
        words = line.split()
        if words[0] == "default" or "dev" not in words:
            continue
        dev = words[words.index("dev") + 1]
        try:
            dest = ipaddress.ip_network(words[0], strict=False)
        except ValueError:
            continue
        if dev != bridge and dest.overlaps(net) and not any(dev in f for f in found):
            found.append(f"a route to {words[0]} via {dev} overlaps it: choose another --subnet")
    return found


def module_available(name: str) -> bool:
    """Loaded, built in, or loadable (modprobe finds it)."""
    if Path("/sys/module", name).exists() or f"{MODULES[name]}=y" in _kernel_config():
        return True
    builtin = Path("/lib/modules", os.uname().release, "modules.builtin")
    if builtin.is_file() and f"/{name}.ko" in builtin.read_text():
        return True
    if not shutil.which("modprobe"):
        return False
    return subprocess.run(["modprobe", "-n", name], capture_output=True).returncode == 0


def _kernel_config() -> str:
    import gzip

    try:
        return gzip.decompress(Path("/proc/config.gz").read_bytes()).decode(errors="replace")
    except OSError:
        return ""


def load_modules() -> list[str]:
    """Load what the machines will need and this kernel has not loaded; the names loaded."""
    loaded = []
    for m in MODULES:
        if not Path("/sys/module", m).exists() and shutil.which("modprobe"):
            if subprocess.run(["modprobe", m], capture_output=True).returncode == 0:
                loaded.append(m)
    return loaded


def _ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def _has_capability(bit: int) -> bool:
    """Whether this host can grant the capability at all (its bounding set), so a machine's
    runc can: lowering oom_score_adj below what a process started with needs
    CAP_SYS_RESOURCE, and cri-dockerd asks -998 of every pod sandbox. Whether this process may
    lower its own says nothing: its inherited floor may already be low."""
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def _fs_type(path: str) -> str:
    """The type of the last file system mounted on `path` (the one in effect)."""
    kind = ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == path:
            kind = fields[fields.index("-") + 1]
    return kind


def _comm(pid: int) -> str:
    return _read(f"/proc/{pid}/comm")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _meminfo(key: str) -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def raise_inotify() -> tuple[tuple[str, str], ...]:
    """INOTIFY's limits raised where this host's are lower; the (key, value) pairs it found
    there, for `restore_inotify` when the last cluster goes."""
    found = []
    for key, want in INOTIFY.items():
        path = PROC_SYS / key
        have = path.read_text().strip()
        if int(have) < want:
            path.write_text(f"{want}\n")
            found.append((key, have))
    return tuple(found)


def restore_inotify(found: tuple[tuple[str, str], ...]) -> None:
    for key, value in found:
        (PROC_SYS / key).write_text(f"{value}\n")
