"""SSH to the topology's hosts with paramiko: one connection per host, reused by every command.

Host keys are checked against a known_hosts file with OpenSSH's ``accept-new`` rule: a host
never seen before is trusted and remembered, a host whose key changed is refused. Every error
is one line that names the host and says what to try next::

    >>> fleet = Fleet(load("inventory/lab.yaml").hosts)
    >>> fleet.run("master", "hostname").stdout
    'master\\n'
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from k8slab.errors import LabctlError
from k8slab.topology import Host

if TYPE_CHECKING:
    import paramiko

KNOWN_HOSTS_ENV = "LAB_KNOWN_HOSTS"
PASSWORD_ENV = "LAB_SSH_PASSWORD"
SUDO_PASSWORD_ENV = "LAB_SUDO_PASSWORD"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CONNECT_TIMEOUT = 10
# After this long without an answer a connect is reported as waiting (it may take 10 s more).
SLOW_CONNECT = 2.0
# sshd's default MaxSessions is 10 and it still counts sessions that are closing: with 8 at
# once the test bed's sshd refused channels now and then ("open failed: Connect failed").
CHANNELS_PER_HOST = 4

_SUDO = re.compile(r"(?<![\w-])sudo(?= )")
_SUDO_WANTS_PASSWORD = ("a password is required", "a terminal is required")


class SSHError(LabctlError):
    """A host that cannot be reached or used; the message is one line naming it, and
    `hint` (when set) the next step to try."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.args[0]}; {self.hint}" if self.hint else self.args[0]


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


def _session_errors() -> tuple[type[BaseException], ...]:
    """What a command's session raises when the connection under it fails."""
    return (TimeoutError, OSError, EOFError, _paramiko().SSHException)


def _paramiko():
    """paramiko costs a third of a second to import: only commands that connect pay it.
    Its transport logs a traceback per failed handshake; our one line per host says it all."""
    import paramiko

    log = logging.getLogger("paramiko")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return paramiko


def _accept_new(path: Path, lock: threading.Lock):
    """OpenSSH's StrictHostKeyChecking=accept-new: remember a host never seen before.

    paramiko calls this only for a host with no known key at all; a known key of any type
    that does not match raises BadHostKeyException instead (tests/test_ssh.py shows both).
    """
    paramiko = _paramiko()

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            with lock:
                # Two topology hosts may share one address (both connecting at once): write once.
                known = paramiko.HostKeys(str(path)) if path.exists() else {}
                if hostname not in known:
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    with open(path, "a", encoding="utf-8") as f:
                        f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            client.get_host_keys().add(hostname, key.get_name(), key)

    return AcceptNew()


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
        self.unreachable: dict[str, SSHError] = {}

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
            if name in self.unreachable:
                # Tried once already: every check on this host is the same error, not a retry.
                raise self.unreachable[name]
            if name not in self._clients:
                try:
                    self._clients[name] = self._connect(self.hosts[name])
                except SSHError as e:
                    self.unreachable[name] = e
                    raise
            return self._clients[name]

    def connect_all(
        self, names: list[str], waiting: Callable[[list[str]], None] | None = None
    ) -> dict[str, SSHError]:
        """Connect to every host at once; returns the ones that failed, by name. `waiting`
        is called once with the hosts still connecting after SLOW_CONNECT seconds."""
        with ThreadPoolExecutor(max(1, len(names))) as pool:
            futures = {name: pool.submit(self.client, name) for name in names}
            if waiting is not None:
                done = threading.Event()
                timer = threading.Timer(
                    SLOW_CONNECT,
                    lambda: (
                        done.is_set() or waiting([n for n, f in futures.items() if not f.done()])
                    ),
                )
                timer.daemon = True
                timer.start()
            failed = {}
            for name, future in futures.items():
                try:
                    future.result()
                except SSHError as e:
                    failed[name] = e
            if waiting is not None:
                done.set()
                timer.cancel()
        return failed

    def _connect(self, h: Host) -> paramiko.SSHClient:
        paramiko = _paramiko()
        where = self._where(h.name)
        user = h.ssh_user or os.environ.get("USER") or "root"
        key = Path(h.ssh_key).expanduser() if h.ssh_key else None
        try_ssh = f"try: ssh{f' -i {key}' if key else ''} -p {h.ssh_port} {user}@{h.ssh_host}"
        check_keys([h])
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_accept_new(self.known_hosts, self._known_lock))
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
                f"{where}: authentication failed for user {user}"
                f" (tried key {h.ssh_key or 'defaults'}, agent"
                f"{', password' if self.password else ''}; see --ask-pass / ${PASSWORD_ENV})",
                f"is ssh_user {user} the user you created on the VM? {_user_note(user)}"
                f"copy your key with ssh-copy-id -p {h.ssh_port} {user}@{h.ssh_host}; {try_ssh}",
            ) from None
        except paramiko.SSHException as e:
            if "No authentication methods available" not in str(e):
                client.close()
                raise SSHError(
                    f"{where}: {_connect_problem(e, h)}", _connect_hint(e, try_ssh)
                ) from None
            # The VM answered: there was nothing to log in with.
            client.close()
            raise SSHError(
                f"{where}: the VM answered, but there is no SSH key or agent to log in as "
                f"{user} with (no ssh_key in the topology, no ~/.ssh/id_* key, no ssh-agent)",
                'make a key and copy it (README "Prepare your three VMs", step 3): '
                f"ssh-keygen -t ed25519 && ssh-copy-id -p {h.ssh_port} {user}@{h.ssh_host}, "
                f"or set ssh_key, or LAB_SSH_PASSWORD; {try_ssh}",
            ) from None
        except (TimeoutError, OSError) as e:
            client.close()
            problem = _connect_problem(e, h)
            raise SSHError(f"{where}: {problem}", _connect_hint(e, try_ssh)) from None
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

    def _failed(self, name: str, e: BaseException) -> SSHError:
        return SSHError(f"{self._where(name)}: command failed: {str(e) or type(e).__name__}")

    def _open(self, name: str, remote: str, timeout: float):
        """A channel running `remote`. When the connection was lost before the command
        started (an idle VM's network blinked, sshd restarted), connect once more and retry:
        nothing ran yet, so that is safe."""
        errors = _session_errors()
        try:
            return self.client(name).exec_command(remote, timeout=timeout)
        except errors as e:
            transport = self._clients[name].get_transport() if name in self._clients else None
            if transport is not None and transport.is_active():
                raise self._failed(name, e) from None
        with self._locks[name]:
            lost = self._clients.pop(name, None)
        if lost is not None:
            lost.close()
        try:
            return self.client(name).exec_command(remote, timeout=timeout)
        except errors as e:
            raise self._failed(name, e) from None

    def run(self, name: str, cmd: str, timeout: float = 120) -> Result:
        """Run a shell command on host `name`; a non-zero exit is a Result, not an error."""
        remote, stdin_text = self._sudo(name, cmd)
        with self._slots[name]:
            stdin, stdout, stderr = self._open(name, remote, timeout)
            try:
                if stdin_text:
                    stdin.write(stdin_text)
                    stdin.flush()
                stdin.channel.shutdown_write()
                out = stdout.read().decode("utf-8", "replace")
                err = stderr.read().decode("utf-8", "replace")
                code = stdout.channel.recv_exit_status()
            except _session_errors() as e:
                raise self._failed(name, e) from None
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


