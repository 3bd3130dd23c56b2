"""The lab's image contexts really behave: count.sh counts and stops on SIGTERM/SIGINT, and
the simple-app server answers "Hello World v1". Run with busybox, as inside the images
(`FROM busybox`), but on this machine: no Docker here."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from k8slab.topology import DATA_ROOT

IMAGES = DATA_ROOT / "labs" / "ch09" / "images"
BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(not BUSYBOX, reason="needs busybox (apt-get install busybox)")


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def start_count(tmp_path: Path, interval: str) -> subprocess.Popen:
    env = {**os.environ, "COUNT_INTERVAL": interval, "HTDOCS": str(tmp_path / "htdocs")}
    return subprocess.Popen([BUSYBOX, "sh", str(IMAGES / "count" / "count.sh")], env=env)


def read_seq(tmp_path: Path) -> int | None:
    try:
        text = (tmp_path / "htdocs" / "index.html").read_text()
    except FileNotFoundError:
        return None
    m = re.fullmatch(r"RUNNING loop seq (\d+)\n", text)
    return int(m.group(1)) if m else None


def test_count_writes_the_course_line_and_counts_up(tmp_path):
    proc = start_count(tmp_path, "0.2")
    try:
        assert wait_for(lambda: read_seq(tmp_path) is not None) and read_seq(tmp_path) in (0, 1)
        assert wait_for(lambda: (read_seq(tmp_path) or 0) >= 3)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_count_stops_promptly_on_signal_even_mid_interval(tmp_path, sig):
    proc = start_count(tmp_path, "30")
    wait_for(lambda: read_seq(tmp_path) == 0)
    started = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(timeout=5) == 0
    # Far less than the 30 s interval: the trap runs without waiting for sleep to end.
    assert time.monotonic() - started < 3


def test_count_image_runs_the_script_as_pid_1():
    dockerfile = (IMAGES / "count" / "Dockerfile").read_text()
    assert re.search(r"^FROM busybox\s*$", dockerfile, re.M)
    assert 'ENTRYPOINT ["/bin/count.sh"]' in dockerfile
    assert os.access(IMAGES / "count" / "count.sh", os.X_OK)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simple_app_answers_hello_world_v1(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "httpd").symlink_to(BUSYBOX)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PORT": str(port),
        "WWW": str(IMAGES / "simple-app" / "www"),
    }
    proc = subprocess.Popen([BUSYBOX, "sh", str(IMAGES / "simple-app" / "serve.sh")], env=env)
    try:

        def get():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    return r.read().decode()
            except OSError:
                return None

        assert wait_for(get) == "Hello World v1\n"
    finally:
        proc.terminate()
        proc.wait()
    dockerfile = (IMAGES / "simple-app" / "Dockerfile").read_text()
    assert re.search(r"^FROM busybox\s*$", dockerfile, re.M)
    assert "EXPOSE 8080" in dockerfile
