"""Stand-ins for the public endpoints the shipped topology downloads from, on the bed's bridge,
so that the default path (no source keys at all) runs on the offline bed as online:

    pkgs.k8s.io             the flat repository /core:/stable:/v<minor>/deb/ of the offline
                            folder's real kubelet/kubeadm/kubectl/kubernetes-cni debs, signed
                            anew with a key made in the run; every path answers 302 to
                            prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/..., as
                            pkgs.k8s.io's redirector does (kubernetes/k8s.io#5518), which
                            serves it; Release.key armored, as pkgs.k8s.io serves it
    download.docker.com     /linux/debian/gpg (armored) and dists/bookworm/stable in Docker's
                            layout (debs under dists/bookworm/pool/stable/amd64/), signed with a
                            second key; its docker-ce, docker-ce-cli, containerd.io and
                            docker-buildx-plugin are the offline folder's docker-ce/ stand-ins:
                            Debian's docker.io repacked under Docker's names (it conflicts with
                            them) and two empty packages, made outside this repository
    github.com              the cri-dockerd release URL answers 302 to
                            release-assets.githubusercontent.com/github-production-release-
                            asset/<id>/<uuid>?<signed query>, the shape GitHub sends since
                            2025, which serves the offline folder's tarball
    registry.k8s.io,        Debian's docker-registry (distribution 2.8), one process each, no
    registry-1.docker.io    auth, holding the offline folder's images under their public names
                            (registry_push.py)

Each stand-in has its own address on the bridge (10.0.2.101-105), so each can be stopped
alone. The names resolve only in the bed hosts' /etc/hosts (a marked block of its own, after
which the deploy's hostprep adds its block), and only the bed hosts trust the CA made here
(system store and /etc/docker/certs.d): nothing on this machine resolves or trusts them.

What they cannot stand in for: the real servers' availability and speed, rate limits, Docker
Hub's token authentication (auth.docker.io), and the redirects of registry blobs to storage
hosts (registry.k8s.io to regional buckets, Docker Hub to its CDN).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from testbed import artifacts

from k8slab.deploy.common import tree_digest
from k8slab.topology import REPO_ROOT

from . import offline, registry_push


@dataclass(frozen=True)
class StandIn:
    """`names[0]` is the public name the topology's URLs use; the others are where it
    redirects to."""

    key: str
    address: str
    names: tuple[str, ...]


PKGS = StandIn("pkgs.k8s.io", "10.0.2.101", ("pkgs.k8s.io", "prod-cdn.packages.k8s.io"))
DOCKER = StandIn("download.docker.com", "10.0.2.102", ("download.docker.com",))
GITHUB = StandIn("github.com", "10.0.2.103", ("github.com", "release-assets.githubusercontent.com"))
K8S_REGISTRY = StandIn("registry.k8s.io", "10.0.2.104", ("registry.k8s.io",))
HUB = StandIn("registry-1.docker.io", "10.0.2.105", ("registry-1.docker.io",))
ALL = (PKGS, DOCKER, GITHUB, K8S_REGISTRY, HUB)
REGISTRIES = {"registry.k8s.io": K8S_REGISTRY, "docker.io": HUB}

HOSTS_BEGIN = "# BEGIN k8s-lab test stand-ins of public endpoints"
HOSTS_END = "# END k8s-lab test stand-ins"
CA_FILE = "/usr/local/share/ca-certificates/k8s-lab-test-stand-ins.crt"
CACHE = Path(os.environ.get("K8SLAB_E2E_CACHE") or "/var/cache/k8s-lab-e2e")
CODENAME = "bookworm"  # the bed's hosts are Debian 12


def missing(folder: Path) -> str | None:
    """What this machine or the offline folder lacks for the stand-ins, or None."""
    if not list((folder / "docker-ce").glob("docker-ce_*.deb")):
        return (
            f"{folder}/docker-ce/ holds no docker-ce stand-in packages (tests/e2e/README.md "
            "says what they are)"
        )
    for tool in ("openssl", "docker-registry", "gpg", "apt-ftparchive", "dpkg-deb"):
        if not shutil.which(tool):
            return f"{tool} not found (tests/testbed/install-deps.sh installs it)"
    return None


# --------------------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path) -> Path:
    """A CA made for this run (P-256, a week): ca.crt and ca.key in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
        "-subj", "/CN=k8s-lab test CA for the public-endpoint stand-ins",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return folder / "ca.crt"


