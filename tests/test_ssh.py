"""labctl over SSH against a real sshd on loopback: node preparation, a check that needs no
Kubernetes, record/replay, and the host-key, auth and reachability errors."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from k8slab.cli import main


@pytest.fixture
def env(sshd, tmp_path):
    """A topology on the local sshd whose hostPath directory is a temporary one; `true`
    stands in for kubectl, so that labctl sees a cluster (none runs here)."""
    htdocs = tmp_path / "htdocs"
    config = sshd.topology(
        tmp_path / "lab.yaml", labs={"ch09": {"hostpath": str(htdocs), "kubectl": "true"}}
    )
    known = tmp_path / "known_hosts"
    return config, known, htdocs


def labctl(config, known, *args, input=None):
    result = CliRunner().invoke(
        main, ["--config", str(config), "--known-hosts", str(known), *args], input=input
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_hostpath_file_check_fails_then_apply_fixes_it_idempotently(env, sshd, tmp_path):
    config, known, htdocs = env
    only = ("verify", "ch09", "--only", "storage.hostpath-file", "--format", "json")

    before = labctl(config, known, *only)
    assert before.exit_code == 1, before.output
    (row,) = json.loads(before.output)["checks"]
    assert row["status"] == "fail"
    assert row["evidence"].endswith(f"cat: {htdocs}/index.html: No such file or directory")
    assert row["hint"].startswith("`labctl apply ch09 --only hostpath`")

    applied = labctl(config, known, "apply", "ch09", "--only", "hostpath", "--nodes-only")
    assert applied.exit_code == 0, applied.output
    assert "index.html holds the node's hostname (the course's hostPath step): changed" in (
        applied.output
    )
    assert (htdocs / "index.html").read_text() == socket.gethostname() + "\n"
    again = labctl(config, known, "apply", "ch09", "--only", "hostpath", "--nodes-only")
    assert ": no changes" in again.output and ": changed" not in again.output

    after = labctl(config, known, *only, "--record", str(tmp_path / "bundle"))
    assert after.exit_code == 0, after.output
    (row,) = json.loads(after.output.split("\n", 1)[1])["checks"]
    assert row["status"] == "pass"
    assert row["evidence"] == f"{socket.gethostname()} (expected {socket.gethostname()})"

    # The bundle grades the same offline, and tells a support reader what ran.
    replay = CliRunner().invoke(
        main, ["verify", "--replay", str(tmp_path / "bundle"), "--format", "json"]
    )
    assert replay.exit_code == 0, replay.output
    assert json.loads(replay.output)["checks"][0]["evidence"] == row["evidence"]
    index = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert {(c["command"], c["exit_code"]) for c in index["commands"]} == {
        (f"cat {htdocs}/index.html", 0),
        ("hostname", 0),
    }

    # New host keys were accepted and remembered (accept-new), once per host:port.
    (entry,) = known.read_text().splitlines()
    assert entry.split() == [f"[127.0.0.1]:{sshd.port}", "ssh-ed25519", sshd.host_public_key()]


@pytest.mark.parametrize(
    "key_type",
    [
        "ed25519",  # the type the server offers, another key
        "rsa",  # paramiko negotiates the known type, whose key then does not match: refused
    ],
)
def test_a_changed_host_key_is_refused_and_not_replaced(env, sshd, tmp_path, key_type):
    config, known, _ = env
    other = tmp_path / key_type
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(other)], check=True)
    stale = f"[127.0.0.1]:{sshd.port} " + " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known.write_text(stale + "\n")
    result = labctl(config, known, "verify", "--only", "storage.hostpath-file")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    assert f"(127.0.0.1:{sshd.port}): host key does not match {known}" in line
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in line
    assert known.read_text() == stale + "\n"


def test_an_unreachable_host_is_one_line_per_host(env, sshd, tmp_path):
    config, known, _ = env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    text = config.read_text().replace(f"ssh_port: {sshd.port}", f"ssh_port: {closed}")
    config.write_text(text)
    result = labctl(config, known, "verify")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 2  # master and the worker, both on the closed port
    for line in lines:
        assert f"(127.0.0.1:{closed}): cannot connect: connection refused" in line
    assert "Traceback" not in result.output


def test_a_key_the_server_does_not_accept_is_an_auth_error(env, sshd, tmp_path):
    config, known, _ = env
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config.write_text(config.read_text().replace(str(sshd.client_key), str(stranger)))
    result = labctl(config, known, "verify", "--only", "storage.hostpath-file")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert ": authentication failed for user " in line
