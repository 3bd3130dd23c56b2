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
    # A cluster whose kubeadm wrote admin.conf, but the SSH user has no kubeconfig: the
    # stand-in answers labctl's "is there a cluster?" (k8slab.cluster), the rest is kubectl's.
    kubectl = root / "kubectl"
    kubectl.write_text('#!/bin/sh\n[ "$*" = "get nodes -o name" ] && exit 0\nexec kubectl "$@"\n')
    kubectl.chmod(0o755)
    config = root / "lab.yaml"
    labs = {"ch09": {"kubectl": str(kubectl)}}
    config.write_text(yaml.safe_dump({"hosts": hosts, "labs": labs}))
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
    evidence = {(c.split()[0], c.split()[1]): " ".join(c.split()[3:]) for c in rows_of(r)}
    assert evidence[("sudo", "master")].startswith("`sudo id -u` printed 0 (root): sudo needs")
    assert not evidence[("swap.now", "master")].startswith("no active swap in: Filename")
    # one item for the host that is down, not one per check
    assert re.search(r"^errors: slave2 unreachable \(all \d+ checks\)$", r.stdout, re.M)
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
    # the case the course writes it in, and a check's name without its group
    r = labctl(*config, "apply", "--only", "coreDNS")
    assert "no step 'coreDNS' (did you mean 'coredns'?)" in r.stderr
    r = labctl(*config, "verify", "--only", "coreDNS")
    assert "no check 'coreDNS' (did you mean 'dns.coredns'?)" in r.stderr


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


# --- no cluster yet: the commands that need one say so first --------------------------


@pytest.fixture
def no_cluster(sshd, tmp_path):
    """master and a worker on the loopback sshd: a Debian host with no kubeadm cluster
    (no /etc/kubernetes/admin.conf; kubectl, when installed, has no kubeconfig)."""
    config = sshd.topology(tmp_path / "lab.yaml")
    return "--config", str(config), "--known-hosts", str(tmp_path / "kh")


NO_CLUSTER = (
    "no Kubernetes on master yet (no /etc/kubernetes/admin.conf, `kubectl get nodes` fails): "
    "build the cluster first: .venv/bin/pyinfra -y inventory/lab.py deploys/cluster.py "
    '(README.md "Build the cluster, apply and grade the labs")'
)


def test_verify_without_a_cluster_says_so_first_and_skips_the_rest(no_cluster):
    r = labctl(*no_cluster, "verify", "--format", "json")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"Error: {NO_CLUSTER}"]
    report = json.loads(r.stdout)
    assert report["note"] == NO_CLUSTER
    rows = report["checks"]
    (api,) = [c for c in rows if c["id"] == "cluster.api"]
    assert api["status"] == "fail" and api["evidence"].startswith("no Kubernetes yet")
    others = [c for c in rows if c["id"] != "cluster.api"]
    # no weave row blaming a firewall, no hostPath row sending the learner to `apply`
    assert {c["status"] for c in others} == {"skip"}
    assert {c["hint"] for c in others} == {""}
    table = labctl(*no_cluster, "verify", "--only", "storage")
    assert " ".join(table.stdout.split()[-30:]).endswith(" ".join(NO_CLUSTER.split()))
    assert "apply --only hostpath" not in table.stdout


@pytest.mark.parametrize(
    "args, aside",
    [
        (("status",), ""),
        (("apply", "ch09"), "; --nodes-only prepares the workers without one"),
        (("delete", "ch09", "--yes"), "; nothing of the lab can be in it"),
    ],
    ids=["status", "apply", "delete"],
)
def test_commands_that_need_a_cluster_say_so_and_change_nothing(no_cluster, args, aside):
    r = labctl(*no_cluster, *args, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"Error: {NO_CLUSTER}{aside}"]
    assert r.stdout == ""  # no "not found" objects, no build on Docker Hub, no wait


