"""The k8s-lab test bed: three systemd-nspawn hosts on a private bridge, reachable over SSH.

Stdlib only, so `python3 -m tests.testbed ...` works with the system Python as well as the venv.

Layout (all overridable by environment, see README.md):

* cache  (TESTBED_CACHE, /var/cache/k8s-lab-testbed): the debootstrapped base (one directory per
  recipe), the hosts' SSH host keys (generated once, so known_hosts stays valid across rebuilds)
  and the busybox rootfs tarball docker imports inside the hosts.
* roots  (TESTBED_ROOTS, /var/lib/k8s-lab-testbed): one root file system per host, copied from
  the base on `up` and removed on `down`.
* state  (TESTBED_STATE, tests/testbed/.state): lab.yaml, the user's key, known_hosts, PID files,
  logs. Git-ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = Path(os.environ.get("TESTBED_STATE") or HERE / ".state")
CACHE = Path(os.environ.get("TESTBED_CACHE") or "/var/cache/k8s-lab-testbed")
ROOTS = Path(os.environ.get("TESTBED_ROOTS") or "/var/lib/k8s-lab-testbed")

BRIDGE = "k8slab-br0"
BRIDGE_IP = "10.0.2.1"
PREFIX = 24
PROXY_PORT = 3142
USER = "gurumee"
CGROUP_PARENT = "k8s-lab-testbed"


@dataclass(frozen=True)
class HostSpec:
    name: str
    role: str
    ip: str


HOSTS = (
    HostSpec("master", "control-plane", "10.0.2.15"),
    HostSpec("slave1", "worker", "10.0.2.4"),
    HostSpec("slave2", "worker", "10.0.2.5"),
)
# Not in the topology file, not started by `up`: a worker to add later (`add_spare`), as a
# learner adds a VM to a running cluster.
SPARES = (HostSpec("slave3", "worker", "10.0.2.6"),)
BY_NAME = {h.name: h for h in HOSTS + SPARES}

# What the base carries. curl and gnupg exist on the course's VMs; the deploys rely on them.
PACKAGES = (
    "systemd systemd-sysv dbus libpam-systemd openssh-server python3 sudo iproute2 kmod "
    "ca-certificates procps curl gnupg netbase iptables less"
).split()
RECIPE_VERSION = 4  # bump when the base build below changes (the files it writes count too)

SUPERVISOR = HERE / "supervise.py"
PROXY = HERE / "proxy.py"


class TestbedError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, quiet=False, **kw) -> subprocess.CompletedProcess:
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    kw.setdefault("text", True)
    if quiet:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
    r = subprocess.run(cmd, **kw)
    if check and r.returncode != 0:
        out = (r.stdout or "")[-3000:] if quiet else ""
        raise TestbedError(f"{' '.join(map(str, cmd))} exited {r.returncode}\n{out}")
    return r


# --------------------------------------------------------------------------- lock

LOCK_PATH = Path(os.environ.get("TESTBED_LOCK") or "/run/k8s-lab-testbed.lock")
_lock_fd: int | None = None
_lock_depth = 0


@contextlib.contextmanager
def locked(timeout: float | None = None, what: str = "use"):
    """One user of the bed at a time (a pytest session, or a CLI command); re-entrant."""
    global _lock_fd, _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    if timeout is None:
        timeout = float(os.environ.get("TESTBED_LOCK_TIMEOUT", "1800"))
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            if time.monotonic() > deadline:
                os.close(fd)
                raise TestbedError(
                    f"the test bed is busy ({holder}); gave up after {timeout:.0f}s"
                ) from None
            if not told:
                log(f"waiting for the test bed, in use by {holder}")
                told = True
            time.sleep(1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} ({what})\n".encode(), 0)
    _lock_fd, _lock_depth = fd, 1
    try:
        yield
    finally:
        _lock_depth = 0
        _lock_fd = None
        os.close(fd)


# --------------------------------------------------------------------------- preconditions


def unavailable_reason() -> str | None:
    """Why this machine cannot run the bed, or None when it can."""
    if sys.platform != "linux":
        return "the test bed needs Linux"
    if os.geteuid() != 0:
        return "the test bed needs root (systemd-nspawn, a bridge, cgroups)"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} not found (run tests/testbed/install-deps.sh)"
    if not Path("/bin/busybox").exists():
        return "/bin/busybox not found (run tests/testbed/install-deps.sh)"
    return None


# --------------------------------------------------------------------------- apt sources


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _source_files() -> list[Path]:
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path(p) for p in glob.glob("/etc/apt/sources.list.d/*.list"))
    files += sorted(Path(p) for p in glob.glob("/etc/apt/sources.list.d/*.sources"))
    return [f for f in files if f.is_file()]


def apt_sources() -> list[AptSource]:
    """Binary (deb) entries of this machine's apt configuration, one-line and deb822 formats."""
    out: list[AptSource] = []
    for f in _source_files():
        text = f.read_text(encoding="utf-8", errors="replace")
        if f.suffix == ".sources":
            for para in _deb822(text):
                if para.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in para.get("types", "").split():
                    continue
                comps = tuple(para.get("components", "").split())
                suites = tuple(para.get("suites", "").split())
                for uri in para.get("uris", "").split():
                    out.append(AptSource(uri.rstrip("/"), suites, comps))
        else:
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                words = line.split()
                if words[0] != "deb":
                    continue
                words = words[1:]
                if words and words[0].startswith("["):
                    while words and not words[0].endswith("]"):
                        words = words[1:]
                    words = words[1:]
                if len(words) >= 2:
                    out.append(AptSource(words[0].rstrip("/"), (words[1],), tuple(words[2:])))
    return out


