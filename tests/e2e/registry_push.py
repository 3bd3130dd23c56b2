"""Push `docker save` archives into a registry over the distribution v2 API, with no Docker on
this machine: each layer gzipped as registries serve them (so the bytes a node pulls are what
a public registry would send), the image config as is, and a schema 2 manifest per tag.

    client = Client("registry.k8s.io", "10.0.2.104", 443, cafile)   # TLS, SNI and Host
    push(Path("images/pause.tar"), client, lambda tag: "pause:3.10.2")

A manifest that is there already is not pushed again, so a kept registry costs one HEAD per
tag on the next run.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import shutil
import socket
import ssl
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CHUNK = 1 << 20


class PushError(RuntimeError):
    pass


class _Pinned(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with the registry's public name in SNI and Host: nothing
    on this machine resolves the name."""

    def __init__(self, name: str, address: str, port: int, context: ssl.SSLContext):
        super().__init__(name, port, context=context, timeout=120)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Client:
    """One registry: `name` is what it answers as, `address` where it listens; `cafile` is the
    CA that signed its certificate (None: plain HTTP, for the unit tests)."""

    def __init__(self, name: str, address: str, port: int, cafile: Path | None):
        self.name = name
        if cafile is None:
            self.conn = http.client.HTTPConnection(address, port, timeout=120)
        else:
            context = ssl.create_default_context(cafile=str(cafile))
            self.conn = _Pinned(name, address, port, context)

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        """(status, headers, body) of one request; the connection is kept for the next."""
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data

    def has(self, repo: str, kind: str, ref: str, accept: str = "") -> bool:
        headers = {"Accept": accept} if accept else {}
        return self.request("HEAD", f"/v2/{repo}/{kind}/{ref}", headers=headers)[0] == 200

    def upload(self, repo: str, digest: str, path: Path) -> None:
        if self.has(repo, "blobs", digest):
            return
        status, headers, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise PushError(f"{self.name}: start of an upload to {repo}: {status} {body[:200]!r}")
        location = headers.get("Location") or headers.get("location")
        location = "/" + location.split("/", 3)[3] if location.startswith("http") else location
        sep = "&" if "?" in location else "?"
        with path.open("rb") as f:
            status, _, body = self.request(
                "PUT",
                f"{location}{sep}digest={digest}",
                body=f,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                },
            )
        if status != 201:
            raise PushError(f"{self.name}: blob {digest} to {repo}: {status} {body[:200]!r}")

    def put_manifest(self, repo: str, tag: str, manifest: bytes) -> None:
        status, _, body = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest, headers={"Content-Type": MANIFEST}
        )
        if status != 201:
            raise PushError(f"{self.name}: manifest {repo}:{tag}: {status} {body[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def split_ref(ref: str) -> tuple[str, str, str]:
    """(registry, repository, tag) as Docker reads a reference: a first part with a dot, a
    colon or `localhost` names the registry, else Docker Hub, whose one-part names are under
    library/; no tag means latest."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    else:
        registry, name = "docker.io", ref
    name, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    if registry == "docker.io" and "/" not in name:
        name = "library/" + name
    return registry, name, tag or "latest"


def _digest_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def push(archive: Path, client_for: Callable[[str], Client | None], public: Callable[[str], str]):
    """Push every tagged image of `archive` under public(tag) to client_for(its registry)
    (None: that registry is not stood in, the tag is left out); the references pushed."""
    pushed: list[str] = []
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory() as tmp:
        entries = json.load(tar.extractfile("manifest.json"))
        gzipped: dict[str, tuple[Path, str]] = {}
        for entry in entries:
            for tag in entry.get("RepoTags") or []:
                ref = public(tag)
                registry, repo, ref_tag = split_ref(ref)
                client = client_for(registry)
                if client is None:
                    continue
                if client.has(repo, "manifests", ref_tag, accept=MANIFEST):
                    pushed.append(ref)
                    continue
                layers = []
                for member in entry["Layers"]:
                    if member not in gzipped:
                        gzipped[member] = _gzip(tar, member, Path(tmp) / f"{len(gzipped)}.gz")
                    path, digest = gzipped[member]
                    client.upload(repo, digest, path)
                    layers.append(
                        {"mediaType": LAYER, "size": path.stat().st_size, "digest": digest}
                    )
                config = Path(tmp) / "config.json"
                with config.open("wb") as f:
                    shutil.copyfileobj(tar.extractfile(entry["Config"]), f)
                config_digest = _digest_of(config)
                client.upload(repo, config_digest, config)
                manifest = {
                    "schemaVersion": 2,
                    "mediaType": MANIFEST,
                    "config": {
                        "mediaType": CONFIG,
                        "size": config.stat().st_size,
                        "digest": config_digest,
                    },
                    "layers": layers,
                }
                client.put_manifest(repo, ref_tag, json.dumps(manifest).encode())
                pushed.append(ref)
    return pushed


def _gzip(tar: tarfile.TarFile, member: str, out: Path) -> tuple[Path, str]:
    """The layer gzipped with no name or time in its header, so the same layer always has
    the same digest (a kept registry finds it again)."""
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        shutil.copyfileobj(tar.extractfile(member), gz, CHUNK)
    return out, _digest_of(out)