# --- the deploy: a download that fails names the URL, the key and what to change -------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "key, advice",
    [
        ("cri_dockerd_url", "set cri_dockerd_url to a mirror URL or a local file"),
        ("kube_apt_repo", "set kube_apt_repo (and kube_apt_key) to a mirror URL or a local folder"),
        ("docker_apt_repo", "or docker_source: distro for the distribution's docker.io"),
    ],
)
def test_a_failed_download_names_the_url_the_key_and_the_fix(sshd, tmp_path, key, advice):
    """The deploy's downloads (cri-dockerd, the apt keys of pkgs.k8s.io and Docker) go through
    k8slab.deploy.common.download; here through the real pyinfra, on the loopback sshd, from
    a port where nothing listens (a school network's firewall, offline). Before, curl's raw
    line (`[master] curl: (6) Could not resolve host: github.com`) was all there was."""
    url = f"http://127.0.0.1:{_closed_port()}/cri-dockerd-0.4.3.amd64.tgz"
    dest = tmp_path / "got.tgz"
    deploy = tmp_path / "download.py"
    deploy.write_text(
        "from k8slab.deploy.common import download\n"
        f"download('Download it', {url!r}, {str(dest)!r}, key={key!r})\n"
    )
    config = sshd.topology(tmp_path / "lab.yaml")
    r = subprocess.run(
        # --data _sudo=false: the sshd's user needs no sudo, which this machine may lack
        [str(BIN / "pyinfra"), "-y", "--limit", "master", "--data", "_sudo=false"]
        + [str(REPO_ROOT / "inventory" / "lab.py"), str(deploy)],
        env={**os.environ, "LAB_CONFIG": str(config), "LAB_KNOWN_HOSTS": str(tmp_path / "kh")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in said
    (line,) = [x.strip() for x in said.splitlines() if "k8s-lab: " in x]
    assert line.startswith(f"[master] k8s-lab: cannot download {url} ({key}): curl: (7) ")
    assert line.endswith(f'{advice} (docs/offline.md "Offline and mirror sources")')
    assert not dest.exists() and not Path(f"{dest}.part").exists()


def test_a_download_that_works_is_kept_on_the_next_run(sshd, tmp_path):
    import functools
    import http.server

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "k.asc").write_text("a key\n")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/k.asc"
    dest = tmp_path / "k.asc"
    deploy = tmp_path / "download.py"
    deploy.write_text(
        "from k8slab.deploy.common import download\n"
        f"download('Download it', {url!r}, {str(dest)!r}, key='kube_apt_repo')\n"
    )
    config = sshd.topology(tmp_path / "lab.yaml")
    cmd = [str(BIN / "pyinfra"), "-y", "--limit", "master", "--data", "_sudo=false"]
    cmd += [str(REPO_ROOT / "inventory" / "lab.py"), str(deploy)]
    env = {**os.environ, "LAB_CONFIG": str(config), "LAB_KNOWN_HOSTS": str(tmp_path / "kh")}
    try:
        runs = [
            subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)
        ]
    finally:
        server.shutdown()
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert dest.read_text() == "a key\n" and oct(dest.stat().st_mode)[-3:] == "644"
    started = "Starting operation: Download it"
    assert started in runs[0].stderr and started not in runs[1].stderr  # kept: no change


def _unreachable_sources(sshd, tmp_path: Path) -> tuple[Path, str]:
    """A topology on the loopback sshd whose every source is a port where nothing listens
    (no probe leaves this computer)."""
    base = f"127.0.0.1:{_closed_port()}"
    config = sshd.topology(tmp_path / "lab.yaml")
    raw = yaml.safe_load(config.read_text())
    raw |= {
        "docker_source": "distro",
        "kube_apt_repo": f"http://{base}/kube/",
        "kube_apt_key": f"http://{base}/kube/Release.key",
        "cri_dockerd_url": f"http://{base}/cri-dockerd-{{version}}.{{arch}}.tgz",
        "kube_image_repository": f"{base}/k8s",
        "weave_image_repo": f"{base}/weave",
    }
    config.write_text(yaml.safe_dump(raw))
    return config, base


def test_doctor_sources_names_every_unreachable_url_with_curls_reason(sshd, tmp_path):
    config, base = _unreachable_sources(sshd, tmp_path)
    r = labctl("--config", str(config), "--known-hosts", str(tmp_path / "kh"), "doctor")
    rows = [c for c in json_rows(config, tmp_path) if c["id"] == "sources"]
    assert {c["status"] for c in rows} == {"fail"}
    evidence = rows[0]["evidence"]
    assert evidence.startswith("cannot reach: 000 ")
    for url in (
        f"http://{base}/kube/InRelease",
        f"http://{base}/kube/Release.key",
        f"http://{base}/cri-dockerd-0.4.3.amd64.tgz",
        f"https://{base}/v2/",
    ):
        assert f"000 {url}: no answer (curl: (7) Failed to connect to 127.0.0.1 port" in evidence
    # the table shows all four, not the first one cut short
    assert " ".join(r.stdout.split()).count(": no answer (curl: (7)") >= 4