def _deb822(text: str) -> list[dict[str, str]]:
    paras, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            cur[key] = value.strip()
    return paras


def codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise TestbedError("no VERSION_CODENAME in /etc/os-release")


def distro_sources() -> list[AptSource]:
    """The entries for this machine's own release (suite = codename or codename-*), as http."""
    cn = codename()
    out = []
    for s in apt_sources():
        suites = tuple(x for x in s.suites if x == cn or x.startswith(cn + "-"))
        if suites:
            parts = urlsplit(s.uri)
            out.append(AptSource(parts._replace(scheme="http").geturl(), suites, s.components))
    if not any(cn in s.suites for s in out):
        raise TestbedError(f"no apt source for {cn} on this machine to build the base from")
    return out


def proxy_allowed_hosts() -> list[str]:
    return sorted({urlsplit(s.uri).hostname for s in apt_sources() if urlsplit(s.uri).hostname})


# --------------------------------------------------------------------------- base image


def base_key() -> str:
    recipe = {
        "v": RECIPE_VERSION,
        "pkgs": PACKAGES,
        "sources": [s.__dict__ for s in distro_sources()],
        "kernel": os.uname().release,
        "user": USER,
        "files": [
            CGROUP_RW_UNIT,
            CGROUP_RW_SCRIPT,
            KUBELET_HOST_UNIT,
            KUBELET_HOST_SCRIPT,
            RUNC_WRAPPER,
            DOCKER_DROPIN,
        ],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_dir() -> Path:
    return CACHE / f"base-{base_key()}"


def _builtin_modules() -> list[str]:
    """modules.builtin lines: what /sys/module shows plus what Kubernetes and Docker modprobe.

    This kernel has everything built in and no /lib/modules; kmod's modprobe only succeeds for a
    built-in module when modules.builtin names it."""
    known = {
        "br_netfilter": "kernel/net/bridge/br_netfilter.ko",
        "bridge": "kernel/net/bridge/bridge.ko",
        "overlay": "kernel/fs/overlayfs/overlay.ko",
        "veth": "kernel/drivers/net/veth.ko",
        "vxlan": "kernel/drivers/net/vxlan/vxlan.ko",
        "nf_conntrack": "kernel/net/netfilter/nf_conntrack.ko",
        "nf_nat": "kernel/net/netfilter/nf_nat.ko",
        "nf_tables": "kernel/net/netfilter/nf_tables.ko",
        "nft_compat": "kernel/net/netfilter/nft_compat.ko",
        "x_tables": "kernel/net/netfilter/x_tables.ko",
        "xt_conntrack": "kernel/net/netfilter/xt_conntrack.ko",
        "xt_MASQUERADE": "kernel/net/netfilter/xt_MASQUERADE.ko",
        "xt_addrtype": "kernel/net/netfilter/xt_addrtype.ko",
        "xt_mark": "kernel/net/netfilter/xt_mark.ko",
        "xt_comment": "kernel/net/netfilter/xt_comment.ko",
        "xt_multiport": "kernel/net/netfilter/xt_multiport.ko",
        "xt_nat": "kernel/net/netfilter/xt_nat.ko",
        "ip_tables": "kernel/net/ipv4/netfilter/ip_tables.ko",
        "iptable_filter": "kernel/net/ipv4/netfilter/iptable_filter.ko",
        "iptable_nat": "kernel/net/ipv4/netfilter/iptable_nat.ko",
        "iptable_mangle": "kernel/net/ipv4/netfilter/iptable_mangle.ko",
        "ip6_tables": "kernel/net/ipv6/netfilter/ip6_tables.ko",
        "ip6table_filter": "kernel/net/ipv6/netfilter/ip6table_filter.ko",
        "ip6table_nat": "kernel/net/ipv6/netfilter/ip6table_nat.ko",
        "ip_set": "kernel/net/netfilter/ipset/ip_set.ko",
        "ip_vs": "kernel/net/netfilter/ipvs/ip_vs.ko",
        "ip_vs_rr": "kernel/net/netfilter/ipvs/ip_vs_rr.ko",
        "ip_vs_wrr": "kernel/net/netfilter/ipvs/ip_vs_wrr.ko",
        "ip_vs_sh": "kernel/net/netfilter/ipvs/ip_vs_sh.ko",
        "nf_defrag_ipv4": "kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko",
        "nf_defrag_ipv6": "kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko",
        "llc": "kernel/net/llc/llc.ko",
        "stp": "kernel/net/802/stp.ko",
    }
    lines = dict(known)
    for p in Path("/sys/module").iterdir():
        lines.setdefault(p.name, f"kernel/builtin/{p.name}.ko")
    return sorted(set(lines.values()))


def _boot_unit(description: str, script: str) -> str:
    """A oneshot unit that runs `script` early at boot, before the host's services."""
    return f"""\
[Unit]
Description=k8s-lab testbed: {description}
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={script}

[Install]
WantedBy=sysinit.target
"""


CGROUP_RW_UNIT = _boot_unit(
    "make the cgroup v1 controllers writable (Docker needs it)", "/usr/local/sbin/testbed-cgroup-rw"
)

CGROUP_RW_SCRIPT = """\
#!/bin/sh
# systemd-nspawn mounts the cgroup v1 controllers read-only; Docker creates cgroups in them.
# A plain remount fails with "busy"; a bind remount of each mount point works.
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for d in /sys/fs/cgroup/*; do
    mountpoint -q "$d" || continue
    mount -o remount,bind,rw "$d" || echo "cannot make $d writable" >&2
done
exit 0
"""


# What kubelet needs of a host that nspawn does not give (found by running kubelet in the bed).
# Bed-only: a real VM has all of it; the product's deploy never sees these files.
KUBELET_HOST_UNIT = _boot_unit(
    "/dev/kmsg and the kernel tunables kubelet wants", "/usr/local/sbin/testbed-kubelet-host"
)

# kubelet exits without /dev/kmsg (it watches it for OOM kills); nspawn gives none, and the
# node works only with CAP_SYSLOG, which supervise.py grants. kubelet also reads (and would
# write) vm.overcommit_memory, kernel.panic and kernel.panic_on_oops; nspawn mounts /proc/sys
# read-only and the kernel is this machine's, so files holding the wanted values are bound
# over those entries inside the host only.
KUBELET_HOST_SCRIPT = """\
#!/bin/sh
if [ ! -c /dev/kmsg ]; then
    rm -f /dev/kmsg
    mknod -m 0600 /dev/kmsg c 1 11 || echo "cannot make /dev/kmsg" >&2
fi
mkdir -p /run/testbed/sysctl
for kv in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do
    key=${kv%%=*}
    file=/run/testbed/sysctl/$(echo "$key" | tr / .)
    echo "${kv#*=}" > "$file"
    mountpoint -q "/proc/sys/$key" || mount --bind "$file" "/proc/sys/$key" \\
        || echo "cannot bind $file over /proc/sys/$key" >&2
done
exit 0
"""

# This machine gives no process CAP_SYS_RESOURCE, so no container may lower its
# oom_score_adj: runc fails every pod sandbox (cri-dockerd asks for -998) with "can't get
# final child's PID from pipe: EOF". Docker runs containers through this wrapper (the drop-in
# below), which raises a negative oomScoreAdj in the bundle's config.json to 0, then runs runc.
# Likewise nspawn's bounding set lacks some capabilities a privileged container (kube-proxy,
# weave) is given, and runc fails with "unable to apply caps": the wrapper drops those.
RUNC_WRAPPER = """\
#!/usr/bin/python3
import json
import os
import shutil
import sys

args = sys.argv[1:]
if "create" in args or "run" in args:
    bundle = "."
    for i, a in enumerate(args):
        if a in ("--bundle", "-b") and i + 1 < len(args):
            bundle = args[i + 1]
        elif a.startswith("--bundle="):
            bundle = a.split("=", 1)[1]
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError:
        spec = None
    process = (spec or {}).get("process") or {}
    changed = process.get("oomScoreAdj", 0) < 0
    if changed:
        process["oomScoreAdj"] = 0
    with open("/proc/self/status") as f:
        bounding = int(next(x for x in f if x.startswith("CapBnd:")).split()[1], 16)
    names = (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
        "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
        "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
        "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
        "CHECKPOINT_RESTORE"
    ).split()
    allowed = {"CAP_" + n for i, n in enumerate(names) if bounding >> i & 1}
    for kind, caps in (process.get("capabilities") or {}).items():
        kept = [c for c in caps if c in allowed]
        if kept != caps:
            process["capabilities"][kind] = kept
            changed = True
    if changed:
        with open(path, "w") as f:
            json.dump(spec, f)
runc = next((p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.path.exists(p)), None)
runc = runc or shutil.which("runc") or "runc"
os.execv(runc, [runc, *args])
"""

# The product's Docker phase owns /etc/docker/daemon.json; the runtime is registered on
# dockerd's command line instead (a daemon.json may then not set default-runtime too). The
# rest is the command line of the docker.io and docker-ce units (their own containerd).
DOCKER_DROPIN = """\
[Service]
ExecStart=
ExecStart=/bin/sh -c 'exec "$$(command -v dockerd)" -H fd:// \\
    --containerd=/run/containerd/containerd.sock $$DOCKER_OPTS \\
    --add-runtime testbed=/usr/local/sbin/testbed-runc --default-runtime=testbed'
"""


def _chroot(root: Path, script: str) -> None:
    run(
        ["chroot", str(root), "/bin/sh", "-ec", script],
        quiet=True,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND": "noninteractive",
            "LC_ALL": "C",
        },
    )


