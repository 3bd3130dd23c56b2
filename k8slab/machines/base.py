"""The root file system every machine is copied from: Debian 12 (bookworm) by debootstrap,
with systemd, sshd, sudo and Python (what pyinfra and the deploy use), built once per recipe
and mirror and kept in the cache.

What kubelet needs of a machine that systemd-nspawn does not give is in the base too, switched
on per host by ``/etc/k8s-lab-machine/`` (written from ``host.probe()`` at each boot):
/dev/kmsg, the kernel tunables kubelet insists on, writable cgroup v1 controllers, and a runc
wrapper (capabilities the container's bounding set lacks; oom_score_adj where this host gives
no CAP_SYS_RESOURCE). A real VM has all of that; the deploy never sees these files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from k8slab.machines import MachinesError
from k8slab.machines.spec import CACHE_ROOT

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://security.debian.org/debian-security"
# curl and gnupg exist on the course's VMs; the deploy relies on them.
PACKAGES = (
    "systemd systemd-sysv dbus libpam-systemd openssh-server python3 sudo iproute2 kmod "
    "ca-certificates procps curl gnupg netbase iptables less"
).split()
RECIPE_VERSION = 5  # bump when what the build writes changes beyond the texts hashed below
CONF = "/etc/k8s-lab-machine"  # the per-host switches, inside a machine

Say = Callable[[str], None]


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def sources(mirror: str | None) -> list[AptSource]:
    """Where the roots and the machines' apt get Debian 12 from: `mirror` if given, else this
    host's own apt sources for bookworm (a local mirror keeps working), else Debian's."""
    if mirror:
        return [AptSource(mirror.rstrip("/"), (SUITE, f"{SUITE}-updates"), ("main",))]
    own = []
    for s in _host_sources():
        suites = tuple(x for x in s.suites if x == SUITE or x.startswith(SUITE + "-"))
        if suites:
            http = urlsplit(s.uri)._replace(scheme="http").geturl()
            own.append(AptSource(http, suites, s.components or ("main",)))
    if any(SUITE in s.suites for s in own):
        return own
    return [
        AptSource(DEFAULT_MIRROR, (SUITE, f"{SUITE}-updates"), ("main",)),
        AptSource(DEFAULT_SECURITY, (f"{SUITE}-security",), ("main",)),
    ]


def mirror_hosts(srcs: list[AptSource]) -> list[str]:
    return sorted({urlsplit(s.uri).hostname for s in srcs if urlsplit(s.uri).hostname})


def _host_sources() -> list[AptSource]:
    """Binary (deb) entries of this host's apt configuration, one-line and deb822 formats."""
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path(p) for p in glob.glob("/etc/apt/sources.list.d/*.list"))
    files += sorted(Path(p) for p in glob.glob("/etc/apt/sources.list.d/*.sources"))
    out: list[AptSource] = []
    for f in (f for f in files if f.is_file()):
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
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
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


def sources_file(srcs: list[AptSource]) -> str:
    return "\n".join(
        f"Types: deb\nURIs: {s.uri}\nSuites: {' '.join(s.suites)}\n"
        f"Components: {' '.join(s.components)}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        for s in srcs
    )


# --- what nspawn does not give kubelet ----------------------------------------------------


def _boot_unit(description: str, script: str) -> str:
    """A oneshot unit that runs `script` early at boot, before the machine's services."""
    return f"""\
[Unit]
Description=k8s-lab machine: {description}
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


# kubelet exits without /dev/kmsg (its OOM watcher reads it): nspawn gives none. kubelet also
# writes vm.overcommit_memory, kernel.panic and kernel.panic_on_oops when they differ from what
# it wants, and nspawn mounts /proc/sys read-only: files holding those values are bound over the
# entries, inside the machine only (CONF/tunables lists the ones this host differs on). Docker
# creates cgroups, and nspawn mounts the cgroup v1 controllers read-only: a bind remount of
# each makes it writable (a plain remount fails "busy").
KUBELET_HOST_SCRIPT = f"""\
#!/bin/sh
if [ ! -c /dev/kmsg ]; then
    rm -f /dev/kmsg
    mknod -m 0600 /dev/kmsg c 1 11 || echo "cannot make /dev/kmsg" >&2
