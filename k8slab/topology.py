"""The topology file: hosts, IPs, versions and CIDRs, read by the deploy and by labctl.

Validated as a whole before anything connects; every problem is one line that names the key::

    >>> topo = load("inventory/lab.yaml")
    >>> topo.control_plane.node_ip
    '10.0.2.15'
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from k8slab.errors import LabctlError

# REPO_ROOT is where a clone keeps inventory/, labs/, templates/ and manifests/. A wheel
# carries those three inside the package (pyproject.toml maps them there), so DATA_ROOT is
# the package in an installed labctl and the clone's top level otherwise: one copy each.
PACKAGE_ROOT = Path(str(files("k8slab")))
REPO_ROOT = PACKAGE_ROOT.parent
DATA_ROOT = PACKAGE_ROOT if (PACKAGE_ROOT / "labs").is_dir() else REPO_ROOT
DEFAULT_PATH = Path("inventory") / "lab.yaml"
ENV_VAR = "LAB_CONFIG"

SUPPORTED_KUBE_MINORS = ("1.35", "1.36", "1.37")
ROLES = ("control-plane", "worker")
DOCKER_SOURCES = ("docker", "distro")
IPTABLES_BACKENDS = ("nft", "legacy")

DEFAULTS: dict[str, Any] = {
    "ssh_user": None,
    "ssh_key": None,
    "ssh_port": 22,
    "kube_version": "1.36",
    "kube_pod_subnet": "10.32.0.0/12",
    "kube_service_subnet": "10.96.0.0/12",
    "docker_source": "docker",
    "cri_dockerd_version": "0.4.3",
    "cri_dockerd_sha256": None,
    "weave_image_repo": "docker.io/rajchaudhuri",
    "weave_version": "2.9.0",
    "weave_iptables_backend": "nft",
    "weave_fastdp": "auto",
    "kube_apt_repo": "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/",
    "kube_apt_key": None,
    "docker_apt_repo": "https://download.docker.com/linux/{distro}",
    "docker_apt_key": None,
    "cri_dockerd_url": (
        "https://github.com/Mirantis/cri-dockerd/releases/download/"
        "v{version}/cri-dockerd-{version}.{arch}.tgz"
    ),
    "kube_image_repository": "registry.k8s.io",
    "image_archives": None,
    "allow_cgroup_v1": False,
    "kube_proxy_tune_conntrack": True,
    "labs": {},
}
HOST_KEYS = ("name", "role", "node_ip", "ssh_host", "ssh_port", "ssh_user", "ssh_key")
TOP_KEYS = ("hosts", *DEFAULTS)

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^(https?://[^/\s]+|file:/)[^\s]*$")
_IMAGE_REPO = re.compile(r"^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9._-]+)*$")


class TopologyError(LabctlError, ValueError):
    """A topology file that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class Host:
    name: str
    role: str
    node_ip: str
    ssh_host: str
    ssh_port: int
    ssh_user: str | None
    ssh_key: str | None

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