def busybox_tar() -> Path:
    """A busybox root file system for `docker import` inside the hosts (no registry pulls)."""
    tar = CACHE / "busybox-rootfs.tar"
    if tar.exists():
        return tar
    tmp = CACHE / "busybox-rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tmp / "bin" / "busybox")
    applets = run(["/bin/busybox", "--list"], quiet=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", tmp / "bin" / a)
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (tmp / d).mkdir()
    (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp / "etc" / "group").write_text("root:x:0:\n")
    run(["tar", "-C", str(tmp), "-cf", str(tar) + ".part", "."])
    os.rename(str(tar) + ".part", tar)
    shutil.rmtree(tmp)
    return tar


def ensure_base(force: bool = False) -> Path:
    base = base_dir()
    if (base / ".testbed-complete").exists() and not force:
        return base
    CACHE.mkdir(parents=True, exist_ok=True)
    sources = distro_sources()
    cn = codename()
    mirror = next(s.uri for s in sources if cn in s.suites)
    tmp = CACHE / f"{base.name}.tmp"
    if tmp.exists():
        log(f"removing the partial base {tmp} of an earlier aborted run")
        _umount_under(tmp)
        shutil.rmtree(tmp)
    log(f"building the base ({cn}, minbase + {len(PACKAGES)} packages from {mirror}) ...")
    t0 = time.monotonic()
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            cn,
            str(tmp),
            mirror,
        ],
        quiet=True,
    )
    log(f"debootstrap done in {time.monotonic() - t0:.0f}s; configuring")

    # apt: the machine's own mirrors (http), through the bridge proxy; there is no default route
    (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
    paras = []
    for s in sources:
        paras.append(
            f"Types: deb\nURIs: {s.uri}\nSuites: {' '.join(s.suites)}\n"
            f"Components: {' '.join(s.components) or 'main'}\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    (tmp / "etc/apt/sources.list.d/testbed.sources").write_text("\n".join(paras))
    (tmp / "etc/apt/apt.conf.d/01testbed-proxy").write_text(
        f'Acquire::http::Proxy "http://{BRIDGE_IP}:{PROXY_PORT}/";\n'
        'Acquire::https::Proxy "DIRECT";\n'
        'Acquire::Retries "3";\n'
    )
    (tmp / "etc/apt/apt.conf.d/02testbed-norecommends").write_text(
        'APT::Install-Recommends "false";\n'
    )

    # modprobe of built-in modules
    kver = os.uname().release
    moddir = tmp / "lib/modules" / kver
    moddir.mkdir(parents=True, exist_ok=True)
    (moddir / "modules.builtin").write_text("\n".join(_builtin_modules()) + "\n")
    (moddir / "modules.order").write_text("")

    # cgroup controllers writable at boot
    script = tmp / "usr/local/sbin/testbed-cgroup-rw"
    script.write_text(CGROUP_RW_SCRIPT)
    script.chmod(0o755)
    (tmp / "etc/systemd/system/testbed-cgroup-rw.service").write_text(CGROUP_RW_UNIT)
    for name, text in (
        ("testbed-kubelet-host", KUBELET_HOST_SCRIPT),
        ("testbed-runc", RUNC_WRAPPER),
    ):
        (tmp / "usr/local/sbin" / name).write_text(text)
        (tmp / "usr/local/sbin" / name).chmod(0o755)
    (tmp / "etc/systemd/system/testbed-kubelet-host.service").write_text(KUBELET_HOST_UNIT)
    (tmp / "etc/systemd/system/docker.service.d").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/systemd/system/docker.service.d/testbed-runtime.conf").write_text(DOCKER_DROPIN)

    (tmp / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/ssh/sshd_config.d/testbed.conf").write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\nPasswordAuthentication no\n"
    )
    (tmp / "etc/fstab").write_text("# <file system> <mount point> <type> <options> <dump> <pass>\n")
    (tmp / "etc/resolv.conf").unlink(missing_ok=True)
    (tmp / "etc/resolv.conf").write_text("# no DNS on the test bed; apt goes through the proxy\n")
    (tmp / "opt/testbed").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox_tar(), tmp / "opt/testbed/busybox-rootfs.tar")

    _chroot(
        tmp,
        f"""
        depmod {kver}
        useradd --create-home --shell /bin/bash {USER}
        install -d -m 0750 /etc/sudoers.d
        echo '{USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{USER}
        chmod 0440 /etc/sudoers.d/{USER}
        install -d -m 0700 -o {USER} -g {USER} /home/{USER}/.ssh
        systemctl enable systemd-networkd.service testbed-cgroup-rw.service \
            testbed-kubelet-host.service ssh.service
        systemctl mask systemd-resolved.service console-getty.service getty@tty1.service \
            systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
        rm -f /etc/ssh/ssh_host_*
        apt-get clean
        rm -rf /var/lib/apt/lists/*
        : > /etc/machine-id
    """,
    )
    (tmp / ".testbed-complete").write_text(f"{base_key()}\n")
    os.rename(tmp, base)
    log(f"base ready in {time.monotonic() - t0:.0f}s: {base}")
    for old in CACHE.glob("base-*"):
        if old != base and old.is_dir() and not old.name.endswith(".tmp"):
            log(f"removing the outdated base {old}")
            shutil.rmtree(old, ignore_errors=True)
    return base


# --------------------------------------------------------------------------- keys


def user_key() -> Path:
    key = STATE / "id_ed25519"
    if not key.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k8s-lab-testbed", "-f", str(key)]
        )
    return key


