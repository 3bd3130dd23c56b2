"""The wheel, installed into a fresh venv outside the clone (what `pip install .` and `pipx
install` do): labctl finds its labs, templates and pre-flight checks as package data.

The wheel is built from a copy of the tracked files and installed with --no-deps; the fresh
venv sees the dependencies already installed for the tests through a .pth line (pip would
fetch the same releases from PyPI), never the clone's own k8slab.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
from conftest import COURSE_TOPOLOGY, write_bundle

from k8slab.topology import REPO_ROOT


def _run(*args, cwd: Path, env: dict | None = None, check: bool = True):
    r = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin folder, an empty working folder outside the clone)."""
    root = tmp_path_factory.mktemp("install")
    tracked = _run("git", "ls-files", cwd=REPO_ROOT).stdout.split()
    src = root / "src"
    for name in tracked:
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
    _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", src, "-w", root / "dist", cwd=root
    )
    (wheel,) = (root / "dist").glob("k8s_lab-*.whl")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    site = Path(
        _run(
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=root,
        ).stdout.strip()
    )
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=root,
    )
    work = root / "elsewhere"
    work.mkdir()
    return venv / "bin", work


def test_the_installed_package_is_the_wheel_not_the_clone(installed):
    bin_dir, work = installed
    where = _run(bin_dir / "python", "-c", "import k8slab; print(k8slab.__file__)", cwd=work)
    assert where.stdout.startswith(str(bin_dir.parent))
    assert not (Path(where.stdout.strip()).parents[1] / "inventory").exists()


def test_the_wheel_carries_the_top_level_labs_templates_and_manifests(installed):
    """The clone keeps one copy of each at its top level; the wheel maps them into k8slab/."""
    bin_dir, work = installed
    code = "from k8slab.topology import DATA_ROOT, PACKAGE_ROOT; print(DATA_ROOT == PACKAGE_ROOT)"
    assert _run(bin_dir / "python", "-c", code, cwd=work).stdout.strip() == "True"
    site = Path(
        _run(
            bin_dir / "python", "-c", "import k8slab; print(k8slab.__file__)", cwd=work
        ).stdout.strip()
    ).parent
    for name in ("labs", "templates", "manifests"):
        in_clone = sorted(
            p.relative_to(REPO_ROOT / name)
            for p in (REPO_ROOT / name).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        in_wheel = sorted(
            p.relative_to(site / name) for p in (site / name).rglob("*") if p.is_file()
        )
        assert in_clone and in_wheel == in_clone, name
        assert not (REPO_ROOT / "k8slab" / name).exists(), f"a second copy of {name}/ in k8slab/"


def test_labs_render_and_replay_work_from_the_wheel(installed, tmp_path):
    bin_dir, work = installed
    labctl = bin_dir / "labctl"
    listing = _run(labctl, "labs", cwd=work)  # no topology file anywhere: the course's VMs
    assert listing.stdout.startswith("ch09: Kubernetes core concepts (4)")
    assert "storage.hostpath-forward" in listing.stdout

    rendered = _run(labctl, "--config", COURSE_TOPOLOGY, "render", "ch09", cwd=work)
    assert "kind: Namespace" in rendered.stdout and "name: volume-hostpath" in rendered.stdout

    write_bundle(tmp_path / "bundle")
    with tarfile.open(tmp_path / "bundle.tgz", "w:gz") as tar:
        tar.add(tmp_path / "bundle", arcname="bundle")
    graded = _run(labctl, "verify", "--replay", tmp_path / "bundle.tgz", cwd=work)
    assert re.search(r"ch09: (\d+) results - \1 passed, 0 failed", graded.stdout), graded.stdout
    mapped = _run(labctl, "map", "--replay", tmp_path / "bundle.tgz", cwd=work)
    assert "master" in mapped.stdout and "slave2" in mapped.stdout, mapped.stdout

    doctor = _run(labctl, "doctor", "--help", cwd=work)
    assert "Example:" in doctor.stdout


def test_a_learners_own_lab_folder_is_found(installed, tmp_path):
    bin_dir, work = installed
    mine = tmp_path / "my-labs"
    shutil.copytree(REPO_ROOT / "labs" / "ch09", mine / "ch09b")
    config = ("--config", COURSE_TOPOLOGY)
    listed = _run(bin_dir / "labctl", "--labs-dir", mine, *config, "labs", cwd=work)
    assert "ch09:" in listed.stdout and "ch09b:" in listed.stdout
    env = {"PATH": "/usr/bin:/bin", "LAB_LABS_DIR": str(mine)}
    rendered = _run(bin_dir / "labctl", *config, "render", "ch09b", cwd=work, env=env)
    assert "name: simple-app-dep" in rendered.stdout


def test_no_labs_found_is_an_error(installed):
    bin_dir, work = installed
    site = Path(
        _run(bin_dir / "python", "-c", "import k8slab; print(k8slab.__file__)", cwd=work).stdout
    ).parent
    shutil.move(site / "labs", site / "labs.away")
    try:
        r = _run(bin_dir / "labctl", "labs", cwd=work, check=False)
    finally:
        shutil.move(site / "labs.away", site / "labs")
    assert r.returncode == 2
    assert r.stderr.startswith("Error: no labs found (looked in ")


def test_every_package_of_k8slab_is_in_the_wheel_list():
    # pyproject.toml lists packages by hand (labs/, templates/, manifests/ are mapped in);
    # a new subpackage left out works from the clone and breaks only installed copies.
    import tomllib

    listed = set(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for p in (REPO_ROOT / "k8slab").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
