"""Bad input through the real CLI: each is one line on stderr, a non-zero exit (2: usage,
configuration, connection), no traceback, and nothing changed (not even known_hosts).

The SSH cases use the real loopback sshd of tests/conftest.py; sudo wanting a password needs
a non-root user and is tested on the test bed (tests/testbed/test_bad_input_bed.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import course_topology

LABCTL = str(Path(sys.executable).with_name("labctl"))
GOOD = course_topology()


def labctl(
    tmp_path: Path, *args: str, timeout: float = 60, lines: int = 1
) -> tuple[int, str, float]:
    """Run labctl in a scratch directory; returns (exit code, the stderr lines, seconds):
    `lines` of them (one per host for connection errors), joined by newlines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    start = time.monotonic()
    r = subprocess.run(
        [LABCTL, "--known-hosts", str(tmp_path / "known_hosts"), *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - start
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stdout == ""
    said = r.stderr.strip().splitlines()
    assert len(said) == lines, r.stderr
    return r.returncode, "\n".join(said), seconds


def topology(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def with_hosts(*hosts: dict, **top) -> dict:
    return {**GOOD, **top, "hosts": list(hosts)}


CP = {"name": "master", "role": "control-plane", "node_ip": "10.0.2.15"}
W1 = {"name": "slave1", "role": "worker", "node_ip": "10.0.2.4"}

TOPOLOGY_ERRORS = [
    (
        "malformed-yaml",
        "ssh_user: gurumee\nhosts:\n  - {name: master, role: control-plane\n",
        "{p}: line 4: malformed YAML: expected ',' or '}}', but got '<stream end>'",
    ),
    (
        "unknown-key",
        {**GOOD, "ssh_usr": "gurumee"},
        "{p}: ssh_usr: unknown key (did you mean 'ssh_user'?)",
    ),
    (
        "unknown-host-key",
        with_hosts(CP, {**W1, "node_pi": "10.0.2.4"}),
        "{p}: hosts[1] (slave1).node_pi: unknown key (did you mean 'node_ip'?)",
    ),
    (
        "bad-ip",
        with_hosts(CP, {**W1, "node_ip": "10.0.2.300"}),
        "{p}: hosts[1] (slave1).node_ip: '10.0.2.300' is not an IPv4 address",
    ),
    (
        "duplicate-host",
        with_hosts(CP, W1, {**W1, "node_ip": "10.0.2.5"}),
        "{p}: hosts[2].name: slave1 is also used by hosts[1]",
    ),
    (
        "duplicate-ip",
        with_hosts(CP, W1, {**W1, "name": "slave2"}),
        "{p}: hosts[2].node_ip: 10.0.2.4 is also used by hosts[1]",
    ),
    (
        "overlapping-subnets",
        {**GOOD, "kube_service_subnet": "10.40.0.0/16"},
        "{p}: kube_service_subnet: 10.40.0.0/16 overlaps kube_pod_subnet 10.32.0.0/12",
    ),
    (
        "subnet-holds-node-ip",
        {**GOOD, "kube_pod_subnet": "10.0.0.0/16"},
        "{p}: kube_pod_subnet: 10.0.0.0/16 contains node_ip 10.0.2.15 of host master",
    ),
    (
        "no-control-plane",
        with_hosts({**CP, "role": "worker"}, W1),
        "{p}: hosts: exactly one host needs role: control-plane (found: none)",
    ),
    (
        "unsupported-kube-minor",
        {**GOOD, "kube_version": "1.29"},
        "{p}: kube_version: '1.29' is not a supported minor (supported: 1.35, 1.36, 1.37)",
    ),
]


@pytest.mark.parametrize("command", ["doctor", "reset --yes", "verify"])
@pytest.mark.parametrize(
    "data,expected", [(d, e) for _, d, e in TOPOLOGY_ERRORS], ids=[i for i, _, _ in TOPOLOGY_ERRORS]
)
def test_topology_errors(tmp_path, data, expected, command):
    path = topology(tmp_path, data)
    code, line, _ = labctl(tmp_path, "--config", str(path), *command.split())
    assert code == 2
    assert line == "Error: " + expected.format(p=path)
    assert not (tmp_path / "known_hosts").exists()  # nothing connected


def test_topology_file_missing_says_where_it_looked(tmp_path):
    code, line, _ = labctl(tmp_path, "--config", "nope.yaml", "doctor")
    assert code == 2
    repo = Path(__file__).resolve().parents[1]
    assert line == (
        "Error: topology file nope.yaml not found (looked at: --config, $LAB_CONFIG, "
        f"./inventory/lab.yaml, {repo}/inventory/lab.yaml); write one as README.md says "
        '("Prepare your three VMs")'
    )


def test_unknown_lab(tmp_path):
    code, line, _ = labctl(tmp_path, "--config", str(topology(tmp_path, GOOD)), "verify", "ch99")
    assert (code, line) == (2, "Error: no lab 'ch99' (did you mean 'ch09'?) (labs: ch09)")


def test_unknown_check_id(tmp_path):
    path = str(topology(tmp_path, GOOD))
    code, line, _ = labctl(tmp_path, "--config", path, "verify", "ch09", "--only", "net.nope")
    assert code == 2
    assert line.startswith(
        "Error: ch09: no check 'net.nope' (did you mean 'net.nodes'?) "
        "(groups: cluster, net, dns, storage; checks: cluster.api, net.nodes, "
    )
    code, line, _ = labctl(tmp_path, "--config", path, "doctor", "--skip", "swapp")
    assert code == 2
    assert line.startswith(
        "Error: preflight: no check 'swapp' (did you mean 'swap'?) (groups: memory, swap, unique; "
        "checks: sudo, os, cpus, "
    )


def path_hosts(path: Path) -> list[str]:
    return [h["name"] for h in yaml.safe_load(path.read_text())["hosts"]]


def _sshd_topology(tmp_path: Path, sshd, **top) -> Path:
    path = sshd.topology(tmp_path / "sshd-lab.yaml")
    data = yaml.safe_load(path.read_text())
    data.update(top)
    return topology(tmp_path, data)


def test_unreadable_key_file(tmp_path, sshd):
    key = tmp_path / "id_missing"
    path = _sshd_topology(tmp_path, sshd, ssh_key=str(key))
    code, line, _ = labctl(tmp_path, "--config", str(path), "doctor")
    assert code == 2
    assert line == (
        f"Error: cannot read ssh_key {key} (of master, {path_hosts(path)[1]}): No such file or "
        "directory; fix ssh_key in the topology file (ssh-keygen -t ed25519 makes a key)"
    )


def test_wrong_key_is_auth_refused(tmp_path, sshd):
    key = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = _sshd_topology(tmp_path, sshd, ssh_key=str(key))
    code, said, _ = labctl(tmp_path, "--config", str(path), "doctor", lines=2)
    assert code == 2
    for name, line in zip(path_hosts(path), said.splitlines(), strict=True):
        assert line.startswith(f"Error: {name} (127.0.0.1:{sshd.port}): authentication failed")
        assert str(key) in line
        assert line.endswith(f"try: ssh -i {key} -p {sshd.port} {sshd.user}@127.0.0.1")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_host_unreachable_closed_port_names_it(tmp_path):
    port = _closed_port()
    data = with_hosts(
        {**CP, "ssh_host": "127.0.0.1", "ssh_port": port},
        {**W1, "ssh_host": "127.0.0.1", "ssh_port": port},
    )
    path = topology(tmp_path, data)
    code, said, _ = labctl(tmp_path, "--config", str(path), "doctor", lines=2)
    assert code == 2
    for name, line in zip(("master", "slave1"), said.splitlines(), strict=True):
        assert line == (
            f"Error: {name} (127.0.0.1:{port}): cannot connect: connection refused (nothing "
            f"listens on port {port}); is the VM running? check ssh_host/ssh_port; "
            f"try: ssh -p {port} gurumee@127.0.0.1"
        )
