"""The lab's own shell scripts (the counter re-read) run for real: /bin/sh, real curl against a
web server on loopback. Only kubectl is a stand-in (no cluster here): `get` prints the
server's address and `exec nginx -- CMD` runs CMD on this machine, as the pod would."""

from __future__ import annotations

import http.server
import subprocess
import threading

import pytest
from conftest import COURSE_TOPOLOGY

from k8slab.checks.engine import Commands, verify
from k8slab.labs import load_lab
from k8slab.ssh import Result
from k8slab.topology import load

KUBECTL = """#!/bin/sh
case "$1" in
  get) echo "127.0.0.1:{port}" ;;
  exec) shift; while [ "$1" != "--" ]; do shift; done; shift; exec "$@" ;;
esac
"""


class Counter(http.server.BaseHTTPRequestHandler):
    """Answers like the count container's web-server: the seq grows by one per request
    until `stop_after` requests, then the server closes (a pod gone away)."""

    seq = 48

    def do_GET(self):  # noqa: N802 - http.server's name
        body = f"RUNNING loop seq {Counter.seq}\n".encode()
        Counter.seq += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Counter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _grade_counts(tmp_path, port: int) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "kubectl"
    stub.write_text(KUBECTL.format(port=port))
    stub.chmod(0o755)
    topo = load(COURSE_TOPOLOGY)
    lab = load_lab("ch09", topo)
    checks = lab.select_checks(("storage.emptydir-counts",))

    def run(host: str, cmd: str) -> Result:
        p = subprocess.run(
            ["/bin/sh", "-c", cmd],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        )
        return Result(p.stdout, p.stderr, p.returncode)

    report = verify(lab, topo, Commands(run), checks)
    (row,) = report.results
    return {"status": row.status, "evidence": row.evidence}


def test_the_counter_script_sees_the_number_grow(tmp_path, server):
    Counter.seq = 48
    row = _grade_counts(tmp_path, server.server_address[1])
    assert row == {"status": "pass", "evidence": "48 -> 49"}


def test_the_counter_script_says_the_second_read_failed(tmp_path, server):
    """The server answers the first read, then goes away: the check says the read failed
    (curl's own error), not that the value did not change."""
    Counter.seq = 48
    port = server.server_address[1]

    class Once(Counter):
        def do_GET(self):  # noqa: N802
            super().do_GET()
            threading.Thread(target=server.shutdown).start()
            server.socket.close()

    server.RequestHandlerClass = Once
    row = _grade_counts(tmp_path, port)
    assert row["status"] == "fail"
    assert row["evidence"].startswith(
        f"the second read failed: curl: (7) Failed to connect to 127.0.0.1 port {port}"
    )
