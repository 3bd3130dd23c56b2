"""The provider: each machine a systemd-nspawn container booted with systemd, its root a copy
of the base, its network a veth on the cluster's bridge, reached over SSH like a VM.

Proven on this project's CI machine (cgroup v1, PID 1 not systemd). On a host whose PID 1 is
systemd, nspawn runs in a scope of its own (``systemd-run --scope -p Delegate=yes``); on a
cgroup v2 host each machine gets a delegated subtree: both as systemd-nspawn documents them,
never run here.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from k8slab.machines import MachinesError, procs
from k8slab.machines.base import CONF, umount_under
from k8slab.machines.host import Needs
from k8slab.machines.network import PROXY_PORT
from k8slab.machines.procs import cgroup_mounts
from k8slab.machines.spec import CACHE_ROOT, NAT_ADDRESS, NAT_GATEWAY, Cluster, Machine

SUPERVISOR = "k8slab.machines.supervise"
Say = Callable[[str], None]


# --- keys ----------------------------------------------------------------------------------


def user_key(c: Cluster) -> Path:
    """The lab's key (made once per cluster). Owned by whoever ran sudo, so the deploy and
    labctl can use it without root."""
    if not c.key.exists():
        c.state.mkdir(parents=True, exist_ok=True)
        comment = f"k8s-lab-machines-{c.name}"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", c.key])
    return c.key


def host_key(c: Cluster, name: str) -> Path:
    """Made once per machine and kept in the cache, so known_hosts stays valid when a machine
    is made again (destroy, then up)."""
    key = CACHE_ROOT / "hostkeys" / c.name / name / "ssh_host_ed25519_key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", key])
    return key


def write_known_hosts(c: Cluster) -> None:
    lines = []
    for m in c.all:
        kind, blob = Path(f"{host_key(c, m.name)}.pub").read_text().split()[:2]
        lines.append(f"{m.ip} {kind} {blob}")
    c.known_hosts.write_text("\n".join(lines) + "\n")


def give_to_invoking_user(c: Cluster, paths: list[Path]) -> None:
    """Files the learner uses without root (key, known_hosts, topology) belong to whoever ran
    sudo; the state folder stays root's but readable."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    c.state.chmod(0o755)
    if uid and gid and os.geteuid() == 0:
        for p in paths:
            if p.exists():
                os.chown(p, int(uid), int(gid))


# --- roots ---------------------------------------------------------------------------------


def root_of(c: Cluster, name: str) -> Path:
    return c.roots / name


def has_root(c: Cluster, name: str) -> bool:
    return (root_of(c, name) / ".k8s-lab-machine").exists()


