"""A learner's first hour, through the real `labctl` and `pyinfra` executables: hosts that
are down or mute among real sshd on loopback, a topology saved in CP949 or with a tab, output
fitted to 80 columns, colour and progress only on a terminal, a bundle sent as .tgz."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import yaml
from conftest import COURSE_TOPOLOGY, LocalSSHD, write_bundle

from k8slab.ssh import Result
from k8slab.topology import REPO_ROOT

BIN = Path(sys.executable).parent
LABCTL = str(BIN / "labctl")
TWO_HOSTS = {
    "hosts": [
        {"name": "master", "role": "control-plane", "node_ip": "10.0.2.15"},
        {"name": "slave1", "role": "worker", "node_ip": "10.0.2.4"},
    ]
}


def labctl(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120):
    """The installed labctl, piped (no terminal), with no LAB_* variables of the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_") and k != "COLUMNS"}
    r = subprocess.run(
        [LABCTL, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def on_a_terminal(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[str, str]:
    """Run labctl with stdout and stderr on two pseudo-terminals: (stdout, stderr) as seen."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_") and k != "NO_COLOR"}
    proc = subprocess.Popen(
        [LABCTL, *args],
        stdin=subprocess.DEVNULL,
        stdout=out_slave,
        stderr=err_slave,
        env={**clean, "TERM": "xterm", **(env or {})},
    )
    os.close(out_slave)
    os.close(err_slave)
    seen = {out_master: b"", err_master: b""}
    open_fds = [out_master, err_master]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], timeout)
        assert ready, "labctl hung"
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                chunk = b""
            if not chunk:
                open_fds.remove(fd)
                os.close(fd)
            seen[fd] += chunk
    proc.wait(timeout=timeout)
    return seen[out_master].decode(), seen[err_master].decode()


# --- three real sshd on loopback, one of them stopped ----------------------------------


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory, sshd):
    """master and slave1 are two real sshd; slave2's sshd was started and then stopped, so
    its port is closed (a VM that is powered off)."""
    root = tmp_path_factory.mktemp("three")
    slave1 = LocalSSHD(tmp_path_factory.mktemp("slave1"))
    slave2 = LocalSSHD(tmp_path_factory.mktemp("slave2"))
    slave2.stop()
    hosts = []
    for name, role, ip, server in (
        ("master", "control-plane", "10.0.2.15", sshd),
        ("slave1", "worker", "10.0.2.4", slave1),
        ("slave2", "worker", "10.0.2.5", slave2),
    ):
        hosts.append(
            {
                "name": name,
                "role": role,
                "node_ip": ip,
                "ssh_host": "127.0.0.1",
                "ssh_port": server.port,
                "ssh_user": server.user,
                "ssh_key": str(server.client_key),
            }
        )
    config = root / "lab.yaml"
    config.write_text(yaml.safe_dump({"hosts": hosts}))
    yield config, root / "known_hosts", slave2.port
    slave1.stop()


def _connect_line(name: str, port: int, user: str, key: str) -> str:
    return (
        f"Error: {name} (127.0.0.1:{port}): cannot connect: connection refused (nothing listens "
        f"on port {port}); is the VM running? check ssh_host/ssh_port; "
        f"try: ssh -i {key} -p {port} {user}@127.0.0.1"
    )


def test_doctor_reports_every_host_when_one_is_down(three_hosts, sshd):
    config, known, port = three_hosts
    r = labctl("--config", str(config), "--known-hosts", str(known), "doctor", "--skip", "sources")
    assert r.returncode == 2
    key = yaml.safe_load(config.read_text())["hosts"][2]["ssh_key"]
    assert r.stderr.splitlines() == [_connect_line("slave2", port, sshd.user, key)]
    rows = {tuple(line.split()[:3]) for line in r.stdout.splitlines()}
    assert {("sudo", "master", "PASS"), ("sudo", "slave1", "PASS")} <= rows
    assert ("sudo", "slave2", "ERROR") in rows
    # the reachable hosts are compared with each other, and not blocked by slave2
    assert ("ports", "master", "SKIP") not in rows
    assert re.search(r"^errors: sudo on slave2; os on slave2;", r.stdout, re.M)
    flat = " ".join(r.stdout.split())
    assert f"hint: is the VM running? check ssh_host/ssh_port; try: ssh -i {key}" in flat


def test_verify_grades_the_reachable_hosts_and_marks_the_rest_error(three_hosts):
    config, known, port = three_hosts
    r = labctl("--config", str(config), "--known-hosts", str(known), "verify", "--format", "json")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "slave2" in r.stderr
    checks = json.loads(r.stdout)["checks"]
    by_host = {}
    for c in checks:
        by_host.setdefault(c["host"], set()).add(c["status"])
    assert by_host["slave2"] == {"error"}
    assert "error" not in by_host["master"] | by_host["slave1"]
    (file_row,) = [
        c for c in checks if c["id"] == "storage.hostpath-file" and c["host"] == "slave2"
    ]
    assert file_row["evidence"].startswith(f"slave2 (127.0.0.1:{port}): cannot connect")
    assert file_row["hint"].startswith("is the VM running?")


def test_status_shows_the_others_and_names_the_down_host(three_hosts):
    config, known, port = three_hosts
    r = labctl("--config", str(config), "--known-hosts", str(known), "status")
    assert r.returncode == 2
    assert "slave2" in r.stderr and len(r.stderr.splitlines()) == 1
    weave = r.stdout.split("WEAVE", 1)[1]
    for name in ("master", "slave1"):
        assert f"  {name}: no weave status on :6784" in weave
    assert f"  slave2: slave2 (127.0.0.1:{port}): cannot connect" in weave
    assert max(len(line) for line in r.stdout.splitlines()) <= 80  # piped: 80 columns


def test_all_hosts_down_names_each_of_them(tmp_path):
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    hosts = [
        {**h, "ssh_host": "127.0.0.1", "ssh_port": p, "ssh_user": "root"}
        for h, p in zip(
            [*TWO_HOSTS["hosts"], {"name": "slave2", "role": "worker", "node_ip": "10.0.2.5"}],
            ports,
            strict=True,
        )
    ]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({"hosts": hosts}))
    r = labctl(
        "--config", str(tmp_path / "lab.yaml"), "--known-hosts", str(tmp_path / "kh"), "doctor"
    )
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert [line.split()[1] for line in lines] == ["master", "slave1", "slave2"]
    assert all("connection refused" in line and "try: ssh -p" in line for line in lines)


def test_a_port_that_never_says_ssh_is_one_line_per_host(tmp_path):
    """A VirtualBox port forward while the VM boots: the port accepts and stays silent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []

    def accept_and_say_nothing():
        try:
            while True:
                held.append(listener.accept())
        except OSError:  # the listener was closed: the test is over
            pass

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    port = listener.getsockname()[1]
    hosts = [{**h, "ssh_host": "127.0.0.1", "ssh_port": port} for h in TWO_HOSTS["hosts"]]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({"ssh_user": "root", "hosts": hosts}))
    try:
        r = labctl(
            "--config", str(tmp_path / "lab.yaml"), "--known-hosts", str(tmp_path / "kh"), "doctor"
        )
    finally:
        listener.close()
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"waiting for master (127.0.0.1:{port}), slave1 (127.0.0.1:{port}) to answer SSH "
        "(up to 10 s) ..."
    )
    assert lines[1:] == [
        f"Error: {name} (127.0.0.1:{port}): cannot connect: port {port} accepted but sent no SSH "
        "banner; a VirtualBox port forward to a VM still booting? wait and retry; "
        f"try: ssh -p {port} root@127.0.0.1"
        for name in ("master", "slave1")
    ]


def test_progress_and_colour_on_a_terminal_only(three_hosts):
    config, known, _ = three_hosts
    args = ("--config", str(config), "--known-hosts", str(known), "verify", "--only", "net.pause")
    out, err = on_a_terminal(*args)
    assert "\033[31m" in out or "\033[31;1m" in out  # FAIL / ERROR in red
    assert "connecting to master, slave1, slave2 ..." in err
    assert "checking ... commands answered: master" in err
    out, err = on_a_terminal(*args, env={"NO_COLOR": "1"})
    assert "\033[" not in out
    piped = labctl(*args)
    assert "\033[" not in piped.stdout + piped.stderr
    assert "connecting" not in piped.stderr and "checking" not in piped.stderr


# --- the topology file ---------------------------------------------------------------


def _topology(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


HOSTS_YAML = (
    "hosts:\n"
    "  - {name: master, role: control-plane, node_ip: 10.0.2.15}\n"
    "  - {name: slave1, role: worker, node_ip: 10.0.2.4}\n"
)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            ("# 실습용 VM\n" + HOSTS_YAML).encode("cp949"),
            "{p}: line 1: not UTF-8 (it looks like CP949/EUC-KR: Windows Notepad's Korean "
            "ANSI); save it as UTF-8 (Notepad: Save as, Encoding UTF-8) or run: "
            "iconv -f cp949 -t utf-8 {p} > fixed.yaml",
        ),
        (
            HOSTS_YAML.replace("  - {name: slave1", "\t- {name: slave1"),
            "{p}: line 3: YAML does not allow tabs, use spaces",
        ),
        (
            "kube_version: 1.30\n" + HOSTS_YAML,
            "{p}: kube_version: YAML read this as the number 1.3 (1.30 becomes 1.3): "
            'put it in quotes, e.g. kube_version: "1.36"',
        ),
        (
            HOSTS_YAML.replace("node_ip: 10.0.2.4}", "node_ip: 10.0.2.4, ssh_hots: 127.0.0.1}"),
            "{p}: hosts[1] (slave1).ssh_hots: unknown key (did you mean 'ssh_host'?)",
        ),
        (
            HOSTS_YAML + "labs: {ch9: {replicas: 2}}\n",
            "{p}: labs.ch9: no such lab (did you mean 'ch09'?)",
        ),
        (
            HOSTS_YAML + "labs: {ch09: {replica: 2}}\n",
            "{p}: labs.ch09.replica: unknown key (did you mean 'replicas'?)",
        ),
    ],
    ids=["cp949", "tab", "unquoted-1.30", "host-key", "lab-id", "lab-key"],
)
def test_topology_mistakes_are_explained(tmp_path, text, message):
    path = _topology(tmp_path, text)
    r = labctl("--config", str(path), "render", "ch09")
    assert r.returncode == 2
    assert r.stderr.strip() == "Error: " + message.format(p=path)