fi
mkdir -p /run/k8s-lab-machine/sysctl
[ -f {CONF}/tunables ] && while read -r key value; do
    file=/run/k8s-lab-machine/sysctl/$(echo "$key" | tr / .)
    echo "$value" > "$file"
    mountpoint -q "/proc/sys/$key" || mount --bind "$file" "/proc/sys/$key" \\
        || echo "cannot bind $file over /proc/sys/$key" >&2
done < {CONF}/tunables
if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    for d in /sys/fs/cgroup/*; do
        mountpoint -q "$d" || continue
        mount -o remount,bind,rw "$d" || echo "cannot make $d writable" >&2
    done
fi
exit 0
"""

KUBELET_HOST_UNIT = _boot_unit(
    "/dev/kmsg, kernel tunables and cgroups for kubelet", "/usr/local/sbin/k8s-lab-machine-host"
)

# runc fails "unable to apply caps" when a privileged container (kube-proxy, weave) is given a
# capability the machine's bounding set lacks: the wrapper keeps only those it has. Where the
# host gives no CAP_SYS_RESOURCE (CONF/clamp-oom), no container may lower its oom_score_adj and
# runc fails every pod sandbox (cri-dockerd asks -998) with "can't get final child's PID from
# pipe: EOF": the wrapper raises a negative oomScoreAdj to 0. Then it runs runc.
RUNC_WRAPPER = f"""\
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
    process = (spec or {{}}).get("process") or {{}}
    changed = False
    if os.path.exists("{CONF}/clamp-oom") and process.get("oomScoreAdj", 0) < 0:
        process["oomScoreAdj"] = 0
        changed = True
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
    allowed = {{"CAP_" + n for i, n in enumerate(names) if bounding >> i & 1}}
    for kind, caps in (process.get("capabilities") or {{}}).items():
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

# The deploy's Docker phase owns /etc/docker/daemon.json; the wrapper is registered on dockerd's
# command line instead (a daemon.json may then not set default-runtime too). The rest is the
# command line of the docker.io and docker-ce units (their own containerd).
DOCKER_DROPIN = """\
[Service]
ExecStart=
ExecStart=/bin/sh -c 'exec "$$(command -v dockerd)" -H fd:// \\
    --containerd=/run/containerd/containerd.sock $$DOCKER_OPTS \\
    --add-runtime k8s-lab-machine=/usr/local/sbin/k8s-lab-machine-runc \\
    --default-runtime=k8s-lab-machine'
"""

FILES = {
    "usr/local/sbin/k8s-lab-machine-host": (KUBELET_HOST_SCRIPT, 0o755),
    "usr/local/sbin/k8s-lab-machine-runc": (RUNC_WRAPPER, 0o755),
    "etc/systemd/system/k8s-lab-machine-host.service": (KUBELET_HOST_UNIT, 0o644),
    "etc/systemd/system/docker.service.d/k8s-lab-machine.conf": (DOCKER_DROPIN, 0o644),
    "etc/ssh/sshd_config.d/k8s-lab-machine.conf": (
        "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\nPasswordAuthentication no\n",
        0o644,
    ),
    "etc/apt/apt.conf.d/02k8s-lab-machine": (
        'APT::Install-Recommends "false";\nAcquire::Retries "3";\n',
        0o644,
    ),
    "etc/fstab": ("# <file system> <mount point> <type> <options> <dump> <pass>\n", 0o644),
}


def key(srcs: list[AptSource]) -> str:
    recipe = {
        "v": RECIPE_VERSION,
        "suite": SUITE,
        "pkgs": PACKAGES,
        "sources": [s.__dict__ for s in srcs],
        "kernel": os.uname().release,
        "files": FILES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def path(srcs: list[AptSource]) -> Path:
    return CACHE_ROOT / f"base-{key(srcs)}"


def ready(srcs: list[AptSource]) -> bool:
    return (path(srcs) / ".k8s-lab-base").exists()


def ensure(srcs: list[AptSource], say: Say, force: bool = False) -> Path:
    """The base for these sources, built when missing (about 1.5 min, once)."""
    base = path(srcs)
    if ready(srcs) and not force:
        return base
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_ROOT / f"{base.name}.tmp"
    if tmp.exists():
        say(f"removing the partial base {tmp} of an earlier aborted run")
        umount_under(tmp)
        shutil.rmtree(tmp)
    main = next(s for s in srcs if SUITE in s.suites)
    say(f"building the Debian 12 base from {main.uri} (debootstrap, about 1.5 min, once) ...")
    t0 = time.monotonic()
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, tmp,
          main.uri])  # fmt: skip
    (tmp / "etc/apt/sources.list").unlink(missing_ok=True)
    (tmp / "etc/apt/sources.list.d/k8s-lab-machine.sources").write_text(sources_file(srcs))
    for rel, (text, mode) in FILES.items():
        f = tmp / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(mode)
    _builtin_modules(tmp)
    (tmp / "etc/resolv.conf").unlink(missing_ok=True)
    _chroot(
        tmp,
        """
        systemctl enable systemd-networkd.service k8s-lab-machine-host.service ssh.service
        systemctl mask systemd-resolved.service console-getty.service getty@tty1.service \
            systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
        rm -f /etc/ssh/ssh_host_*
        apt-get clean
        rm -rf /var/lib/apt/lists/*
        : > /etc/machine-id
        """,
    )
    (tmp / ".k8s-lab-base").write_text(key(srcs) + "\n")
    os.rename(tmp, base)
    say(f"base ready in {time.monotonic() - t0:.0f} s: {base}")
    for old in CACHE_ROOT.glob("base-*"):
        if old != base and old.is_dir() and not old.name.endswith(".tmp"):
            say(f"removing the outdated base {old}")
            shutil.rmtree(old, ignore_errors=True)
    return base


def _builtin_modules(root: Path) -> None:
    """Where this kernel has no /lib/modules (everything built in), kmod's modprobe succeeds
    for a module only when modules.builtin names it: list what /sys/module shows plus what the
    deploy, Docker and Kubernetes modprobe. Elsewhere the host's folder is bound in."""
    kver = os.uname().release
    if Path("/lib/modules", kver).is_dir():
        return
    known = (
        "net/bridge/br_netfilter net/bridge/bridge fs/overlayfs/overlay drivers/net/veth "
        "drivers/net/vxlan/vxlan net/netfilter/nf_conntrack net/netfilter/nf_nat "
        "net/netfilter/nf_tables net/netfilter/nft_compat net/netfilter/x_tables "
        "net/netfilter/xt_conntrack net/netfilter/xt_MASQUERADE net/netfilter/xt_addrtype "
        "net/netfilter/xt_mark net/netfilter/xt_comment net/netfilter/xt_multiport "
        "net/netfilter/xt_nat net/ipv4/netfilter/ip_tables net/ipv4/netfilter/iptable_filter "
        "net/ipv4/netfilter/iptable_nat net/ipv4/netfilter/iptable_mangle "
        "net/ipv6/netfilter/ip6_tables net/ipv6/netfilter/ip6table_filter "
        "net/ipv6/netfilter/ip6table_nat net/netfilter/ipset/ip_set net/netfilter/ipvs/ip_vs "
        "net/netfilter/ipvs/ip_vs_rr net/netfilter/ipvs/ip_vs_wrr net/netfilter/ipvs/ip_vs_sh "
        "net/ipv4/netfilter/nf_defrag_ipv4 net/ipv6/netfilter/nf_defrag_ipv6 net/llc/llc "
        "net/802/stp"
    ).split()
    lines = {f"kernel/{k}.ko" for k in known}
    lines |= {f"kernel/builtin/{p.name}.ko" for p in Path("/sys/module").iterdir()}
    moddir = root / "lib/modules" / kver
    moddir.mkdir(parents=True, exist_ok=True)
    (moddir / "modules.builtin").write_text("\n".join(sorted(lines)) + "\n")
    (moddir / "modules.order").write_text("")
    _chroot(root, f"depmod {kver}")


def _chroot(root: Path, script: str) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
    _run(["chroot", root, "/bin/sh", "-ec", script], env={**env, "LC_ALL": "C"})


def _run(cmd: list, **kw) -> None:
    r = subprocess.run(
        [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )
    if r.returncode != 0:
        tail = " / ".join(r.stdout.strip().splitlines()[-3:])
        raise MachinesError(f"{cmd[0]} failed (exit {r.returncode}): {tail}")


def umount_under(path: Path) -> None:
    p = str(path.resolve())
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m == p or m.startswith(p + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