def make_root(c: Cluster, m: Machine, base: Path, say: Say) -> None:
    """A copy of the base with the machine's identity and the cluster's user (skipped when the
    machine has one: its state survives stop, start and up)."""
    if has_root(c, m.name):
        return
    t0 = time.monotonic()
    root, tmp = root_of(c, m.name), c.roots / f"{m.name}.tmp"
    for d in (tmp, root):
        if d.exists():
            umount_under(d)
            shutil.rmtree(d)
    c.roots.mkdir(parents=True, exist_ok=True)
    _run(["cp", "-a", "--reflink=auto", base, tmp])
    (tmp / ".k8s-lab-base").unlink(missing_ok=True)
    hostname = f"{c.name}-{m.name}"
    (tmp / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (tmp / "etc/hostname").write_text(hostname + "\n")
    (tmp / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    key = host_key(c, m.name)
    for src, mode in ((key, 0o600), (Path(f"{key}.pub"), 0o644)):
        shutil.copy2(src, tmp / "etc/ssh" / src.name)
        (tmp / "etc/ssh" / src.name).chmod(mode)
    u = c.user
    _run(["chroot", tmp, "/bin/sh", "-ec", f"""
        useradd --create-home --shell /bin/bash {u}
        install -d -m 0750 /etc/sudoers.d
        echo '{u} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{u}
        chmod 0440 /etc/sudoers.d/{u}
        install -d -m 0700 -o {u} -g {u} /home/{u}/.ssh
        """])  # fmt: skip
    (tmp / ".k8s-lab-machine").write_text(f"{c.name} {m.name}\n")
    os.rename(tmp, root)
    say(f"{m.name}: root file system made in {time.monotonic() - t0:.1f} s")


def remove_root(c: Cluster, name: str) -> None:
    # The marker goes first: a removal cut short (Ctrl-C, a busy mount) then leaves a half root
    # that the next `up` makes anew, instead of one it takes for whole and fails to configure.
    (root_of(c, name) / ".k8s-lab-machine").unlink(missing_ok=True)
    for d in (root_of(c, name), c.roots / f"{name}.tmp"):
        if d.exists():
            umount_under(d)
            shutil.rmtree(d)


def configure(c: Cluster, m: Machine, needs: Needs) -> None:
    """What may change between boots: the network for the cluster's mode, the user's key, and
    the work-arounds this host calls for (read by the base's boot unit and runc wrapper)."""
    root = root_of(c, m.name)
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    # A VM reaches Service IPs through its default route until kube-proxy's DNAT rewrites
    # them; with no route at all, connect() fails "network is unreachable" before iptables is
    # consulted (weave's first call to 10.96.0.1). Offline the default route is on-link with
    # no gateway: nothing leaves the bridge by it (an unanswered ARP, never this host).
    route = "Destination=0.0.0.0/0\nScope=link\n" if c.offline else f"Gateway={c.gateway}\n"
    plain = "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    (net / "80-container-host0.network").write_text(
        "[Match]\nKind=veth\nName=host0\n\n"
        f"[Network]\nAddress={m.ip}/{c.prefix}\n{plain}"
        + ("" if c.nat_nic else f"\n[Route]\n{route}")
    )
    nat = net / "81-container-nat0.network"
    if c.nat_nic:
        # VirtualBox's NAT adapter: the same address on every VM and the default route. Here
        # its gateway never answers (--offline): traffic that takes it goes nowhere, as a VM's
        # would to an address outside the NAT's reach.
        nat.write_text(
            "[Match]\nName=nat0\n\n"
            f"[Network]\nAddress={NAT_ADDRESS}/24\nGateway={NAT_GATEWAY}\n{plain}"
            "ConfigureWithoutCarrier=yes\n"
        )
    else:
        nat.unlink(missing_ok=True)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text(
        "# offline: no DNS (apt goes through the proxy on the gateway)\n"
        if c.offline
        else f"nameserver {c.gateway}\n"
    )
    proxy = root / "etc/apt/apt.conf.d/01k8s-lab-machine-proxy"
    if c.offline:
        proxy.write_text(
            f'Acquire::http::Proxy "http://{c.gateway}:{PROXY_PORT}/";\n'
            'Acquire::https::Proxy "DIRECT";\n'
        )
    else:
        proxy.unlink(missing_ok=True)
    conf = root / CONF.lstrip("/")
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "tunables").write_text("".join(f"{k} {v}\n" for k, v in needs.tunables))
    clamp = conf / "clamp-oom"
    if needs.clamp_oom:
        clamp.write_text("this host gives no CAP_SYS_RESOURCE\n")
    else:
        clamp.unlink(missing_ok=True)
    ssh_dir = root / "home" / c.user / ".ssh"
    ak = ssh_dir / "authorized_keys"
    ak.write_text(Path(f"{user_key(c)}.pub").read_text())
    owner = next(
        line.split(":")[2:4]
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith(c.user + ":")
    )
    for p in (ssh_dir, ak):
        os.chown(p, int(owner[0]), int(owner[1]))
    ak.chmod(0o600)


# --- power ---------------------------------------------------------------------------------


def _marker(c: Cluster, name: str) -> str:
    return f"{SUPERVISOR} --name {name} --state {c.state}"


def supervisor_pid(c: Cluster, name: str) -> int | None:
    return procs.running(c.state, name, _marker(c, name))


def nspawn_pid(c: Cluster, name: str) -> int | None:
    return procs.running(c.state, f"{name}.nspawn", "systemd-nspawn")