def make_cert(folder: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    """A server certificate for `names` (subjectAltName; Go ignores the CN) signed by the CA
    in `folder`; (cert, key)."""
    stem = names[0]
    (folder / f"{stem}.ext").write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join('DNS:' + n for n in names)}\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={stem}", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "7",
        "-extfile", f"{stem}.ext", "-out", f"{stem}.crt", cwd=folder,
    )  # fmt: skip
    return folder / f"{stem}.crt", folder / f"{stem}.key"


# --------------------------------------------------------------------------- HTTPS files


class Redirect(str):
    """A route's answer: 302 to this URL."""


Route = Callable[[str], "Path | Redirect | None"]


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, context: ssl.SSLContext, routes: dict[str, Route]):
        self.context = context
        self.routes = routes
        self.served: list[tuple[str, str, str, int, int]] = []  # client, host, path, code, bytes
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        # The handshake in the request's own thread: a slow client holds up no other.
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # a client that hung up mid-answer (apt does, on a redirect it follows)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as apt and curl expect
    server_version = "k8s-lab-stand-in"
    server: _TLSServer

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        route = self.server.routes.get(host)
        found = route(path) if route else None
        sent = 0
        if isinstance(found, Redirect):
            code = 302
            self.send_response(code)
            self.send_header("Location", found)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif isinstance(found, Path):
            code = 200
            size = found.stat().st_size
            self.send_response(code)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if body:
                with found.open("rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)
                sent = size
        else:
            code = 404
            text = b"404 not found (k8s-lab stand-in)\n"
            self.send_response(code)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if body:
                self.wfile.write(text)
        self.server.served.append((self.client_address[0], host, path, code, sent))


def files_under(root: Path, prefix: str) -> Route:
    """prefix + a relative path → that file under root (nothing outside it, no listings)."""

    def route(path: str) -> Path | None:
        if not path.startswith(prefix):
            return None
        found = (root / path[len(prefix) :]).resolve()
        return found if found.is_file() and found.is_relative_to(root.resolve()) else None

    return route


def redirect(pattern: str, target: Callable[[re.Match], str]) -> Route:
    def route(path: str) -> Redirect | None:
        found = re.fullmatch(pattern, path)
        return Redirect(target(found)) if found else None

    return route


class FileServer:
    """An HTTPS server at address:port answering for its stand-in's names (by Host)."""

    def __init__(self, standin: StandIn, cert: tuple[Path, Path], routes: dict[str, Route]):
        self.standin = standin
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert)
        self.routes = routes
        self.server: _TLSServer | None = None
        self.served: list[tuple[str, str, str, int, int]] = []

    def start(self, port: int = 443) -> int:
        self.server = _TLSServer((self.standin.address, port), self.context, self.routes)
        self.server.served = self.served
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bytes_by_client(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for client, _, _, _, sent in self.served:
            out[client] = out.get(client, 0) + sent
        return out


# --------------------------------------------------------------------------- registries

# gorilla's combined log format, which distribution writes to stdout for every request.
ACCESS = re.compile(r'^(\S+) \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-)')


class Registry:
    """Debian's docker-registry serving one stand-in over TLS, storage in `root`."""

    def __init__(self, standin: StandIn, cert: tuple[Path, Path], root: Path, logs: Path):
        self.standin = standin
        self.cert = cert
        self.root = root
        self.logs = logs
        self.proc: subprocess.Popen | None = None

    def start(self, port: int = 443, tls: bool = True) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "fields": {"service": self.standin.key}},
            "storage": {"filesystem": {"rootdirectory": str(self.root)}},
            "http": {"addr": f"{self.standin.address}:{port}"},
        }
        if tls:
            config["http"]["tls"] = {"certificate": str(self.cert[0]), "key": str(self.cert[1])}
        path = self.logs / f"{self.standin.key}.yml"
        path.write_text(yaml.safe_dump(config))
        with (
            (self.logs / f"{self.standin.key}.access.log").open("ab") as out,
            (self.logs / f"{self.standin.key}.log").open("ab") as err,
        ):
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(path)], stdout=out, stderr=err
            )
        _wait_listening(self.standin.address, port, self.proc)
        return port

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def bytes_by_client(self) -> dict[str, int]:
        """Bytes of the blobs and manifests each client GOT (pushes from here are PUTs)."""
        out: dict[str, int] = {}
        log = self.logs / f"{self.standin.key}.access.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            found = ACCESS.match(line)
            if found and found[2] == "GET" and found[4] == "200" and found[5] != "-":
                out[found[1]] = out.get(found[1], 0) + int(found[5])
        return out


def _wait_listening(address: str, port: int, proc: subprocess.Popen, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry on {address}:{port} exited {proc.returncode}")
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"docker-registry on {address}:{port}: not listening after {timeout}s")


