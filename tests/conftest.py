"""Shared fixtures: the course's recorded outputs as replay bundles, and a real local sshd."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from testbed.fixtures import Testbed, all_up, docker_hosts, testbed  # noqa: F401 - for every dir

from k8slab import topology
from k8slab.checks import bundle, parse
from k8slab.checks.engine import Commands
from k8slab.labs import load_lab
from k8slab.ssh import Result

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "seed"
DERIVED = FIXTURES / "derived"
PUBLIC = FIXTURES / "public"
MADE_HERE = FIXTURES / "made-here"
# Checks whose commands the course never printed (nor did any derived file): they are graded
# on bundles of real public outputs with their clusters' own topologies instead.
NOT_IN_COURSE = ("cluster.api", "net.nodes", "net.weave-connections", "net.nodeport")
COURSE_TOPOLOGY = FIXTURES / "course-topology.yaml"
SSHD = Path("/usr/sbin/sshd")

POD_HEADER = (
    "NAMESPACE     NAME                             READY   STATUS    RESTARTS   AGE     IP"
    "          NODE     NOMINATED NODE   READINESS GATES\n"
)
DOCKER_HEADER = (
    "CONTAINER ID   IMAGE                    COMMAND                  CREATED         STATUS"
    "         PORTS     NAMES\n"
)


def course_topology(node_ips: dict[str, str] | None = None) -> dict:
    """The course's topology file (COURSE_TOPOLOGY) as data: three VMs, master and two
    workers; `node_ips` (host name -> IP) puts other node IPs in place of the course's."""
    import yaml

    raw = yaml.safe_load(COURSE_TOPOLOGY.read_text())
    for host in raw["hosts"]:
        host["node_ip"] = (node_ips or {}).get(host["name"], host["node_ip"])
    return raw


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _default_pods() -> str:
    """The course's two `kubectl get pod -o wide` printouts (emptyDir, then hostPath), as one."""
    emptydir = _read(SEED / "kubectl-get-pod-wide.emptydir.txt")
    hostpath = _read(SEED / "kubectl-get-pod-wide.hostpath.txt").splitlines(keepends=True)[1:]
    return emptydir + "".join(hostpath)


def _master_docker_ps() -> str:
    """The course's three `docker ps | grep` printouts on master, each container once."""
    lines, seen = [], set()
    for name in ("pause", "apiserver", "weave"):
        for line in _read(SEED / f"docker-ps-grep-{name}.master.txt").splitlines(keepends=True):
            if line.split()[0] not in seen:
                seen.add(line.split()[0])
                lines.append(line)
    return DOCKER_HEADER + "".join(lines)


def course_outputs() -> dict[tuple[str, str, str], str]:
    """(host, check id, run name) -> stdout for a cluster where every check passes.

    Master's outputs are the seed's printouts (tests/fixtures/seed); the workers' and the
    outputs the course never printed come from tests/fixtures/derived (see its README)."""
    pods_all = (
        POD_HEADER
        + _read(SEED / "kubectl-get-pod-A-wide-grep-master.txt")
        + _read(DERIVED / "kubectl-get-pod-A-wide.workers.txt")
    )
    nat = _read(SEED / "iptables-S-nat-grep-10.96.master.txt")
    sockets = {
        "master": _read(SEED / "netstat-antp-grep-weave.master.txt"),
        "slave1": _read(DERIVED / "netstat-antp.slave1.txt"),
        "slave2": _read(DERIVED / "ss-antp.slave2.txt"),
    }
    out = {}
    for host in ("master", "slave1", "slave2"):
        containers = (
            _master_docker_ps() if host == "master" else _read(DERIVED / f"docker-ps.{host}.txt")
        )
        out[(host, "net.pause", "containers")] = containers
        out[(host, "net.weave-ports", "sockets")] = sockets[host]
        out[(host, "net.svc-iptables", "nat")] = nat
        out[(host, "net.svc-iptables", "filter")] = _read(
            MADE_HERE / "iptables-S-filter.kube-proxy.txt"
        )
        if host != "master":
            out[(host, "storage.hostpath-file", "file")] = f"{host}\n"
            out[(host, "storage.hostpath-file", "hostname")] = f"{host}\n"
    out |= {
        ("master", "net.pause", "pods"): pods_all,
        ("master", "net.weave-ds", "ds"): _read(DERIVED / "kubectl-get-ds-weave-net.txt"),
        ("master", "net.weave-ipalloc", "weaver"): _read(SEED / "ps-eaf-grep-4229.master.txt"),
        ("master", "net.weave-ipalloc", "kubeadm"): _read(DERIVED / "kubeadm-config.txt"),
        ("master", "net.svc-iptables", "services"): _read(SEED / "kubectl-get-svc-A.txt"),
        ("master", "dns.coredns", "endpoints"): _read(DERIVED / "endpoints-kube-dns.txt"),
        ("master", "dns.simple-app", "deploy"): _read(
            DERIVED / "kubectl-get-deploy-simple-app-dep.txt"
        ),
        ("master", "dns.simple-app", "endpoints"): _read(DERIVED / "endpoints-simple-app.txt"),
        ("master", "dns.curl", "resolve"): _read(DERIVED / "getent-simple-app-svc.txt"),
        ("master", "dns.curl", "curl"): _read(SEED / "curl-simple-app-svc.txt"),
        ("master", "net.pod-to-pod", "curls"): _pod_to_pod(
            pods_all, _read(SEED / "curl-simple-app-svc.txt")
        ),
        ("master", "storage.emptydir-ready", "pods"): _default_pods(),
        ("master", "storage.emptydir-serves", "curl"): _read(SEED / "curl-emptydir.txt"),
        ("master", "storage.emptydir-counts", "reads"): _read(DERIVED / "emptydir-reads.txt"),
        ("master", "storage.hostpath-forward", "forward"): _read(SEED / "curl-port-forward.txt"),
    }
    return out