def host_key(name: str) -> Path:
    """Generated once per host and kept in the cache, so known_hosts survives base rebuilds."""
    d = CACHE / "hostkeys" / name
    key = d / "ssh_host_ed25519_key"
    if not key.exists():
        d.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)])
    return key


def known_hosts_lines() -> list[str]:
    lines = []
    for h in HOSTS + SPARES:
        pub = Path(str(host_key(h.name)) + ".pub").read_text().split()
        lines.append(f"{h.ip} {pub[0]} {pub[1]}")
    return lines


def write_state_files() -> Path:
    STATE.mkdir(parents=True, exist_ok=True)
    key = user_key()
    (STATE / "known_hosts").write_text("\n".join(known_hosts_lines()) + "\n")
    hosts = "\n".join(f"  - {{name: {h.name}, role: {h.role}, node_ip: {h.ip}}}" for h in HOSTS)
    lab = STATE / "lab.yaml"
    lab.write_text(
        "# Written by tests/testbed (python3 -m tests.testbed up): the three nspawn hosts.\n"
        f"ssh_user: {USER}\n"
        f"ssh_key: {key}\n"
        f"hosts:\n{hosts}\n"
        'kube_version: "1.35"\n'
        "docker_source: distro\n"
    )
    _fix_root_known_hosts()
    return lab