def hosts_block() -> str:
    """The bed hosts' /etc/hosts lines for the stand-ins, in a marked block of their own."""
    lines = [f"{s.address} {' '.join(s.names)}" for s in ALL]
    return "\n".join([HOSTS_BEGIN, *lines, HOSTS_END]) + "\n"


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- content


def docker_repo(root: Path, debs: list[Path], gnupg: Path, key: bytes) -> Path:
    """download.docker.com/linux/debian/ as Docker lays it out: gpg, dists/<codename>/{InRelease,
    Release, Release.gpg}, stable/binary-amd64/Packages(.gz), pool/stable/amd64/*.deb."""
    dist = root / "dists" / CODENAME
    pool = dist / "pool" / "stable" / "amd64"
    index = dist / "stable" / "binary-amd64"
    pool.mkdir(parents=True)
    index.mkdir(parents=True)
    for d in debs:
        shutil.copy2(d, pool / d.name)
    packages = artifacts.run(
        "apt-ftparchive", "packages", str(pool.relative_to(root)), cwd=root
    ).stdout
    (index / "Packages").write_bytes(packages)
    artifacts.run("gzip", "-9kn", str(index / "Packages"))
    artifacts.signed_release(
        dist,
        gnupg,
        "Origin=Docker",
        "Label=Docker CE",
        f"Suite={CODENAME}",
        f"Codename={CODENAME}",
        "Architectures=amd64",
        "Components=stable",
    )
    (root / "gpg").write_bytes(key)
    return root


def public_names(folder: Path) -> dict[str, str]:
    """The offline folder's own lab image tags (its labs.yaml) → the lab's public defaults,
    e.g. local/nginx:bookworm → nginx: the names `labctl apply` uses with no overrides."""
    path = folder / "labs.yaml"
    overrides = yaml.safe_load(path.read_text()) if path.is_file() else None
    names: dict[str, str] = {}
    for lab_id, values in (overrides or {}).items():
        lab = yaml.safe_load((REPO_ROOT / "labs" / lab_id / "lab.yaml").read_text())
        for key, image in ((values or {}).get("images") or {}).items():
            names[image["tag"]] = lab["values"]["images"][key]["tag"]
    return names


def asset_url(name: str) -> str:
    """A release-assets.githubusercontent.com URL of GitHub's shape for `name`: the repository
    id and the signature are made up, the asset's uuid derived from its name."""
    asset = uuid.UUID(hashlib.sha256(name.encode()).hexdigest()[:32])
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
    query = urllib.parse.urlencode(
        {
            "sp": "r",
            "sv": "2018-11-09",
            "sr": "b",
            "spr": "https",
            "se": expiry,
            "rscd": f"attachment; filename={name}",
            "rsct": "application/octet-stream",
            "sig": "k8s-lab-stand-in",
            "filename": name,
            "response-content-disposition": f"attachment; filename={name}",
            "response-content-type": "application/octet-stream",
        }
    )
    return f"https://{GITHUB.names[1]}/github-production-release-asset/1/{asset}?{query}"


# --------------------------------------------------------------------------- the whole set