def running(c: Cluster, name: str) -> bool:
    return supervisor_pid(c, name) is not None or nspawn_pid(c, name) is not None


def nspawn_argv(c: Cluster, m: Machine, needs: Needs) -> list[str]:
    argv = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--directory={root_of(c, m.name)}",
        f"--machine={c.name}-{m.name}",
        f"--network-bridge={c.bridge}",
        *([f"--network-veth-extra={c.nat_link(m.name)}:nat0"] if c.nat_nic else []),
        "--resolv-conf=off",
        "--console=pipe",
        "--link-journal=no",
        # Docker and kubelet use keyrings and BPF, which nspawn's default filter refuses
        "--system-call-filter=@keyring bpf",
    ]
    if needs.cap_syslog:  # dmesg_restrict=1: kubelet's /dev/kmsg opens only with it
        argv.append("--capability=CAP_SYSLOG")
    if needs.module_dir:  # modprobe of what this kernel has loaded (host.load_modules)
        argv.append(f"--bind-ro=/lib/modules/{os.uname().release}")
    if needs.systemd_pid1:
        unit = f"k8s-lab-{c.name}-{m.name}"
        argv = ["systemd-run", "--scope", "--quiet", f"--unit={unit}", "-p", "Delegate=yes", *argv]
    return argv


def start(c: Cluster, m: Machine, needs: Needs, say: Say) -> None:
    """Boot the machine (no-op when it runs); `wait_ssh` waits for it."""
    if running(c, m.name):
        return
    if not has_root(c, m.name):
        raise MachinesError(f"{m.name}: no root file system: run labctl machines up")
    configure(c, m, needs)
    procs.pidfile(c.state, f"{m.name}.stop").unlink(missing_ok=True)
    argv = [SUPERVISOR, "--name", m.name, "--state", str(c.state)]
    if not needs.systemd_pid1:
        argv += ["--cgroup", f"{c.cgroup}/{m.name}"]
    pid = procs.start(
        c.state, m.name, [*argv, "--", *nspawn_argv(c, m, needs)], c.state / f"{m.name}.log"
    )
    for _ in range(100):  # until the child has exec'd (its command line names the supervisor)
        if supervisor_pid(c, m.name) or procs.zombie(pid):
            break
        time.sleep(0.05)
    say(f"{m.name}: booting ({m.ip})")


def _container_init(nspawn: int) -> int | None:
    for children in glob.glob(f"/proc/{nspawn}/task/*/children"):
        try:
            kids = Path(children).read_text().split()
        except OSError:
            continue
        if kids:
            return int(kids[0])
    return None