@dataclass(frozen=True)
class Topology:
    path: Path
    hosts: tuple[Host, ...]
    kube_version: str
    kube_pod_subnet: str
    kube_service_subnet: str
    docker_source: str
    cri_dockerd_version: str
    cri_dockerd_sha256: str | None
    weave_image_repo: str
    weave_version: str
    weave_iptables_backend: str
    kube_apt: AptSource
    docker_apt: AptSource
    cri_dockerd: Download
    kube_image_repository: str
    image_archives: tuple[ImageArchive, ...] = ()
    allow_cgroup_v1: bool = False
    kube_proxy_tune_conntrack: bool = True
    # "auto", True or False; k8slab.weave decides "auto" from the nodes.
    weave_fastdp: bool | str = "auto"
    labs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every top-level value but the SSH ones, as written (or defaulted): what a bundle keeps.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def control_plane(self) -> Host:
        return next(h for h in self.hosts if h.is_control_plane)

    @property
    def workers(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if not h.is_control_plane)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TopologyError(f"{self.path}: no host named {name!r}")

    def cluster_vars(self) -> dict[str, Any]:
        """The values every host template and manifest is rendered with."""
        return {
            "kube_version": self.kube_version,
            "kube_pod_subnet": self.kube_pod_subnet,
            "kube_service_subnet": self.kube_service_subnet,
            "kube_api_address": self.control_plane.node_ip,
            "kube_cri_socket": CRI_SOCKET,
            "docker_source": self.docker_source,
            "cri_dockerd_version": self.cri_dockerd_version,
            "cri_dockerd_sha256": self.cri_dockerd_sha256,
            "weave_image_repo": self.weave_image_repo,
            "weave_version": self.weave_version,
            "weave_iptables_backend": self.weave_iptables_backend,
            "kube_apt": self.kube_apt.as_dict(),
            "docker_apt": self.docker_apt.as_dict(),
            "cri_dockerd": self.cri_dockerd.as_dict(),
            "kube_image_repository": self.kube_image_repository,
            "image_archives": [a.as_dict() for a in self.image_archives],
            "allow_cgroup_v1": self.allow_cgroup_v1,
            "kube_proxy_tune_conntrack": self.kube_proxy_tune_conntrack,
            "weave_fastdp": self.weave_fastdp,
            "source_probes": self.source_probes(),
            "nodes": [{"name": h.name, "node_ip": h.node_ip, "role": h.role} for h in self.hosts],
        }

    def source_probes(self) -> list[str]:
        """The URLs the hosts download from (doctor's `sources` check asks each host for them;
        local files are uploaded, not probed). {distro}, {codename} and {arch} are the host's."""
        urls: list[str] = []
        apt = [(self.kube_apt, "InRelease")]
        if self.docker_source == "docker":
            apt.append((self.docker_apt, "dists/{codename}/InRelease"))
        for source, release in apt:
            if source.repo.url:
                flat = source is self.kube_apt
                urls.append(f"{source.repo.url.rstrip('/')}/{'InRelease' if flat else release}")
            if source.key.url:
                urls.append(source.key.url)
        if self.cri_dockerd.url:
            urls.append(self.cri_dockerd.url.replace("{version}", self.cri_dockerd_version))
        if not self.image_archives:  # with archives loaded, no node pulls
            for repo in (self.kube_image_repository, self.weave_image_repo):
                registry = repo.split("/")[0]
                registry = "registry-1.docker.io" if registry == "docker.io" else registry
                urls.append(f"https://{registry}/v2/")
        return list(dict.fromkeys(urls))

    def host_vars(self, host: Host) -> dict[str, Any]:
        """cluster_vars() plus the values of one node: what its host templates see, and
        the image archives it loads (k8slab.archives: only those its role runs)."""
        from k8slab import archives

        return {
            **self.cluster_vars(),
            "node_name": host.name,
            "node_ip": host.node_ip,
            "node_role": host.role,
            "node_image_archives": archives.for_host(self, host),
        }


CRI_SOCKET = "unix:///var/run/cri-dockerd.sock"


@dataclass(frozen=True)
class Download:
    """Something the deploy fetches: a URL the hosts download, or a file on this machine
    (`local` is its absolute path) that the deploy uploads."""

    url: str | None
    local: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "local": self.local}


@dataclass(frozen=True)
class AptSource:
    """An apt repository (`repo`: a URL, or a local flat repository directory the deploy
    uploads) and its signing key (`key`: a URL, or a local file; `armored` tells apt which)."""

    repo: Download
    key: Download
    armored: bool

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo.as_dict(), "key": self.key.as_dict(), "armored": self.armored}


@dataclass(frozen=True)
class ImageArchive:
    """A `docker save` archive on this machine and the image tags its manifest.json names."""

    path: str
    tags: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tags": list(self.tags)}