def test_pyinfra_inventory_checks_before_connecting(tmp_path):
    """pyinfra itself prints gevent tracebacks for a missing key and a UnicodeDecodeError for
    a CP949 file; the inventory says it in one line before pyinfra connects anywhere."""
    pyinfra = str(BIN / "pyinfra")
    inventory = str(REPO_ROOT / "inventory" / "lab.py")
    missing = tmp_path / "id_missing"
    cases = {
        "key": (f"ssh_key: {missing}\n" + HOSTS_YAML, f"cannot read ssh_key {missing}"),
        "cp949": (("# 실습용 VM\n" + HOSTS_YAML).encode("cp949"), "not UTF-8 (it looks like CP949"),
    }
    for text, expected in cases.values():
        path = _topology(tmp_path, text)
        r = subprocess.run(
            [pyinfra, "-y", inventory, "exec", "--", "true"],
            env={**os.environ, "LAB_CONFIG": str(path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0
        assert "Traceback" not in r.stdout + r.stderr
        (line,) = [x for x in r.stderr.splitlines() if x.startswith("k8s-lab: ")]
        assert expected in line


def test_pyinfra_inventory_takes_the_lab_passwords(tmp_path):
    """The passwords labctl reads reach the host data pyinfra's SSH connector uses
    (`ssh_password`, `_sudo_password`), so pyinfra does not prompt per host. Checked on that
    data (pyinfra debug-inventory): no sshd here accepts a password login."""
    path = _topology(tmp_path, HOSTS_YAML)
    env = {**os.environ, "LAB_CONFIG": str(path)}
    cmd = [str(BIN / "pyinfra"), str(REPO_ROOT / "inventory" / "lab.py"), "debug-inventory"]
    plain = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert "ssh_password" not in plain.stdout + plain.stderr
    assert "_sudo_password" not in plain.stdout + plain.stderr
    env |= {"LAB_SSH_PASSWORD": "pw-ssh", "LAB_SUDO_PASSWORD": "pw-sudo"}
    given = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert given.returncode == 0, given.stderr
    said = given.stdout + given.stderr  # pyinfra prints its inventory on stderr
    assert said.count('"ssh_password": "pw-ssh"') == 2
    assert said.count('"_sudo_password": "pw-sudo"') == 2


# --- names, output width, bundles ------------------------------------------------------


def test_wrong_names_get_a_did_you_mean_and_the_groups():
    config = ("--config", str(COURSE_TOPOLOGY))
    r = labctl(*config, "render", "ch9")
    assert r.stderr.strip() == "Error: no lab 'ch9' (did you mean 'ch09'?) (labs: ch09)"
    r = labctl(*config, "verify", "--only", "storage.hostpth-file")
    assert r.returncode == 2
    assert r.stderr.startswith(
        "Error: ch09: no check 'storage.hostpth-file' (did you mean 'storage.hostpath-file'?) "
        "(groups: cluster, net, dns, storage; checks: cluster.api, "
    )
    r = labctl(*config, "apply", "--only", "hostpth")
    assert "no step 'hostpth' (did you mean 'hostpath'?)" in r.stderr


# The check runs `curl -s` (silent: no message of its own) through `kubectl exec`, which
# says this on stderr when the command in the pod exits non-zero (6: name not resolved).
CURL_FAILED = Result("", "command terminated with exit code 6\n", 6)


def test_tables_fit_80_columns_and_the_summary_names_the_failures(tmp_path):
    bundle = write_bundle(tmp_path / "b", {("master", "dns.curl", "curl"): CURL_FAILED})
    r = labctl("verify", "--replay", str(bundle), env={"COLUMNS": "80"})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "failed: dns.curl on master" in lines
    # the evidence wraps under its column instead of being cut before the cause
    text = "".join(r.stdout.split())
    assert "exited6:commandterminatedwithexitcode6" in text
    wide = labctl("verify", "--replay", str(bundle), env={"COLUMNS": "200"})
    assert max(len(line) for line in wide.stdout.splitlines()) > 100
    piped = labctl("verify", "--replay", str(bundle))  # no COLUMNS, no terminal: 80
    assert max(len(line) for line in piped.stdout.splitlines()) <= 80


def test_labs_listings_fit_80_columns_whole(tmp_path):
    from k8slab.checks import host_kinds  # noqa: F401 - the doctor's kinds are listed too
    from k8slab.checks.kinds import KINDS

    kinds = labctl("labs", "--kinds", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in kinds.splitlines()) <= 80
    flat = " ".join(kinds.split())
    for name, kind in KINDS.items():
        assert f"{name} {' '.join(kind.doc.split(chr(10) * 2)[0].split())}" in flat
    listing = labctl("--config", str(COURSE_TOPOLOGY), "labs", env={"COLUMNS": "80"})
    assert max(len(line) for line in listing.stdout.splitlines()) <= 80
    assert "  checks (labctl verify ch09 --only ID, or a group: cluster, net, dns, storage):" in (
        listing.stdout
    )


def test_replay_takes_the_tgz_a_learner_sends(tmp_path):
    bundle = write_bundle(tmp_path / "bundle", {("master", "dns.curl", "curl"): CURL_FAILED})
    subprocess.run(["tar", "czf", "bundle.tgz", "bundle"], cwd=tmp_path, check=True)
    from_dir = labctl("verify", "--replay", str(bundle), "--format", "json")
    from_tgz = labctl("verify", "--replay", str(tmp_path / "bundle.tgz"), "--format", "json")
    assert from_tgz.returncode == from_dir.returncode == 1
    strip = [
        {k: v for k, v in c.items() if k != "seconds"}
        for c in json.loads(from_dir.stdout)["checks"]
    ]
    assert [
        {k: v for k, v in c.items() if k != "seconds"}
        for c in json.loads(from_tgz.stdout)["checks"]
    ] == strip

    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(bundle / "bundle.json", arcname="../bundle.json")
    r = labctl("verify", "--replay", str(evil))
    assert r.returncode == 2
    assert r.stderr.strip() == f"Error: {evil}: refusing archive member '../bundle.json'"


def test_delete_and_reset_without_a_terminal_need_yes():
    config = ("--config", str(COURSE_TOPOLOGY))
    for command, changes in (
        ("delete", "delete changes the cluster and slave1, slave2"),
        ("reset", "reset changes master, slave1, slave2"),
    ):
        r = labctl(*config, command)
        assert r.returncode == 2
        assert r.stderr.strip() == f"Error: {changes}: pass --yes (no terminal to ask on)"


def test_help_examples_say_which_need_a_cluster():
    for command, words in (
        ("apply", "Needs the cluster"),
        ("delete", "Needs the cluster"),
        ("verify", "# over SSH, on the cluster"),
        ("status", "# on the cluster, over SSH"),
        ("doctor", "no cluster needed"),
        ("reset", "connects to them"),
        ("labs", "Connects nowhere"),
    ):
        assert words in " ".join(labctl(command, "--help").stdout.split()), command


def test_the_cli_imports_no_heavy_library_before_a_command_needs_it():
    """What keeps `labctl --help` and `labctl labs` fast (bench/bench_startup.py times them)."""
    code = (
        "import sys, k8slab.cli; "
        "print(sorted(m for m in ('paramiko', 'pyinfra', 'jinja2', 'k8slab.checks.kinds') "
        "if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_delete_and_reset_ask_on_a_terminal():
    """The question path: a person at a terminal answers no; nothing connects."""
    for command, question in (
        ("delete", "Delete namespace/gurumee, deployment/simple-app-dep"),
        ("reset", "Reset the Kubernetes cluster on master, slave1, slave2?"),
    ):
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [LABCTL, "--config", str(COURSE_TOPOLOGY), command],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={k: v for k, v in os.environ.items() if not k.startswith("LAB_")},
        )
        os.close(slave)
        seen = b""
        while question.encode() not in seen:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, seen
            seen += os.read(master, 4096)
        os.write(master, b"n\n")
        assert proc.wait(timeout=30) == 1
        rest = b""
        try:
            while chunk := os.read(master, 4096):
                rest += chunk
        except OSError:  # EIO once labctl has exited
            pass
        os.close(master)
        assert b"Aborted!" in rest, rest