class StandIns:
    """Every stand-in, made from the offline folder in `work`, served on the bed's bridge."""

    def __init__(self, folder: Path, work: Path, bridge: str):
        self.folder = folder
        self.work = work
        self.bridge = bridge
        self.minor = offline.kube_minor(folder)
        self.ca = make_ca(work / "tls")
        certs = {s.key: make_cert(work / "tls", s.names) for s in ALL}
        self.servers: dict[str, FileServer | Registry] = {
            PKGS.key: FileServer(PKGS, certs[PKGS.key], self._kube_routes()),
            DOCKER.key: FileServer(DOCKER, certs[DOCKER.key], self._docker_routes()),
            GITHUB.key: FileServer(GITHUB, certs[GITHUB.key], self._github_routes()),
        }
        images = CACHE / "registries" / tree_digest(str(folder / "images"))[:16]
        for s in (K8S_REGISTRY, HUB):
            self.servers[s.key] = Registry(s, certs[s.key], images / s.key, work / "logs")
        self.addresses: list[str] = []
        self.pushed: list[str] = []

    def _kube_routes(self) -> dict[str, Route]:
        gnupg = self.work / "gnupg-pkgs"
        key = artifacts.gpg_key(gnupg, "pkgs.k8s.io-stand-in")
        debs = sorted((self.folder / "kube-apt").glob("*.deb"))
        repo = artifacts.flat_repo(self.work / "pkgs", debs, gnupg, key)
        artifacts.stop_gpg_agent(gnupg)
        path = f"/core:/stable:/v{self.minor}/deb/"
        cdn = f"/repositories/isv:/kubernetes:/core:/stable:/v{self.minor}/deb/"
        return {
            PKGS.names[0]: redirect(
                re.escape(path) + "(.*)", lambda m: f"https://{PKGS.names[1]}{cdn}{m[1]}"
            ),
            PKGS.names[1]: files_under(repo, cdn),
        }

    def _docker_routes(self) -> dict[str, Route]:
        gnupg = self.work / "gnupg-docker"
        key = artifacts.gpg_key(gnupg, "download.docker.com-stand-in")
        debs = sorted((self.folder / "docker-ce").glob("*.deb"))
        root = docker_repo(self.work / "docker", debs, gnupg, key)
        artifacts.stop_gpg_agent(gnupg)
        return {DOCKER.names[0]: files_under(root, "/linux/debian/")}

    def _github_routes(self) -> dict[str, Route]:
        tgz = sorted(self.folder.glob("cri-dockerd-*.tgz"))[-1]
        version = re.match(r"cri-dockerd-(\d+\.\d+\.\d+)\.", tgz.name)[1]
        release = f"/Mirantis/cri-dockerd/releases/download/v{version}/{tgz.name}"
        asset = urllib.parse.urlsplit(asset_url(tgz.name)).path
        return {
            GITHUB.names[0]: redirect(re.escape(release), lambda _: asset_url(tgz.name)),
            GITHUB.names[1]: lambda path: tgz if path == asset else None,
        }

    def start(self) -> None:
        for s in ALL:
            r = subprocess.run(
                ["ip", "addr", "add", f"{s.address}/32", "dev", self.bridge],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                self.addresses.append(s.address)
            elif "File exists" not in r.stderr:
                raise RuntimeError(f"ip addr add {s.address} dev {self.bridge}: {r.stderr}")
        for server in self.servers.values():
            server.start()

    def push_images(self) -> float:
        """The offline folder's images into the two registries, under their public names;
        the seconds it took (nothing to push in a kept registry)."""
        t0 = time.monotonic()
        names = public_names(self.folder)
        clients = {
            registry: registry_push.Client(s.names[0], s.address, 443, self.ca)
            for registry, s in REGISTRIES.items()
        }
        try:
            for archive in sorted((self.folder / "images").glob("*.tar")):
                self.pushed += registry_push.push(
                    archive, clients.get, lambda tag: names.get(tag, tag)
                )
        finally:
            for c in clients.values():
                c.close()
        return round(time.monotonic() - t0, 1)

    def stop(self, key: str | None = None) -> None:
        """One stand-in (by key), or all of them and their addresses."""
        for k, server in self.servers.items():
            if key in (None, k):
                server.stop()
        if key is None:
            for address in self.addresses:
                subprocess.run(
                    ["ip", "addr", "del", f"{address}/32", "dev", self.bridge],
                    capture_output=True,
                )
            self.addresses = []

    def restart(self, key: str) -> None:
        self.servers[key].start()

    def bytes_by_client(self) -> dict[str, dict[str, int]]:
        """{client address: {stand-in: bytes it sent that client}}."""
        out: dict[str, dict[str, int]] = {}
        for key, server in self.servers.items():
            for client, sent in server.bytes_by_client().items():
                out.setdefault(client, {})[key] = sent
        return out

    # The bed hosts' side: the names and the CA, and their removal.

    def install_script(self) -> str:
        ca = self.ca.read_text()
        certs_d = " ".join(f"/etc/docker/certs.d/{s.names[0]}" for s in (K8S_REGISTRY, HUB))
        return (
            f"{self.uninstall_script()}\n"
            f"cat >> /etc/hosts <<'EOF'\n{hosts_block()}EOF\n"
            f"cat > {CA_FILE} <<'EOF'\n{ca}EOF\n"
            "update-ca-certificates >/dev/null\n"
            f"for d in {certs_d}; do mkdir -p $d && cp {CA_FILE} $d/ca.crt; done\n"
        )

    @staticmethod
    def uninstall_script() -> str:
        certs_d = " ".join(f"/etc/docker/certs.d/{s.names[0]}" for s in (K8S_REGISTRY, HUB))
        return (
            f"sed -i '/^{HOSTS_BEGIN}/,/^{HOSTS_END}/d' /etc/hosts\n"
            f"rm -rf {CA_FILE} {certs_d}\n"
            "update-ca-certificates --fresh >/dev/null"
        )