def _clone_default() -> Path | None:
    """The clone's own inventory/lab.yaml; an installed package has no such file."""
    path = REPO_ROOT / DEFAULT_PATH
    return path if (REPO_ROOT / "pyproject.toml").is_file() else None


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """--config beats $LAB_CONFIG beats ./inventory/lab.yaml beats the clone's own file."""
    if path:
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if DEFAULT_PATH.exists():
        return DEFAULT_PATH
    return _clone_default() or DEFAULT_PATH


def which_note(path: str | os.PathLike | None = None) -> str:
    """One line when the file read is not one the user named or has here: no --config, no
    $LAB_CONFIG and no ./inventory/lab.yaml, so the clone's own file (the course's values:
    master 10.0.2.15, ssh_user gurumee unless edited) is used; '' otherwise."""
    if path or os.environ.get(ENV_VAR) or DEFAULT_PATH.exists():
        return ""
    used = _clone_default()
    where = f"using {used}" if used and used.exists() else "and no other file"
    return (
        f"no {DEFAULT_PATH} in this folder ({Path.cwd()}): {where}; name yours with "
        f"--config FILE or ${ENV_VAR}"
    )


def load(path: str | os.PathLike | None = None) -> Topology:
    p = resolve_path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        looked = ["--config", f"${ENV_VAR}", f"./{DEFAULT_PATH}"]
        if _clone_default():
            looked.append(str(_clone_default()))
        raise TopologyError(
            f"topology file {p} not found (looked at: {', '.join(looked)}); write one as "
            'README.md says ("Prepare your three VMs")'
        ) from None
    except OSError as e:
        raise TopologyError(f"{p}: cannot read: {e.strerror}") from None
    raw = parse_yaml(data, p)
    return parse(raw, p)