def _pod_to_pod(pods: str, answer: str) -> str:
    """net.pod-to-pod's loop output ("IP <curl's first line>") with `answer` from each
    simple-app pod of the pod list (the script's format, the course's answer)."""
    ips = [p.ip for p in parse.pods(pods) if p.name.startswith("simple-app-dep-")]
    return "".join(f"{ip} {answer.strip()}\n" for ip in ips)


def write_bundle(
    directory: Path,
    edits: dict[tuple[str, str, str], str | Result | None] | None = None,
    topology_path: Path = COURSE_TOPOLOGY,
    base: dict[tuple[str, str, str], str | Result] | None = None,
    checks: tuple[str, ...] | None = None,
) -> Path:
    """A `--record` bundle of `base` (the course's outputs by default) with `edits` applied
    (None drops a command), written by the same code as `labctl verify --record`; it lists
    `checks` (by default every check the course's outputs cover) for `--replay` to grade."""
    topo = topology.load(topology_path)
    lab = load_lab("ch09", topo)
    if base is None:
        base = course_outputs()
        checks = checks or tuple(c.id for c in lab.checks if c.id not in NOT_IN_COURSE)
    outputs: dict[tuple[str, str, str], str | Result | None] = {**base, **(edits or {})}
    by_command: dict[tuple[str, str], Result] = {}
    for (host, check_id, name), value in outputs.items():
        check = next(c for c in lab.checks if c.id == check_id)
        # Checks sharing a command share its entry: an edit (merged last) wins.
        key = (host, check.run[name].cmd)
        if value is None:
            by_command.pop(key, None)
            continue
        by_command[key] = value if isinstance(value, Result) else Result(value, "", 0)
    commands = Commands(lambda host, cmd: by_command[(host, cmd)])
    for host, cmd in by_command:
        commands(host, cmd)
    bundle.write(directory, "ch09", list(checks or [c.id for c in lab.checks]), topo, commands)
    return directory


def replay(bundle_dir: Path, *only: str) -> dict[tuple[str, str], dict]:
    """`labctl verify --replay BUNDLE --format json [--only ...]`: the rows by (id, host)."""
    import json

    from click.testing import CliRunner

    from k8slab.cli import main

    args = ["verify", "--replay", str(bundle_dir), "--format", "json"]
    for check in only:
        args += ["--only", check]
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return {(c["id"], c["host"]): c for c in json.loads(result.output)["checks"]}


# --- a real sshd on loopback -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSSHD:
    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.user = getpass.getuser()
        self.client_key = root / "id_ed25519"
        self.host_key = root / "ssh_host_ed25519_key"
        self.known_hosts = root / "known_hosts"
        for key in (self.client_key, self.host_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        shutil.copy(f"{self.client_key}.pub", root / "authorized_keys")
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd.pid\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\nMaxSessions 20\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation dir sshd insists on
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}")

    def host_public_key(self) -> str:
        return Path(f"{self.host_key}.pub").read_text().split()[1]

    def topology(self, path: Path, labs: dict | None = None) -> Path:
        """A topology whose master and one worker are both this sshd (node IPs unused)."""
        import yaml

        path.write_text(
            yaml.safe_dump(
                {
                    "ssh_user": self.user,
                    "ssh_key": str(self.client_key),
                    "hosts": [
                        {
                            "name": "master",
                            "role": "control-plane",
                            "node_ip": "10.0.2.15",
                            "ssh_host": "127.0.0.1",
                            "ssh_port": self.port,
                        },
                        {
                            "name": socket.gethostname().split(".")[0].lower(),
                            "role": "worker",
                            "node_ip": "10.0.2.4",
                            "ssh_host": "127.0.0.1",
                            "ssh_port": self.port,
                        },
                    ],
                    "labs": labs or {},
                }
            )
        )
        return path

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not SSHD.exists() or os.geteuid() != 0 and not os.access("/run/sshd", os.W_OK):
        if os.environ.get("TESTBED_REQUIRED") == "1":
            pytest.fail("TESTBED_REQUIRED=1 but /usr/sbin/sshd is missing or unusable")
        pytest.skip("needs /usr/sbin/sshd (apt-get install openssh-server) run as root")
    server = LocalSSHD(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