def stop(c: Cluster, name: str, say: Say, hard: bool = False, timeout: float = 30) -> None:
    """Power a machine off: cleanly (SIGTERM to nspawn = poweroff) or, hard, pull the plug."""
    sup, nsp = supervisor_pid(c, name), nspawn_pid(c, name)
    if not sup and not nsp:
        _forget(c, name)
        return
    procs.pidfile(c.state, f"{name}.stop").write_text("stop\n")  # the supervisor: no restart
    if nsp and hard:
        init = _container_init(nsp)
        say(f"{name}: pulling the plug (SIGKILL to the machine's init, pid {init})")
        if init:
            os.kill(init, signal.SIGKILL)
    elif nsp:
        say(f"{name}: shutting down")
        os.kill(nsp, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(c, name):
        time.sleep(0.2)
    for pid in filter(None, (nspawn_pid(c, name), supervisor_pid(c, name))):
        for p in filter(None, (_container_init(pid), pid)):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    while running(c, name):
        time.sleep(0.1)
    _forget(c, name)
    say(f"{name}: stopped")


def _forget(c: Cluster, name: str) -> None:
    for f in (name, f"{name}.nspawn", f"{name}.stop"):
        procs.pidfile(c.state, f).unlink(missing_ok=True)
    remove_cgroups(c, name)


def reboot(c: Cluster, name: str, say: Say, timeout: float = 120) -> None:
    """`systemctl reboot` inside; nspawn exits 133 and the supervisor boots it again."""
    before = nspawn_pid(c, name)
    if not before:
        raise MachinesError(f"{name} is not running: labctl machines start {name}")
    say(f"{name}: rebooting")
    ssh(c, name, "systemctl reboot", timeout=15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = nspawn_pid(c, name)
        if now and now != before:
            break
        if not supervisor_pid(c, name):
            raise MachinesError(f"{name}: its supervisor exited during the reboot")
        time.sleep(0.2)
    else:
        raise MachinesError(f"{name}: did not come back from the reboot in {timeout:.0f} s")
    wait_ssh(c, name, say, max(10.0, deadline - time.monotonic()))


def peak_memory(c: Cluster, name: str) -> int | None:
    """The most memory the machine has used since it booted, in bytes (cgroup v1), or None."""
    for mnt in cgroup_mounts():
        usage = mnt / c.cgroup / name / "memory.max_usage_in_bytes"
        if usage.is_file():
            return int(usage.read_text())
    return None


def memory_now(c: Cluster, name: str) -> int | None:
    for mnt in cgroup_mounts():
        for f in ("memory.usage_in_bytes", "memory.current"):
            usage = mnt / c.cgroup / name / f
            if usage.is_file():
                return int(usage.read_text())
    return None


def remove_cgroups(c: Cluster, name: str | None = None) -> None:
    """The machine's cgroups (or the whole cluster's), and the parents they leave empty."""
    for mnt in cgroup_mounts():
        top = mnt / c.cgroup
        target = top / name if name else top
        if target.is_dir():
            for d, _dirs, _files in sorted(os.walk(target), key=lambda x: -x[0].count("/")):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for parent in (top, top.parent):
            try:
                parent.rmdir()
            except OSError:
                pass


# --- SSH -----------------------------------------------------------------------------------


def ssh_argv(c: Cluster, name: str, timeout: float = 10, tty: bool = False) -> list[str]:
    m = c.machine(name)
    opts = {
        "UserKnownHostsFile": c.known_hosts,
        "StrictHostKeyChecking": "yes",
        "LogLevel": "ERROR",
        "ConnectTimeout": int(max(1, min(timeout, 10))),
        "ServerAliveInterval": 5,
    }
    if not tty:
        opts["BatchMode"] = "yes"
    argv = ["ssh", "-i", str(user_key(c))]
    for k, v in opts.items():
        argv += ["-o", f"{k}={v}"]
    return [*argv, *(["-t"] if tty else []), f"{c.user}@{m.ip}"]


def ssh(
    c: Cluster, name: str, cmd: str, root: bool = True, timeout: float = 600
) -> tuple[int, str, str]:
    remote = f"sudo -n sh -c {shlex.quote(cmd)}" if root else cmd
    try:
        r = subprocess.run(
            ssh_argv(c, name, timeout) + [remote],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        return 124, out, f"(timed out after {timeout:.0f} s)"
    return r.returncode, r.stdout, r.stderr


def wait_ssh(c: Cluster, name: str, say: Say, timeout: float = 90) -> float:
    """Until the machine has booted and answers SSH; the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = ""
    while time.monotonic() < deadline:
        if not running(c, name):
            raise MachinesError(f"{name}: the machine exited; see {c.state / (name + '.log')}")
        if c.nat_nic:  # nspawn leaves the host end down: a NAT adapter has a link
            subprocess.run(["ip", "link", "set", c.nat_link(name), "up"], capture_output=True)
        rc, out, err = ssh(
            c,
            name,
            "systemctl is-system-running --wait >/dev/null 2>&1; echo up",
            root=False,
            timeout=min(30, max(2, deadline - time.monotonic())),
        )
        if rc == 0 and "up" in out:
            took = time.monotonic() - t0
            say(f"{name}: SSH ready after {took:.1f} s")
            return took
        last = err.strip()
        time.sleep(0.3)
    raise MachinesError(f"{name}: no SSH after {timeout:.0f} s ({last or 'no answer'})")


def _run(cmd: list) -> None:
    r = subprocess.run([str(x) for x in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise MachinesError(f"{cmd[0]} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