def json_rows(config: Path, tmp_path: Path) -> list[dict]:
    r = labctl(
        "--config", str(config), "--known-hosts", str(tmp_path / "kh"), "doctor", "--format", "json"
    )
    return json.loads(r.stdout)["checks"]


def test_the_preflights_last_line_is_ours_and_does_not_offer_skipping_sources(sshd, tmp_path):
    """The real deploy on the loopback sshd (not a VM: other checks fail too) whose sources
    answer nowhere: it stops in the pre-flight, before any operation. The last line is
    k8s-lab's, not "pyinfra error in .../preflight.py line 34:", and skipping `sources`,
    which would only move the failure into the deploy, is not offered."""
    config, _ = _unreachable_sources(sshd, tmp_path)
    r = subprocess.run(
        [str(BIN / "pyinfra"), "-y", str(REPO_ROOT / "inventory" / "lab.py")]
        + [str(REPO_ROOT / "deploys" / "cluster.py")],
        env={**os.environ, "LAB_CONFIG": str(config), "LAB_KNOWN_HOSTS": str(tmp_path / "kh")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out and "pyinfra error" not in out
    assert "Starting operation" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("k8s-lab: pre-flight failed, nothing was changed: ")
    assert "sources on master, " in last
    assert "; sources: the hosts cannot download what the deploy needs, so point the " in last
    assert 'docs/offline.md "Offline and mirror sources")' in last
    skip = re.search(r"--data skip_checks=(\S+)$", last)
    assert skip is None or "sources" not in skip.group(1).split(",")


def test_no_topology_file_here_says_which_file_is_used(tmp_path):
    r = labctl("render", "ch09", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr.splitlines() == [
        f"labctl: no inventory/lab.yaml in this folder ({tmp_path}): using "
        f"{REPO_ROOT / 'inventory' / 'lab.yaml'}; name yours with --config FILE or $LAB_CONFIG"
    ]
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "lab.yaml").write_text(HOSTS_YAML)
    assert labctl("render", "ch09", cwd=tmp_path).stderr == ""  # the file here: nothing to say
    given = labctl("render", "ch09", cwd=tmp_path.parent, env={"LAB_CONFIG": str(COURSE_TOPOLOGY)})
    assert given.stderr == ""


def test_every_deploy_command_shown_to_a_learner_has_y():
    """Without -y pyinfra waits for "Press enter to execute" and, with no terminal, ends in
    an EOFError traceback: every deploy command a learner copies carries -y."""
    shown = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    shown += [*sorted((REPO_ROOT / "deploys").glob("*.py")), REPO_ROOT / "inventory" / "lab.py"]
    shown += [
        REPO_ROOT / "inventory" / "lab.yaml",
        REPO_ROOT / "k8slab" / "cli" / "machines_cmd.py",
    ]
    commands = [
        (path.name, line)
        for path in shown
        for line in path.read_text().splitlines()
        if re.search(r"pyinfra (\S+ )*inventory/lab\.py", line)
    ]
    assert len(commands) > 15
    assert [c for c in commands if not re.search(r"pyinfra -y ", c[1])] == []
    # the README explains the question -y skips and the table the run ends with
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert '"Press enter to execute"' in readme and "The table it prints at the end" in readme


# --- SSH: no key at all, the course's user -----------------------------------------------


def test_no_key_and_no_agent_is_not_blamed_on_the_vm(sshd, tmp_path):
    config = sshd.topology(tmp_path / "lab.yaml")
    raw = yaml.safe_load(config.read_text())
    del raw["ssh_key"]
    config.write_text(yaml.safe_dump(raw))
    (tmp_path / "home").mkdir()  # no ~/.ssh
    env = {"HOME": str(tmp_path / "home"), "SSH_AUTH_SOCK": ""}
    r = labctl("--config", str(config), "--known-hosts", str(tmp_path / "kh"), "doctor", env=env)
    assert r.returncode == 2
    line = r.stderr.splitlines()[0]
    assert line.startswith(
        f"Error: master (127.0.0.1:{sshd.port}): the VM answered, but there is no SSH key or "
        f"agent to log in as {sshd.user} with"
    )
    assert f"ssh-keygen -t ed25519 && ssh-copy-id -p {sshd.port} {sshd.user}@127.0.0.1" in line
    assert "is the VM running?" not in r.stderr


def test_the_courses_user_is_named_on_an_auth_failure(sshd, tmp_path):
    config = sshd.topology(tmp_path / "lab.yaml")
    raw = yaml.safe_load(config.read_text()) | {"ssh_user": "gurumee"}
    config.write_text(yaml.safe_dump(raw))
    r = labctl("--config", str(config), "--known-hosts", str(tmp_path / "kh"), "doctor")
    assert r.returncode == 2
    line = r.stderr.splitlines()[0]
    assert "authentication failed for user gurumee" in line
    assert (
        "is ssh_user gurumee the user you created on the VM? (gurumee is the course's user, as "
        "the shipped topology file says: set yours)"
    ) in line


def test_a_build_that_cannot_pull_its_base_names_it_and_image_archives_on_every_worker():
    """On the library (no Docker daemon a test may let pull here): each worker is tried, and
    the one line names the hosts, Docker's reason, the base image and image_archives."""
    from k8slab import apply as lib
    from k8slab.labs import load_lab
    from k8slab.topology import load

    topo = load(COURSE_TOPOLOGY)
    lab = load_lab("ch09", topo)
    pulled = (
        "ERROR: failed to solve: busybox: failed to resolve source metadata for "
        "docker.io/library/busybox:latest: dial tcp: lookup registry-1.docker.io: no such host"
    )

    class Fleet:
        tried: list[str] = []

        def run(self, host, cmd, timeout=120):
            if "docker build" in cmd:
                self.tried.append(host)
                return Result("", pulled + "\n", 1)
            return Result("", "", 0)

        def put_tree(self, host, local, remote):
            pass

    fleet, said = Fleet(), []
    steps = lab.select_steps(("coredns",))
    image = lib.images_to_build(lab, steps)[0]
    with pytest.raises(lib.ApplyError) as e:
        lib.build_images(lab, steps, topo, fleet, said.append)
    assert fleet.tried == ["slave1", "slave2"]
    assert str(e.value) == (
        f"docker build {image.tag} failed on slave1, slave2: {pulled}; its base busybox comes "
        "from Docker Hub: let the workers reach it, or put it in image_archives "
        "(docker save -o lab.tar busybox; docs/offline.md)"
    )


def rows_of(r) -> list[str]:
    """The first line of each row of a piped (80-column) table."""
    return [
        line for line in r.stdout.splitlines() if re.match(r"^[a-z][\w.-]+\s+\w+\s+[A-Z]+\s", line)
    ]


def test_a_topology_with_three_mistakes_names_all_three(tmp_path):
    path = _topology(
        tmp_path,
        "hosts:\n"
        "  - {name: master, role: control-plane, node_ip: 10.0.2.300}\n"
        "  - {name: slave1, role: worker, node_ip: 10.0.2.4, ssh_hots: 127.0.0.1}\n"
        "kube_version: 1.30\n",
    )
    mistakes = [
        f"{path}: hosts[0] (master).node_ip: '10.0.2.300' is not an IPv4 address",
        f"{path}: hosts[1] (slave1).ssh_hots: unknown key (did you mean 'ssh_host'?)",
        f"{path}: kube_version: YAML read this as the number 1.3 (1.30 becomes 1.3): put it in "
        'quotes, e.g. kube_version: "1.36"',
    ]
    r = labctl("--config", str(path), "render", "ch09")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"Error: {m}" for m in mistakes]
    pyinfra = subprocess.run(
        [str(BIN / "pyinfra"), "-y", str(REPO_ROOT / "inventory" / "lab.py"), "debug-inventory"],
        env={**os.environ, "LAB_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pyinfra.returncode != 0
    assert [x for x in pyinfra.stderr.splitlines() if x.startswith("k8s-lab: ")] == [
        f"k8s-lab: {m}" for m in mistakes
    ]
