"""The lab's own shell scripts (the counter re-read, the port-forward) run for real: /bin/sh,
real curl against a web server on loopback. Only kubectl is a stand-in (no cluster here):
`get pod NAME` prints the server's address, `get pod -o wide` the course's pod list,
`exec nginx -- CMD` runs CMD on this machine as the pod would, and `port-forward` prints
kubectl's "Forwarding from" line, then a recorded port-forward output
(tests/fixtures/README.md), and waits."""

from __future__ import annotations

import http.server
import subprocess
import threading

import pytest
from conftest import COURSE_TOPOLOGY, PUBLIC, SEED, _free_port

from k8slab.checks.engine import Commands, verify
from k8slab.labs import load_lab
from k8slab.ssh import Result
from k8slab.topology import load

KUBECTL = """#!/bin/sh
case "$1 $2 $3" in
  "get pod -o") cat {pods} ;;
  get*) echo "127.0.0.1:{port}" ;;
  exec*) shift; while [ "$1" != "--" ]; do shift; done; shift; exec "$@" ;;
  port-forward*) echo "Forwarding from 127.0.0.1:{port} -> 80"; cat {forward_log} >&2
    exec sleep 30 ;;
esac
"""


class Page(http.server.BaseHTTPRequestHandler):
    """A quiet web server answering `body()` to every GET."""

    def body(self) -> str:
        raise NotImplementedError

    def do_GET(self):  # noqa: N802 - http.server's name
        body = self.body().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Counter(Page):
    """Answers like the count container's web-server: the seq grows by one per request."""

    seq = 48

    def body(self) -> str:
        Counter.seq += 1
        return f"RUNNING loop seq {Counter.seq - 1}\n"


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Counter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _grade(tmp_path, check: str, port: int, forward_log=None) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "kubectl"
    empty = tmp_path / "empty"
    empty.write_text("")
    stub.write_text(
        KUBECTL.format(
            port=port,
            pods=SEED / "kubectl-get-pod-wide.hostpath.txt",
            forward_log=forward_log or empty,
        )
    )
    stub.chmod(0o755)
    config = tmp_path / "topology.yaml"
    config.write_text(COURSE_TOPOLOGY.read_text() + f"labs: {{ch09: {{forward_port: {port}}}}}\n")
    topo = load(config)
    lab = load_lab("ch09", topo)
    checks = lab.select_checks((check,))

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
    return {"status": row.status, "evidence": row.evidence, "hint": row.hint}


def test_the_counter_script_sees_the_number_grow(tmp_path, server):
    Counter.seq = 48
    row = _grade(tmp_path, "storage.emptydir-counts", server.server_address[1])
    assert (row["status"], row["evidence"]) == ("pass", "48 -> 49")


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
    row = _grade(tmp_path, "storage.emptydir-counts", port)
    assert row["status"] == "fail"
    assert row["evidence"].startswith(
        f"the second read failed: curl: (7) Failed to connect to 127.0.0.1 port {port}"
    )


class Hostname(Page):
    """httpd serving the hostPath index.html of slave1."""

    def body(self) -> str:
        return "slave1\n"


def test_the_port_forward_script_prints_the_node_name(tmp_path):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Hostname)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        row = _grade(tmp_path, "storage.hostpath-forward", httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (row["status"], row["evidence"]) == (
        "pass",
        "printed slave1; volume-hostpath runs on slave1",
    )


def test_the_port_forward_script_keeps_port_forwards_error(tmp_path):
    """Nothing answers on the forwarded port; port-forward's own output names socat."""
    row = _grade(
        tmp_path,
        "storage.hostpath-forward",
        _free_port(),
        PUBLIC / "kubectl-port-forward.socat-not-found.txt",
    )
    assert row["status"] == "fail"
    assert row["evidence"].startswith("port-forward failed: an error occurred forwarding ")
    assert row["evidence"].endswith("unable to do port forwarding: socat not found.")
    assert row["hint"].startswith("socat is missing on slave1: ")