def parse_yaml(data: bytes, p: Path) -> Any:
    """YAML text to data, with the mistakes a hand-edited file makes named and explained."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        try:
            data.decode("cp949")
            guess = " (it looks like CP949/EUC-KR: Windows Notepad's Korean ANSI)"
        except UnicodeDecodeError:
            guess = ""
        raise TopologyError(
            f"{p}: line {line}: not UTF-8{guess}; save it as UTF-8 (Notepad: Save as, "
            f"Encoding UTF-8) or run: iconv -f cp949 -t utf-8 {p} > fixed.yaml"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "'\\t'" in problem or "tab character" in problem:
            raise TopologyError(f"{p}:{where} YAML does not allow tabs, use spaces") from None
        raise TopologyError(f"{p}:{where} malformed YAML: {problem}") from None


def parse(raw: Any, path: Path = DEFAULT_PATH, check_files: bool = True) -> Topology:
    """The topology in `raw`; check_files=False takes local source paths on trust (a bundle
    replayed on another machine), without reading them."""

    def fail(key: str, problem: str) -> TopologyError:
        return TopologyError(f"{path}: {key}: {problem}")

    if not isinstance(raw, dict):
        raise fail("(top)", "expected a mapping of keys (ssh_user, hosts, kube_version, ...)")
    # Independent keys are each checked, so a file with two mistakes names both (one line
    # each), not only the first.
    errors: list[TopologyError] = []

    def each(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return check(*args, **kwargs)
        except TopologyError as e:
            errors.append(e)
            return None

    each(_reject_unknown, raw, TOP_KEYS, "", fail)
    cfg = {**DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}

    hosts_raw = raw.get("hosts")
    if not isinstance(hosts_raw, list) or not hosts_raw:
        errors.append(fail("hosts", "expected a list of hosts (name, role, node_ip)"))
        hosts_raw = []
    parsed = [each(_parse_host, i, h, cfg, fail) for i, h in enumerate(hosts_raw)]
    hosts = tuple(h for h in parsed if h is not None)
    if hosts and len(hosts) == len(parsed):  # each host is right: now the hosts together
        each(_hosts_together, hosts, fail)

    version = each(_kube_version, cfg, fail)
    pod = each(_network, cfg["kube_pod_subnet"], "kube_pod_subnet", fail)
    svc = each(_network, cfg["kube_service_subnet"], "kube_service_subnet", fail)
    if pod and svc:
        each(_subnets_apart, pod, svc, hosts, fail)

    each(_choice, cfg, "docker_source", DOCKER_SOURCES, fail)
    each(_choice, cfg, "weave_iptables_backend", IPTABLES_BACKENDS, fail)
    for key in ("cri_dockerd_version", "weave_version"):
        if not _VERSION.match(str(cfg[key])):
            errors.append(fail(key, f"{cfg[key]!r} is not a version like 1.2.3"))
    sha = cfg["cri_dockerd_sha256"]
    if sha is not None and not _SHA256.match(str(sha)):
        errors.append(fail("cri_dockerd_sha256", "expected 64 lowercase hex digits"))
    for key in ("allow_cgroup_v1", "kube_proxy_tune_conntrack"):
        if not isinstance(cfg[key], bool):
            errors.append(fail(key, f"{cfg[key]!r} is not true or false"))
    if not isinstance(cfg["weave_fastdp"], bool) and cfg["weave_fastdp"] != "auto":
        errors.append(fail("weave_fastdp", f"{cfg['weave_fastdp']!r} is not auto, true or false"))
    image_repo = str(cfg["kube_image_repository"]).rstrip("/")
    if not _IMAGE_REPO.match(image_repo):
        errors.append(
            fail(
                "kube_image_repository",
                f"{image_repo!r} is not a registry path like registry.k8s.io",
            )
        )
    sources = _Sources(path, fail, check_files)
    kube_apt = each(
        sources.apt,
        "kube_apt_repo",
        "kube_apt_key",
        cfg,
        minor=version or DEFAULTS["kube_version"],
        key_name="Release.key",
    )
    docker_apt = each(sources.apt, "docker_apt_repo", "docker_apt_key", cfg, key_name="gpg")
    cri_dockerd = each(sources.download, "cri_dockerd_url", cfg["cri_dockerd_url"])
    if sha is not None and cri_dockerd and cri_dockerd.local and check_files:
        actual = hashlib.sha256(Path(cri_dockerd.local).read_bytes()).hexdigest()
        if actual != sha:
            errors.append(fail("cri_dockerd_sha256", f"{cri_dockerd.local} has sha256 {actual}"))
    archives = each(sources.image_archives, cfg["image_archives"])
    if not isinstance(cfg["labs"], dict) or not all(
        isinstance(v, dict) for v in cfg["labs"].values()
    ):
        errors.append(fail("labs", "expected a mapping of lab name to a mapping of overrides"))
    if errors:
        raise TopologyError("\n".join(dict.fromkeys(str(e) for e in errors)))

    return Topology(
        path=path,
        hosts=hosts,
        kube_version=version,
        kube_pod_subnet=str(pod),
        kube_service_subnet=str(svc),
        docker_source=cfg["docker_source"],
        cri_dockerd_version=str(cfg["cri_dockerd_version"]),
        cri_dockerd_sha256=sha,
        weave_image_repo=str(cfg["weave_image_repo"]).rstrip("/"),
        weave_version=str(cfg["weave_version"]),
        weave_iptables_backend=cfg["weave_iptables_backend"],
        kube_apt=kube_apt,
        docker_apt=docker_apt,
        cri_dockerd=cri_dockerd,
        kube_image_repository=image_repo,
        image_archives=archives,
        allow_cgroup_v1=cfg["allow_cgroup_v1"],
        kube_proxy_tune_conntrack=cfg["kube_proxy_tune_conntrack"],
        weave_fastdp=cfg["weave_fastdp"],
        labs=cfg["labs"],
        settings={k: cfg[k] for k in DEFAULTS if not k.startswith("ssh_")},
    )


def _hosts_together(hosts: tuple[Host, ...], fail) -> None:
    _unique(hosts, "name", fail)
    _unique(hosts, "node_ip", fail)
    cps = [h for h in hosts if h.is_control_plane]
    if len(cps) != 1:
        found = ", ".join(h.name for h in cps) or "none"
        raise fail("hosts", f"exactly one host needs role: control-plane (found: {found})")
    if not any(not h.is_control_plane for h in hosts):
        raise fail("hosts", "at least one host needs role: worker")


def _kube_version(cfg: dict, fail) -> str:
    if isinstance(cfg["kube_version"], float):
        raise fail(
            "kube_version",
            f"YAML read this as the number {cfg['kube_version']} (1.30 becomes 1.3): "
            'put it in quotes, e.g. kube_version: "1.36"',
        )
    version = str(cfg["kube_version"])
    if version not in SUPPORTED_KUBE_MINORS:
        raise fail(
            "kube_version",
            f"{version!r} is not a supported minor (supported: {', '.join(SUPPORTED_KUBE_MINORS)})",
        )
    return version


def _subnets_apart(pod, svc, hosts: tuple[Host, ...], fail) -> None:
    if pod.overlaps(svc):
        raise fail("kube_service_subnet", f"{svc} overlaps kube_pod_subnet {pod}")
    for h in hosts:
        ip = ipaddress.ip_address(h.node_ip)
        for key, net in (("kube_pod_subnet", pod), ("kube_service_subnet", svc)):
            if ip in net:
                raise fail(key, f"{net} contains node_ip {ip} of host {h.name}")


class _Sources:
    """Reads the download-source keys: a URL (http, https, file:) or a path on this machine,
    relative to the topology file's directory. Placeholders such as {minor} stay in URLs
    until the deploy knows their values (the distribution, the architecture)."""

    def __init__(self, path: Path, fail, check_files: bool):
        self.base = Path(path).expanduser().resolve().parent
        self.fail = fail
        self.check_files = check_files

    def _local(self, key: str, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def download(self, key: str, value: Any, want_dir: bool = False) -> Download:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "expected a URL (https://, http://, file:/) or a local path")
        value = value.strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):  # a scheme: a URL, or a typo in one
            if not _URL.match(value):
                raise self.fail(key, f"{value!r} is not a URL (https://host/..., file:/path)")
            return Download(url=value, local=None)
        local = self._local(key, value)
        if not self.check_files:
            return Download(url=None, local=str(local))
        if want_dir and not local.is_dir():
            raise self.fail(key, f"{local} is not a directory (a local flat apt repository)")
        if not want_dir and not local.is_file():
            raise self.fail(key, f"{local}: no such file")
        return Download(url=None, local=str(local))

    def apt(self, repo_key: str, key_key: str, cfg: dict, key_name: str, **fmt) -> AptSource:
        raw = cfg[repo_key]
        try:
            raw = raw.format_map(_Keep(fmt)) if isinstance(raw, str) else raw
        except ValueError as e:
            raise self.fail(repo_key, f"{raw!r}: {e}") from None
        repo = self.download(repo_key, raw, want_dir=True)
        if repo.local and not self.check_files:
            return AptSource(repo=repo, key=Download(None, cfg[key_key]), armored=True)
        if repo.local:
            if not any((Path(repo.local) / f).is_file() for f in ("InRelease", "Release")):
                raise self.fail(
                    repo_key, f"{repo.local} is not a flat apt repository (no InRelease or Release)"
                )
            key_raw = cfg[key_key]
            if key_raw is None:
                if not (Path(repo.local) / "Release.key").is_file():
                    raise self.fail(
                        key_key, f"required: the local {repo_key} {repo.local} has no Release.key"
                    )
                key_raw = str(Path(repo.local) / "Release.key")
        else:
            key_raw = cfg[key_key] or f"{repo.url.rstrip('/')}/{key_name}"
        key = self.download(key_key, key_raw)
        if key.local and not self.check_files:
            armored = True
        elif key.local:
            head = Path(key.local).read_bytes()[:64]
            armored = head.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
            if not armored and head[:1] not in (b"\x98", b"\x99", b"\xc6"):
                raise self.fail(
                    key_key, f"{key.local} is not an OpenPGP public key (armored or binary)"
                )
        else:
            # apt tells the two formats apart by the keyring's name only: a URL is taken
            # as armored unless its name ends in .gpg.
            armored = not key.url.endswith(".gpg")
        return AptSource(repo=repo, key=key, armored=armored)

    def image_archives(self, value: Any) -> tuple[ImageArchive, ...]:
        if value is None or not self.check_files:
            return ()
        if not isinstance(value, str) or not value.strip():
            raise self.fail(
                "image_archives", "expected a local directory of `docker save` archives"
            )
        folder = self._local("image_archives", value.strip())
        if not folder.is_dir():
            raise self.fail("image_archives", f"{folder} is not a directory")
        tars = sorted(folder.glob("*.tar"))
        if not tars:
            raise self.fail("image_archives", f"{folder} holds no *.tar archive")
        return tuple(ImageArchive(str(t), self._tags(t)) for t in tars)

    def _tags(self, archive: Path) -> tuple[str, ...]:
        try:
            with tarfile.open(archive) as tar:
                member = tar.extractfile("manifest.json")
                manifest = json.load(member) if member else None
        except (OSError, tarfile.TarError, KeyError, ValueError):
            manifest = None
        tags = [
            t
            for entry in manifest or []
            if isinstance(entry, dict)
            for t in entry.get("RepoTags") or []
        ]
        if not tags:
            raise self.fail(
                "image_archives", f"{archive}: not a `docker save` archive with tagged images"
            )
        return tuple(tags)


class _Keep(dict):
    """format_map values that leave unknown {placeholders} as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _parse_host(i: int, raw: Any, cfg: dict, fail) -> Host:
    where = f"hosts[{i}]"
    if not isinstance(raw, dict):
        raise fail(where, "expected a mapping with name, role and node_ip")
    if isinstance(raw.get("name"), str) and _HOSTNAME.match(raw["name"]):
        where = f"hosts[{i}] ({raw['name']})"
    _reject_unknown(raw, HOST_KEYS, f"{where}.", fail)
    for key in ("name", "role", "node_ip"):
        if raw.get(key) in (None, ""):
            raise fail(f"{where}.{key}", "missing")
    name = str(raw["name"])
    if not _HOSTNAME.match(name):
        raise fail(f"{where}.name", f"{name!r} is not a valid hostname (a-z, 0-9, -)")
    where = f"hosts[{i}] ({name})"
    role = raw["role"]
    if role not in ROLES:
        raise fail(f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
    node_ip = _ipv4(raw["node_ip"], f"{where}.node_ip", fail)
    ssh_host = str(raw.get("ssh_host") or node_ip)
    port = raw.get("ssh_port", cfg["ssh_port"])
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise fail(f"{where}.ssh_port", f"{port!r} is not a TCP port (1-65535)")
    return Host(
        name=name,
        role=role,
        node_ip=node_ip,
        ssh_host=ssh_host,
        ssh_port=port,
        ssh_user=raw.get("ssh_user") or cfg["ssh_user"],
        ssh_key=raw.get("ssh_key") or cfg["ssh_key"],
    )


def _reject_unknown(raw: dict, known: tuple[str, ...], prefix: str, fail) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"{prefix}{key}", f"unknown key{hint}")


def _ipv4(value: Any, key: str, fail) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise fail(key, f"{value!r} is not an IPv4 address") from None


def _network(value: Any, key: str, fail) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value))
    except ValueError as e:
        raise fail(key, f"{value!r} is not an IPv4 CIDR ({e})") from None


def _unique(hosts: tuple[Host, ...], attr: str, fail) -> None:
    seen: dict[str, str] = {}
    for h in hosts:
        value = getattr(h, attr)
        if value in seen:
            raise fail(f"hosts[{hosts.index(h)}].{attr}", f"{value} is also used by {seen[value]}")
        seen[value] = f"hosts[{hosts.index(h)}]"


def _choice(cfg: dict, key: str, allowed: tuple[str, ...], fail) -> None:
    if cfg[key] not in allowed:
        raise fail(key, f"{cfg[key]!r} is not one of {', '.join(allowed)}")