def _fix_root_known_hosts() -> None:
    """pyinfra reads ~/.ssh/known_hosts: drop stale entries for the bed's IPs, add the real ones."""
    kh = Path.home() / ".ssh" / "known_hosts"
    kh.parent.mkdir(mode=0o700, exist_ok=True)
    wanted = known_hosts_lines()
    for h, line in zip(HOSTS + SPARES, wanted, strict=True):
        if not kh.exists():
            break
        found = run(["ssh-keygen", "-F", h.ip, "-f", str(kh)], check=False, quiet=True).stdout
        entries = [x.split(None, 1)[1] for x in found.splitlines() if x and not x.startswith("#")]
        if entries and entries != [line.split(None, 1)[1]]:
            run(["ssh-keygen", "-R", h.ip, "-f", str(kh)], quiet=True)
    present = kh.read_text() if kh.exists() else ""
    with kh.open("a") as f:
        for line in wanted:
            if line not in present.splitlines():
                f.write(line + "\n")


# --------------------------------------------------------------------------- bridge and proxy


def ensure_bridge() -> None:
    if run(["ip", "link", "show", BRIDGE], check=False, quiet=True).returncode != 0:
        log(f"creating bridge {BRIDGE} {BRIDGE_IP}/{PREFIX}")
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE], quiet=True).stdout
    if f"{BRIDGE_IP}/{PREFIX}" not in addrs:
        run(["ip", "addr", "add", f"{BRIDGE_IP}/{PREFIX}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge() -> None:
    if run(["ip", "link", "show", BRIDGE], check=False, quiet=True).returncode == 0:
        log(f"removing bridge {BRIDGE}")
        run(["ip", "link", "del", BRIDGE])


def _pidfile(name: str) -> Path:
    return STATE / f"{name}.pid"


def _read_pid(name: str, marker: str) -> int | None:
    """The PID recorded under `name`, if that process still runs and is ours (cmdline check)."""
    try:
        pid = int(_pidfile(name).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError):
        return None
    if marker not in cmdline:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except OSError:
        return None
    return pid


def proxy_pid() -> int | None:
    return _read_pid("proxy", str(PROXY))


def _find_orphan_proxy() -> int | None:
    """A bed proxy on our address whose PID file was lost (a session killed mid-way)."""
    want = [str(PROXY), f"{BRIDGE_IP}:{PROXY_PORT}"]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(w in cmdline for w in want) and not _is_zombie(int(d.name)):
            return int(d.name)
    return None


def ensure_proxy() -> None:
    if proxy_pid():
        return
    orphan = _find_orphan_proxy()
    if orphan:
        log(f"adopting the running bed proxy (pid {orphan}) whose PID file was lost")
        STATE.mkdir(parents=True, exist_ok=True)
        _pidfile("proxy").write_text(f"{orphan}\n")
        return
    allowed = proxy_allowed_hosts()
    log(f"starting the apt proxy on {BRIDGE_IP}:{PROXY_PORT} (GET/HEAD to {', '.join(allowed)})")
    STATE.mkdir(parents=True, exist_ok=True)
    logf = open(STATE / "proxy.log", "ab")
    p = subprocess.Popen(
        [
            sys.executable,
            str(PROXY),
            "--listen",
            f"{BRIDGE_IP}:{PROXY_PORT}",
            "--allow",
            ",".join(allowed),
        ],
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=logf,
        start_new_session=True,
    )
    _pidfile("proxy").write_text(f"{p.pid}\n")
    import socket

    for _ in range(50):
        try:
            socket.create_connection((BRIDGE_IP, PROXY_PORT), timeout=0.5).close()
            return
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.1)
    if p.poll() is not None:
        raise TestbedError(f"the proxy exited {p.returncode}; see {STATE / 'proxy.log'}")
    raise TestbedError("the proxy did not start listening")


def stop_proxy() -> None:
    pid = proxy_pid()
    if pid:
        log(f"stopping the apt proxy (pid {pid})")
        _terminate(pid)
    _pidfile("proxy").unlink(missing_ok=True)


def _terminate(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- hosts


def root_of(name: str) -> Path:
    return ROOTS / name


def _personalize(h: HostSpec, root: Path) -> None:
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(f"testbed-{h.name}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\ttestbed-{h.name}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    # same name as the nspawn default (DHCP) so it replaces it. A VM reaches Service IPs
    # through its default route until kube-proxy's DNAT rewrites them; with no route at all,
    # connect() fails "network is unreachable" before iptables is consulted (weave's first
    # call to 10.96.0.1). So: a default route with no gateway, on-link. Nothing leaves the
    # bridge by it: an address no bed host has gets an unanswered ARP, never this machine.
    (net / "80-container-host0.network").write_text(
        "[Match]\nKind=veth\nName=host0\n\n"
        f"[Network]\nAddress={h.ip}/{PREFIX}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n"
        "[Route]\nDestination=0.0.0.0/0\nScope=link\n"
    )
    key = host_key(h.name)
    for src, mode in ((key, 0o600), (Path(str(key) + ".pub"), 0o644)):
        dst = root / "etc/ssh" / src.name
        shutil.copy2(src, dst)
        dst.chmod(mode)


def _authorize(root: Path) -> None:
    pub = Path(str(user_key()) + ".pub").read_text()
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ak = ssh_dir / "authorized_keys"
    ak.write_text(pub)
    uid_gid = (root / "etc/passwd").read_text()
    for line in uid_gid.splitlines():
        f = line.split(":")
        if f[0] == USER:
            for p in (ssh_dir, ak):
                os.chown(p, int(f[2]), int(f[3]))
    ssh_dir.chmod(0o700)
    ak.chmod(0o600)


def ensure_roots(base: Path, hosts: tuple[HostSpec, ...] = HOSTS) -> None:
    ROOTS.mkdir(parents=True, exist_ok=True)
    key = base_key()
    for h in hosts:
        root = root_of(h.name)
        stamp = root / ".testbed-host"
        if stamp.exists() and stamp.read_text().strip() == key:
            continue
        if host_running(h.name):
            log(f"{h.name} runs on an outdated root: stopping it for a new one")
            stop_host(h.name)
        t0 = time.monotonic()
        tmp = ROOTS / f"{h.name}.tmp"
        for d in (tmp, root):
            if d.exists():
                _umount_under(d)
                shutil.rmtree(d)
        run(["cp", "-a", "--reflink=auto", str(base), str(tmp)])
        (tmp / ".testbed-complete").unlink(missing_ok=True)
        _personalize(h, tmp)
        (tmp / ".testbed-host").write_text(key + "\n")
        os.rename(tmp, root)
        log(f"{h.name}: root file system copied from the base in {time.monotonic() - t0:.1f}s")


def supervisor_pid(name: str) -> int | None:
    return _read_pid(name, str(SUPERVISOR))


def nspawn_pid(name: str) -> int | None:
    return _read_pid(f"{name}.nspawn", "systemd-nspawn")


def host_running(name: str) -> bool:
    return supervisor_pid(name) is not None or nspawn_pid(name) is not None


def start_host(name: str, wait: bool = True, timeout: float = 90) -> None:
    h = BY_NAME[name]
    if host_running(name):
        if wait:
            wait_ssh(name, timeout)
        return
    root = root_of(name)
    if not (root / ".testbed-host").exists():
        raise TestbedError(f"{name}: no root file system at {root}; run `up`")
    _authorize(root)
    _pidfile(f"{name}.stop").unlink(missing_ok=True)
    logf = open(STATE / f"{name}.console.log", "ab")
    p = subprocess.Popen(
        [
            sys.executable,
            str(SUPERVISOR),
            "--name",
            name,
            "--root",
            str(root),
            "--bridge",
            BRIDGE,
            "--state",
            str(STATE),
            "--cgroup",
            f"{CGROUP_PARENT}/{name}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=logf,
        start_new_session=True,
    )
    _pidfile(name).write_text(f"{p.pid}\n")
    for _ in range(100):  # until the child has exec'd (its cmdline names the supervisor)
        if supervisor_pid(name) or p.poll() is not None:
            break
        time.sleep(0.05)
    log(f"{name}: booting ({h.ip}, supervisor pid {p.pid})")
    if wait:
        wait_ssh(name, timeout)


def _container_init(nspawn: int) -> int | None:
    for children in glob.glob(f"/proc/{nspawn}/task/*/children"):
        try:
            kids = Path(children).read_text().split()
        except OSError:
            continue
        if kids:
            return int(kids[0])
    return None


def stop_host(name: str, hard: bool = False, timeout: float = 30) -> None:
    """Power a host off: cleanly (SIGTERM to nspawn = poweroff) or, with hard, pull the plug."""
    sup, nsp = supervisor_pid(name), nspawn_pid(name)
    if not sup and not nsp:
        _cleanup_host(name)
        return
    STATE.mkdir(parents=True, exist_ok=True)
    _pidfile(f"{name}.stop").write_text("stop\n")  # tells the supervisor not to restart
    if nsp:
        if hard:
            init = _container_init(nsp)
            log(f"{name}: pulling the plug (SIGKILL to the container's init, pid {init})")
            if init:
                os.kill(init, signal.SIGKILL)
        else:
            log(f"{name}: shutting down")
            os.kill(nsp, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (supervisor_pid(name) or nspawn_pid(name)):
        time.sleep(0.2)
    for pid in filter(None, (nspawn_pid(name), supervisor_pid(name))):
        init = _container_init(pid)
        for p in filter(None, (init, pid)):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    while supervisor_pid(name) or nspawn_pid(name):
        time.sleep(0.1)
    _cleanup_host(name)
    log(f"{name}: stopped")


def _cleanup_host(name: str) -> None:
    for f in (name, f"{name}.nspawn", f"{name}.stop"):
        _pidfile(f).unlink(missing_ok=True)
    remove_cgroups(name)


def cgroup_mounts() -> list[Path]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            out.append(Path(fields[4]))
    return out


def peak_memory(name: str) -> int | None:
    for mnt in cgroup_mounts():
        usage = mnt / CGROUP_PARENT / name / "memory.max_usage_in_bytes"
        if usage.is_file():
            return int(usage.read_text())
    return None


def remove_cgroups(name: str | None = None) -> None:
    for mnt in cgroup_mounts():
        top = mnt / CGROUP_PARENT
        target = top / name if name else top
        if not target.is_dir():
            continue
        for d, _dirs, _files in sorted(os.walk(target), key=lambda x: -x[0].count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass
        if name:
            try:
                os.rmdir(top)
            except OSError:
                pass


def reboot_host(name: str, timeout: float = 120) -> None:
    """`systemctl reboot` inside; nspawn exits 133 and the supervisor boots it again."""
    before = nspawn_pid(name)
    if not before:
        raise TestbedError(f"{name} is not running")
    log(f"{name}: rebooting")
    ssh(name, "systemctl reboot", timeout=15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = nspawn_pid(name)
        if now and now != before:
            break
        if not supervisor_pid(name):
            raise TestbedError(f"{name}: the supervisor exited during the reboot")
        time.sleep(0.2)
    else:
        raise TestbedError(f"{name}: did not come back from the reboot in {timeout}s")
    wait_ssh(name, max(10.0, deadline - time.monotonic()))


def ssh_argv(name: str, timeout: float = 10) -> list[str]:
    h = BY_NAME[name]
    return [
        "ssh",
        "-i",
        str(user_key()),
        "-o",
        f"UserKnownHostsFile={STATE / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={int(max(1, min(timeout, 10)))}",
        "-o",
        "ServerAliveInterval=5",
        f"{USER}@{h.ip}",
    ]


def ssh(name: str, cmd: str, root: bool = True, timeout: float = 600) -> tuple[int, str, str]:
    remote = f"sudo -n sh -c {shlex.quote(cmd)}" if root else cmd
    try:
        r = subprocess.run(
            ssh_argv(name, timeout) + [remote],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        return 124, e.stdout or "", (e.stderr or "") + f"\n(timed out after {timeout}s)"
    return r.returncode, r.stdout, r.stderr


def wait_ssh(name: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    last = ""
    while time.monotonic() < deadline:
        if not host_running(name):
            raise TestbedError(f"{name}: the host exited; see {STATE / (name + '.console.log')}")
        rc, out, err = ssh(
            name,
            "systemctl is-system-running --wait >/dev/null 2>&1; echo up",
            root=False,
            timeout=min(30, max(2, deadline - time.monotonic())),
        )
        if rc == 0 and "up" in out:
            log(f"{name}: SSH ready after {time.monotonic() - t0:.1f}s")
            return
        last = err.strip()
        time.sleep(0.3)
    raise TestbedError(f"{name}: no SSH after {timeout}s ({last})")


def _umount_under(path: Path) -> None:
    p = str(path.resolve())
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m == p or m.startswith(p + "/")), reverse=True):
        run(["umount", "-l", m], check=False, quiet=True)


# --------------------------------------------------------------------------- whole bed


def up() -> Path:
    reason = unavailable_reason()
    if reason:
        raise TestbedError(reason)
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    base = ensure_base()
    for h in HOSTS + SPARES:
        host_key(h.name)
    lab = write_state_files()
    ensure_bridge()
    ensure_proxy()
    ensure_roots(base)
    for h in HOSTS:
        start_host(h.name, wait=False)
    for h in HOSTS:
        wait_ssh(h.name)
    log(f"up in {time.monotonic() - t0:.1f}s; topology: {lab}")
    return lab


def add_spare(name: str) -> None:
    """Give the spare host a fresh root and start it (the bed must be up)."""
    spare = next(h for h in SPARES if h.name == name)
    if host_running(name):
        stop_host(name)
    for d in (root_of(name), ROOTS / f"{name}.tmp"):
        if d.exists():
            _umount_under(d)
            shutil.rmtree(d)
    ensure_roots(ensure_base(), (spare,))
    start_host(name)


def renew_roots() -> None:
    """Every host (spares too) stopped and its root copied anew from the base: bare hosts."""
    for h in HOSTS + SPARES:
        stop_host(h.name)
        for d in (root_of(h.name), ROOTS / f"{h.name}.tmp"):
            if d.exists():
                _umount_under(d)
                shutil.rmtree(d)
    remove_cgroups()
    up()


def down(keep_roots: bool = False) -> None:
    for h in HOSTS + SPARES:
        stop_host(h.name)
    stop_proxy()
    remove_bridge()
    remove_cgroups()
    if not keep_roots and ROOTS.exists():
        for h in HOSTS + SPARES:
            for d in (root_of(h.name), ROOTS / f"{h.name}.tmp"):
                if d.exists():
                    _umount_under(d)
                    shutil.rmtree(d)
        log(f"removed the hosts' root file systems under {ROOTS}")
    for f in STATE.glob("*.pid"):
        f.unlink()
    log("down")


def status() -> dict[str, str]:
    out = {}
    br = run(["ip", "link", "show", BRIDGE], check=False, quiet=True).returncode == 0
    out["bridge"] = f"{BRIDGE} {'up' if br else 'absent'}"
    pid = proxy_pid()
    out["proxy"] = f"running (pid {pid})" if pid else "stopped"
    base = base_dir() if distro_sources() else None
    out["base"] = f"{base} ({'ready' if base and base.exists() else 'not built'})"
    for h in HOSTS:
        sup, nsp = supervisor_pid(h.name), nspawn_pid(h.name)
        if not sup and not nsp:
            out[h.name] = f"{h.ip} stopped"
            continue
        rc, _, _ = ssh(h.name, "true", root=False, timeout=5)
        out[h.name] = (
            f"{h.ip} running (supervisor {sup}, nspawn {nsp}), ssh {'ok' if rc == 0 else 'down'}"
        )
    out["config"] = str(STATE / "lab.yaml")
    return out