def check_keys(hosts: list[Host] | tuple[Host, ...]) -> None:
    """Every ssh_key file can be read: else one line naming the key and its hosts, before any
    host is tried (labctl, and the pyinfra inventory, whose own error is a traceback)."""
    keys: dict[Path, list[str]] = {}
    for h in hosts:
        if h.ssh_key:
            keys.setdefault(Path(h.ssh_key).expanduser(), []).append(h.name)
    for key, names in keys.items():
        try:
            key.open("rb").close()
        except OSError as e:
            raise SSHError(
                f"cannot read ssh_key {key} (of {', '.join(names)}): {e.strerror}",
                "fix ssh_key in the topology file (ssh-keygen -t ed25519 makes a key)",
            ) from None


def _connect_problem(e: Exception, h: Host) -> str:
    """What a failed connect means, in the words a VM user knows."""
    text = str(e)
    # paramiko's NoValidConnectionsError ("Unable to connect ...") keeps each socket error
    causes = list(getattr(e, "errors", {}).values()) or [e]
    codes = {getattr(c, "errno", None) for c in causes}
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return f"cannot connect: no host answers at {h.ssh_host} (no route to host)"
    if isinstance(e, ConnectionRefusedError) or "Unable to connect" in text:
        return f"cannot connect: connection refused (nothing listens on port {h.ssh_port})"
    if isinstance(e, TimeoutError) and "banner" not in text:
        return f"cannot connect: no answer within {CONNECT_TIMEOUT} s"
    if "banner" in text or "No existing session" in text or "EOF" in text:
        # paramiko's words when a port accepts and then says nothing (or hangs up)
        return f"cannot connect: port {h.ssh_port} accepted but sent no SSH banner"
    return f"cannot connect: {getattr(e, 'strerror', None) or text or type(e).__name__}"


def _user_note(user: str) -> str:
    if user == "gurumee":
        return "(gurumee is the course's user, as the shipped topology file says: set yours) "
    return ""


def _connect_hint(e: Exception, try_ssh: str) -> str:
    if "banner" in str(e) or "No existing session" in str(e) or "EOF" in str(e):
        return f"a VirtualBox port forward to a VM still booting? wait and retry; {try_ssh}"
    return f"is the VM running? check ssh_host/ssh_port; {try_ssh}"


def _sftp_mkdir(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = PurePosixPath(path).parts
    for i in range(1, len(parts) + 1):
        p = str(PurePosixPath(*parts[:i]))
        try:
            sftp.stat(p)
        except FileNotFoundError:
            sftp.mkdir(p)
