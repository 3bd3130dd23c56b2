"""The stand-ins of the public endpoints (standins.py, registry_push.py) on loopback, without
the bed: a test CA's certificate as clients check it, GitHub's and pkgs.k8s.io's redirects
followed to the file, and `docker save` archives pushed into Debian's docker-registry and read
back as Docker pulls them (manifest, gzipped layer whose content is the config's diff_id)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.parse
from pathlib import Path

import pytest
from testbed import artifacts

from . import registry_push, standins

HERE = "127.0.0.1"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    for tool in ("openssl", "docker-registry"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not found (tests/testbed/install-deps.sh installs it)")
    folder = tmp_path_factory.mktemp("tls")
    return standins.make_ca(folder)


def get(name: str, port: int, url_path: str, cafile: Path) -> http.client.HTTPResponse:
    """GET as a bed host would, with the name pinned to loopback for this request only."""
    conn = registry_push._Pinned(name, HERE, port, ssl.create_default_context(cafile=str(cafile)))
    conn.request("GET", url_path)
    return conn.getresponse()


def follow(url: str, port: int, cafile: Path, hops: int = 3) -> tuple[list[str], bytes]:
    seen = [url]
    for _ in range(hops):
        parts = urllib.parse.urlsplit(url)
        r = get(
            parts.hostname, port, parts.path + (f"?{parts.query}" if parts.query else ""), cafile
        )
        if r.status != 302:
            assert r.status == 200, (url, r.status)
            return seen, r.read()
        url = r.getheader("Location")
        seen.append(url)
    raise AssertionError(f"more than {hops} redirects: {seen}")


@pytest.fixture(scope="module")
def served(ca, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    tgz = tmp / "cri-dockerd-0.4.3.amd64.tgz"
    artifacts.cri_dockerd_tgz(tgz, "0.4.3")
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "Release.key").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    (tmp / "secret").write_text("outside the repository\n")
    names = standins.PKGS.names + standins.GITHUB.names
    cert = standins.make_cert(ca.parent, names)
    cdn = "/repositories/isv:/kubernetes:/core:/stable:/v1.36/deb/"
    asset = urllib.parse.urlsplit(standins.asset_url(tgz.name)).path
    routes = {
        names[0]: standins.redirect(
            r"/core:/stable:/v1\.36/deb/(.*)", lambda m: f"https://{names[1]}{cdn}{m[1]}"
        ),
        names[1]: standins.files_under(repo, cdn),
        names[2]: standins.redirect(
            r"/Mirantis/cri-dockerd/releases/download/v0\.4\.3/" + tgz.name,
            lambda _: standins.asset_url(tgz.name),
        ),
        names[3]: lambda path: tgz if path == asset else None,
    }
    server = standins.FileServer(standins.StandIn("t", HERE, names), cert, routes)
    port = server.start(port=0)
    yield {"port": port, "tgz": tgz, "server": server}
    server.stop()


def test_github_release_url_redirects_to_the_asset_host_and_serves_the_tarball(served, ca):
    url = (
        "https://github.com/Mirantis/cri-dockerd/releases/download/v0.4.3/"
        "cri-dockerd-0.4.3.amd64.tgz"
    )
    hops, body = follow(url, served["port"], ca)
    assert len(hops) == 2
    asset = urllib.parse.urlsplit(hops[1])
    assert asset.hostname == "release-assets.githubusercontent.com"
    assert asset.path.startswith("/github-production-release-asset/")
    query = urllib.parse.parse_qs(asset.query)
    assert query["filename"] == ["cri-dockerd-0.4.3.amd64.tgz"]
    assert body == served["tgz"].read_bytes()


def test_pkgs_redirects_to_the_cdn_which_serves_the_repository_only(served, ca):
    hops, body = follow(
        "https://pkgs.k8s.io/core:/stable:/v1.36/deb/Release.key", served["port"], ca
    )
    assert hops[1] == (
        "https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v1.36/deb/"
        "Release.key"
    )
    assert body.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    cdn = "/repositories/isv:/kubernetes:/core:/stable:/v1.36/deb/"
    assert get("prod-cdn.packages.k8s.io", served["port"], cdn + "../secret", ca).status == 404
    assert get("pkgs.k8s.io", served["port"], "/core:/stable:/v1.99/deb/X", ca).status == 404
    clients = served["server"].bytes_by_client()
    assert clients[HERE] >= len(body)


def test_the_certificate_is_refused_without_the_ca_and_for_another_name(served, ca, tmp_path):
    port = served["port"]
    with pytest.raises(ssl.SSLCertVerificationError):
        registry_push._Pinned("github.com", HERE, port, ssl.create_default_context()).connect()
    with pytest.raises(ssl.SSLCertVerificationError):
        get("example.org", port, "/", ca)


@pytest.fixture(scope="module")
def registry(ca, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    standin = standins.StandIn("registry.k8s.io", HERE, ("registry.k8s.io",))
    cert = standins.make_cert(ca.parent, standin.names)
    reg = standins.Registry(standin, cert, tmp / "storage", tmp / "logs")
    port = reg.start(port=standins.free_port(HERE))
    client = registry_push.Client("registry.k8s.io", HERE, port, ca)
    yield reg, client, tmp
    client.close()
    reg.stop()


def rootfs(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        data = b"#!/bin/sh\necho stand-in\n"
        info = tarfile.TarInfo("bin/hello")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_pushed_archive_reads_back_as_docker_pulls_it(registry):
    reg, client, tmp = registry
    archive = artifacts.docker_save(
        tmp / "pause.tar",
        "registry.k8s.io/pause:3.10.2",
        rootfs(tmp / "rootfs.tar"),
        ["/bin/hello"],
    )
    hub = []
    pushed = registry_push.push(
        archive, {"registry.k8s.io": client}.get, lambda tag: hub.append(tag) or tag
    )
    assert pushed == ["registry.k8s.io/pause:3.10.2"] and hub == pushed
    status, _, body = client.request(
        "GET", "/v2/pause/manifests/3.10.2", headers={"Accept": registry_push.MANIFEST}
    )
    assert status == 200, body
    manifest = json.loads(body)
    status, _, config = client.request("GET", f"/v2/pause/blobs/{manifest['config']['digest']}")
    assert (
        status == 200
        and "sha256:" + hashlib.sha256(config).hexdigest() == (manifest["config"]["digest"])
    )
    [layer] = manifest["layers"]
    status, _, blob = client.request("GET", f"/v2/pause/blobs/{layer['digest']}")
    assert status == 200 and layer["size"] == len(blob)
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert json.loads(config)["rootfs"]["diff_ids"] == [diff_id]
    # Pushed again: found by its manifest, nothing uploaded; the pulls were counted.
    assert registry_push.push(archive, {"registry.k8s.io": client}.get, str) == pushed
    assert reg.bytes_by_client()[HERE] >= len(blob) + len(config)


def test_a_tag_of_a_registry_not_stood_in_is_left_out(registry):
    _, client, tmp = registry
    archive = artifacts.docker_save(
        tmp / "other.tar", "quay.io/x/y:1", rootfs(tmp / "rootfs2.tar"), ["/bin/hello"]
    )
    assert registry_push.push(archive, {"registry.k8s.io": client}.get, str) == []


@pytest.mark.parametrize(
    "ref, want",
    [
        ("busybox:latest", ("docker.io", "library/busybox", "latest")),
        ("nginx", ("docker.io", "library/nginx", "latest")),
        ("rajchaudhuri/weave-kube:2.9.0", ("docker.io", "rajchaudhuri/weave-kube", "2.9.0")),
        (
            "docker.io/rajchaudhuri/weave-npc:2.9.0",
            ("docker.io", "rajchaudhuri/weave-npc", "2.9.0"),
        ),
        (
            "registry.k8s.io/coredns/coredns:v1.14.2",
            ("registry.k8s.io", "coredns/coredns", "v1.14.2"),
        ),
        ("localhost:5000/x", ("localhost:5000", "x", "latest")),
    ],
)
def test_references_split_as_docker_reads_them(ref, want):
    assert registry_push.split_ref(ref) == want


def test_hosts_block_is_removed_by_the_uninstall_script(tmp_path):
    # Run on a copy of a hosts file that also holds the deploy's block, which stays.
    hosts = tmp_path / "hosts"
    kept = "127.0.0.1 localhost\n# BEGIN k8s-lab nodes\n10.0.2.15 master\n# END k8s-lab nodes\n"
    hosts.write_text(kept + standins.hosts_block())
    script = standins.StandIns.uninstall_script().splitlines()[0].replace("/etc/hosts", str(hosts))
    subprocess.run(["sh", "-c", script], check=True)
    assert hosts.read_text() == kept
