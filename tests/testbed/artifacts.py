"""Artifacts the source tests make on this machine, from our own code only: an OpenPGP key,
tiny .deb packages named like Kubernetes', a signed flat apt repository, a cri-dockerd
stand-in tarball, and `docker save` archives of images built from the bed's busybox rootfs.

Needs gpg, dpkg-deb and apt-ftparchive (tests/testbed/install-deps.sh installs them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

VERSION = "1.35.2"  # what the stand-in kubeadm says it is

PAUSE = "pause:3.10.1"  # in the stand-in's image list, as kubeadm 1.35 lists it
KUBEADM = f"""#!/bin/sh
# k8s-lab test stand-in: answers `kubeadm version -o short` and `kubeadm config images list`
# (its --image-repository honoured) like kubeadm {VERSION}.
if [ "$1" = version ]; then echo v{VERSION}; exit 0; fi
if [ "$1 $2 $3" = "config images list" ]; then
    repo=registry.k8s.io
    while [ $# -gt 0 ]; do [ "$1" = --image-repository ] && repo=$2; shift; done
    for i in kube-apiserver:v{VERSION} kube-controller-manager:v{VERSION} \\
        kube-scheduler:v{VERSION} kube-proxy:v{VERSION} coredns/coredns:v1.12.1 {PAUSE} \\
        etcd:3.6.5-0; do echo "$repo/$i"; done
    exit 0
fi
echo "k8s-lab test stand-in for kubeadm: $*" >&2; exit 1
"""
KUBECTL = """#!/bin/sh
echo "k8s-lab test stand-in for kubectl" >&2; exit 1
"""
KUBELET = """#!/bin/sh
# k8s-lab test stand-in: a kubelet that does nothing, so its unit can be enabled and started.
exec sleep infinity
"""
KUBELET_UNIT = """[Unit]
Description=k8s-lab test stand-in for kubelet

[Service]
EnvironmentFile=-/etc/default/kubelet
ExecStart=/usr/bin/kubelet
Restart=always

[Install]
WantedBy=multi-user.target
"""
# Type=notify in the product's unit: the stand-in tells systemd it is ready, then idles.
CRI_DOCKERD = """#!/usr/bin/python3
import os, socket, sys, time
if "--version" in sys.argv:
    print("cri-dockerd {version} (k8s-lab test stand-in)")
    sys.exit(0)
addr = os.environ.get("NOTIFY_SOCKET", "")
if addr:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect("\\0" + addr[1:] if addr.startswith("@") else addr)
    s.sendall(b"READY=1")
while True:
    time.sleep(3600)
"""


def run(*cmd: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, env=env, **kw)


def gpg_key(home: Path, name: str) -> bytes:
    """A fresh signing key in GNUPGHOME `home`; its armored public key."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    uid = f"{name} <{name}@k8s-lab.invalid>"
    run(
        "gpg",
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        uid,
        "ed25519",
        "sign",
        "never",
        env=env,
    )
    return run("gpg", "--armor", "--export", uid, env=env).stdout


def stop_gpg_agent(home: Path) -> None:
    """gpg leaves an agent running per GNUPGHOME; the tests end theirs."""
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)


def deb(out: Path, name: str, version: str, files: dict[str, tuple[str, int]]) -> Path:
    root = out / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: k8s-lab tests <tests@k8s-lab.invalid>\n"
        f"Description: k8s-lab test stand-in for {name}\n"
    )
    for path, (text, mode) in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    package = out / f"{name}_{version}_all.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(package))
    return package


def kube_debs(out: Path) -> list[Path]:
    version = f"{VERSION}-1.1"
    return [
        deb(out, "kubeadm", version, {"/usr/bin/kubeadm": (KUBEADM, 0o755)}),
        deb(out, "kubectl", version, {"/usr/bin/kubectl": (KUBECTL, 0o755)}),
        deb(
            out,
            "kubelet",
            version,
            {
                "/usr/bin/kubelet": (KUBELET, 0o755),
                "/lib/systemd/system/kubelet.service": (KUBELET_UNIT, 0o644),
            },
        ),
    ]


def flat_repo(repo: Path, debs: list[Path], gnupg: Path, key: bytes) -> Path:
    """A pkgs.k8s.io-style flat repository (`deb URL /`) signed with the key in `gnupg`."""
    repo.mkdir(parents=True)
    for d in debs:
        (repo / d.name).write_bytes(d.read_bytes())
    packages = run("apt-ftparchive", "packages", ".", cwd=repo).stdout
    (repo / "Packages").write_bytes(packages)
    signed_release(repo, gnupg)
    (repo / "Release.key").write_bytes(key)
    return repo


def signed_release(folder: Path, gnupg: Path, *options: str) -> None:
    """Release for the index files under `folder` (apt-ftparchive's -o options: Suite,
    Codename...), signed both ways apt reads: InRelease (clear-signed) and Release.gpg."""
    opts = [arg for o in options for arg in ("-o", f"APT::FTPArchive::Release::{o}")]
    release = run("apt-ftparchive", *opts, "release", ".", cwd=folder).stdout
    (folder / "Release").write_bytes(release)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    for how, out in (("--clearsign", "InRelease"), ("--detach-sign", "Release.gpg")):
        run(
            "gpg",
            "--batch",
            "--yes",
            how,
            "-o",
            str(folder / out),
            str(folder / "Release"),
            env=env,
        )


def cri_dockerd_tgz(path: Path, version: str) -> str:
    """The release tarball's layout (cri-dockerd/cri-dockerd); its sha256."""
    data = CRI_DOCKERD.replace("{version}", version).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cri-dockerd/cri-dockerd")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def docker_save(path: Path, tag: str, rootfs_tar: Path, cmd: list[str]) -> Path:
    """What `docker save TAG` writes for a one-layer image: the layer, the image config
    (its rootfs diff_id is the layer's sha256) and manifest.json naming the tag."""
    layer = rootfs_tar.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "k8s-lab tests"}],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_dir = hashlib.sha256(layer + tag.encode()).hexdigest()
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_dir}/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in (
            (f"{layer_dir}/layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
