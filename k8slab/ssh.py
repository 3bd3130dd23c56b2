"""SSH to the topology's hosts with paramiko: one connection per host, reused by every command.

Host keys are checked against a known_hosts file with OpenSSH's ``accept-new`` rule: a host
never seen before is trusted and remembered, a host whose key changed is refused. Every error
is one line that names the host::

    >>> fleet = Fleet(load("inventory/lab.yaml").hosts)
    >>> fleet.run("master", "hostname").stdout
    'master\\n'
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paramiko

from k8slab.topology import Host

KNOWN_HOSTS_ENV = "LAB_KNOWN_HOSTS"
PASSWORD_ENV = "LAB_SSH_PASSWORD"
SUDO_PASSWORD_ENV = "LAB_SUDO_PASSWORD"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONNECT_TIMEOUT = 10
# sshd's default MaxSessions is 10 and it still counts sessions that are closing: with 8 at
# once the test bed's sshd refused channels now and then ("open failed: Connect failed").
CHANNELS_PER_HOST = 4

_SUDO = re.compile(r"(?<![\w-])sudo(?= )")
_SUDO_WANTS_PASSWORD = ("a password is required", "a terminal is required")


class SSHError(Exception):
    """A host that cannot be reached or used; the message is one line naming it."""


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def known_hosts_path(path: str | os.PathLike | None = None) -> Path:
    """--known-hosts beats $LAB_KNOWN_HOSTS beats ~/.ssh/known_hosts."""
    return Path(path or os.environ.get(KNOWN_HOSTS_ENV) or DEFAULT_KNOWN_HOSTS).expanduser()


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: remember a host never seen before.

    paramiko calls this only for a host with no known key at all; a known key of any type
    that does not match raises BadHostKeyException instead (tests/test_ssh.py shows both).
    """

    def __init__(self, path: Path, lock: threading.Lock):
        self.path = path
        self.lock = lock

    def missing_host_key(self, client, hostname, key):
        with self.lock:
            # Two topology hosts may share one address (both connecting at once): write once.
            known = paramiko.HostKeys(str(self.path)) if self.path.exists() else {}
            if hostname not in known:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class Fleet:
    """Lazily opened, shared SSH connections to hosts, addressed by their topology name."""

    def __init__(
        self,
        hosts: tuple[Host, ...],
        known_hosts: str | os.PathLike | None = None,
        password: str | None = None,
    ):
        self.hosts = {h.name: h for h in hosts}
        self.known_hosts = known_hosts_path(known_hosts)
        self.password = password if password is not None else os.environ.get(PASSWORD_ENV)
        self.sudo_password = os.environ.get(SUDO_PASSWORD_ENV)
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._locks = {name: threading.Lock() for name in self.hosts}
        self._slots = {name: threading.Semaphore(CHANNELS_PER_HOST) for name in self.hosts}
        self._known_lock = threading.Lock()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _where(self, name: str) -> str:
        h = self.hosts[name]
        return f"{name} ({h.ssh_host}:{h.ssh_port})"

    def client(self, name: str) -> paramiko.SSHClient:
        if name not in self.hosts:
            raise SSHError(f"{name}: not a host of the topology")
        with self._locks[name]:
            if name not in self._clients:
                self._clients[name] = self._connect(self.hosts[name])
            return self._clients[name]

    def _connect(self, h: Host) -> paramiko.SSHClient:
        where = self._where(h.name)
        key = Path(h.ssh_key).expanduser() if h.ssh_key else None
        if key is not None:
            try:
                key.open("rb").close()
            except OSError as e:
                raise SSHError(f"{where}: cannot read ssh_key {key}: {e.strerror}") from None
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_AcceptNew(self.known_hosts, self._known_lock))
        try:
            client.connect(
                h.ssh_host,
                port=h.ssh_port,
                username=h.ssh_user,
                key_filename=str(key) if key else None,
                password=self.password,
                timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT,
            )
        except paramiko.BadHostKeyException as e:
            entry = h.ssh_host if h.ssh_port == 22 else f"[{h.ssh_host}]:{h.ssh_port}"
            raise SSHError(
                f"{where}: host key does not match {self.known_hosts} (got "
                f"{e.key.get_name()}); refusing to connect. If the host was reinstalled, "
                f"run: ssh-keygen -R {shlex.quote(entry)} -f {self.known_hosts}"
            ) from None
        except paramiko.AuthenticationException:
            raise SSHError(
                f"{where}: authentication failed for user {h.ssh_user or os.environ.get('USER')}"
                f" (tried key {h.ssh_key or 'defaults'}, agent"
                f"{', password' if self.password else ''}; see --ask-pass / ${PASSWORD_ENV})"
            ) from None
        except (TimeoutError, OSError, paramiko.SSHException) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise SSHError(f"{where}: cannot connect: {reason}") from None
        return client

    def _sudo(self, name: str, cmd: str) -> tuple[str, str | None]:
        """Make `sudo` never prompt; root needs no sudo at all (it may not be installed)."""
        if not _SUDO.search(cmd):
            return cmd, None
        if self.hosts[name].ssh_user == "root":
            return _SUDO.sub("command", cmd), None
        if self.sudo_password is not None:
            return _SUDO.sub("sudo -S -p ''", cmd), self.sudo_password + "\n"
        return _SUDO.sub("sudo -n", cmd), None

    def run(self, name: str, cmd: str, timeout: float = 120) -> Result:
        """Run a shell command on host `name`; a non-zero exit is a Result, not an error."""
        client = self.client(name)
        remote, stdin_text = self._sudo(name, cmd)
        with self._slots[name]:
            try:
                stdin, stdout, stderr = client.exec_command(remote, timeout=timeout)
            except (TimeoutError, OSError, paramiko.SSHException) as e:
                reason = str(e) or type(e).__name__
                raise SSHError(f"{self._where(name)}: command failed: {reason}") from None
            try:
                if stdin_text:
                    stdin.write(stdin_text)
                    stdin.flush()
                stdin.channel.shutdown_write()
                out = stdout.read().decode("utf-8", "replace")
                err = stderr.read().decode("utf-8", "replace")
                code = stdout.channel.recv_exit_status()
            except (TimeoutError, OSError, paramiko.SSHException) as e:
                reason = str(e) or type(e).__name__
                raise SSHError(f"{self._where(name)}: command failed: {reason}") from None
            finally:
                # Give the session back to sshd now, not when the garbage collector runs.
                stdout.channel.close()
        if code != 0 and any(s in err for s in _SUDO_WANTS_PASSWORD):
            raise SSHError(
                f"{self._where(name)}: sudo wants a password; allow NOPASSWD sudo for "
                f"{self.hosts[name].ssh_user} or set ${SUDO_PASSWORD_ENV}"
            )
        return Result(out, err, code)

    def put_tree(self, name: str, local: Path, remote: str) -> None:
        """Copy a directory's files to `remote` on host `name`, keeping their modes."""
        sftp = self.client(name).open_sftp()
        try:
            for path in sorted(local.rglob("*")):
                target = str(PurePosixPath(remote) / path.relative_to(local).as_posix())
                if path.is_dir():
                    _sftp_mkdir(sftp, target)
                    continue
                _sftp_mkdir(sftp, str(PurePosixPath(target).parent))
                sftp.put(str(path), target)
                sftp.chmod(target, stat.S_IMODE(path.stat().st_mode))
        except OSError as e:
            raise SSHError(f"{self._where(name)}: cannot upload to {remote}: {e}") from None
        finally:
            sftp.close()

    def put_file(self, name: str, local: Path, remote: str) -> None:
        """Copy one file to `remote` (relative: to the SSH user's home) on host `name`."""
        sftp = self.client(name).open_sftp()
        try:
            _sftp_mkdir(sftp, str(PurePosixPath(remote).parent))
            sftp.put(str(local), remote)
        except OSError as e:
            raise SSHError(f"{self._where(name)}: cannot upload to {remote}: {e}") from None
        finally:
            sftp.close()

    def put_files(self, name: str, files: dict[str, str], remote: str) -> None:
        """Write text files (name -> content) into directory `remote` on host `name`."""
        sftp = self.client(name).open_sftp()
        try:
            _sftp_mkdir(sftp, remote)
            for filename, text in files.items():
                with sftp.open(f"{remote}/{filename}", "w") as f:
                    f.write(text.encode("utf-8"))
        except OSError as e:
            raise SSHError(f"{self._where(name)}: cannot upload to {remote}: {e}") from None
        finally:
            sftp.close()


def _sftp_mkdir(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = PurePosixPath(path).parts
    for i in range(1, len(parts) + 1):
        p = str(PurePosixPath(*parts[:i]))
        try:
            sftp.stat(p)
        except FileNotFoundError:
            sftp.mkdir(p)
