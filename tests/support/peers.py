"""Start and control the real peers the interop tests run against.

* :class:`GearmandProcess` / :class:`GeardProcess`: Debian's gearmand or our geard on
  ``127.0.0.1`` port 0; the port it got is read from ``/proc`` (no fixed ports, no guessing).
* :func:`gear016_python`: a virtual environment with PyPI's gear 0.16.0 (it installs the same
  ``gear`` package name as ours, so it never shares an environment with us).
* :func:`require_tool`: a missing peer skips the test with a reason, or fails it when
  ``GEAR_REQUIRE_INTEROP=1`` (set by ``.ci/run``), so CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
GEAR016_VENV = Path(os.environ.get("GEAR016_VENV", REPO / ".venvs" / "gear016"))


def interop_required() -> bool:
    return os.environ.get("GEAR_REQUIRE_INTEROP", "") not in ("", "0")


def missing_peer(reason: str) -> None:
    """Skip (or, under GEAR_REQUIRE_INTEROP=1, fail) because a peer is not available."""
    import pytest  # here, not at the top: the benchmarks import this module without pytest

    if interop_required():
        pytest.fail(f"GEAR_REQUIRE_INTEROP=1 but {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if not path:
        missing_peer(f"{name} is not installed (Debian: gearman-job-server / gearman-tools)")
    return path  # type: ignore[return-value]


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    For waiting on *another process* (a server to listen, a child to exit), where there is no
    event to block on. In-process tests synchronise on events, never on this.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def listening_ports(pid: int) -> list[int]:
    """TCP ports process ``pid`` listens on, read from /proc (Linux)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except FileNotFoundError:
        return []
    ports = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                        ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


class ServerProcess:
    """A job server child process on 127.0.0.1; the port it listens on is read from /proc.

    Subclasses say how to run it (:meth:`command`). stderr goes to ``self.log`` so a failing
    start can say why. ``port=0`` (the default) lets the server pick a free port; ``restart``
    reuses the port it got.
    """

    what = "server"
    #: Run in the child before the server starts (``subprocess.Popen``'s ``preexec_fn``), e.g.
    #: to lower its descriptor limit.
    preexec: Callable[[], None] | None = None

    def __init__(
        self,
        *extra_args: str,
        port: int = 0,
        cwd: Path | None = None,
        log: Path | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.extra_args = list(extra_args)
        self.host = "127.0.0.1"
        self.port = port
        self.cwd = cwd
        self.timeout = timeout
        if log is None:
            fd, name = tempfile.mkstemp(prefix=f"{self.what}-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(), stdout=subprocess.DEVNULL, stderr=err, cwd=self.cwd,
                preexec_fn=self.preexec,
            )
        proc = self.proc

        def ready() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{self.what} exited with {proc.returncode}: {self.log.read_text()}"
                )
            ports = listening_ports(proc.pid)
            return ports[0] if ports else None

        self.port = wait_for(ready, timeout=self.timeout, what=f"{self.what} to listen")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send ``sig`` and wait for the exit (SIGKILL after ``timeout``); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> None:
        """Stop and start again on the same port (for reconnect tests)."""
        self.stop()
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


class GearmandProcess(ServerProcess):
    """Debian's gearmand, single-threaded, no log file."""

    what = "gearmand"

    def command(self) -> list[str]:
        return [
            require_tool("gearmand"),
            "--listen=127.0.0.1",
            f"--port={self.port}",
            "--log-file=none",
            "--threads=0",
            *self.extra_args,
        ]


class GeardProcess(ServerProcess):
    """Our ``geard`` in the foreground (``-d``), run as ``python -m gear.server``."""

    what = "geard"
    #: A private --data-dir, made on first start when the arguments name no queue, data
    #: directory or config file: without it every port-0 geard would share the default
    #: queue-0.db of the machine's data directory (docs/server.md), and one test's leftover
    #: background jobs would be replayed into the next. Kept across restart().
    data_dir: str | None = None

    def command(self) -> list[str]:
        own = ("--queue", "--data-dir", "--config")
        if not any(a.split("=", 1)[0] in own for a in self.extra_args) and self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="geard-data-")
        private = ["--data-dir", self.data_dir] if self.data_dir else []
        return [
            sys.executable,
            "-m",
            "gear.server",
            "-d",
            "-p",
            str(self.port),
            "--listen-address",
            "127.0.0.1",
            *private,
            *self.extra_args,
        ]


def gear016_python() -> str:
    """Path of a python that imports PyPI's gear 0.16.0; the venv is created on first use."""
    py = GEAR016_VENV / "bin" / "python"
    if not py.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(GEAR016_VENV)], check=True)
            subprocess.run(
                [str(py), "-m", "pip", "install", "-q", "gear==0.16.0"],
                check=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(GEAR016_VENV, ignore_errors=True)
            missing_peer(f"cannot create a venv with gear 0.16.0: {exc}")
    return str(py)


GEARMAN3_VENV = Path(os.environ.get("GEARMAN3_VENV", REPO / ".venvs" / "gearman3"))
PYGEARMAN_VENV = Path(os.environ.get("PYGEARMAN_VENV", REPO / ".venvs" / "pygearman"))
#: gearman3 calls array.fromstring, gone in Python 3.9: it needs a 3.8 interpreter.
GEARMAN3_PYTHONS = ("python3.8", str(Path.home() / ".pyenv" / "versions" / "3.8.18" / "bin"
                                     / "python3.8"))


def _venv_with(venv: Path, base: str, requirement: str) -> str:
    """The python of ``venv`` holding ``requirement`` from PyPI, made with ``base`` if needed."""
    py = venv / "bin" / "python"
    if not py.exists():
        try:
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", requirement], check=True,
                           timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            missing_peer(f"cannot create a venv with {requirement}: {exc}")
    return str(py)


def gearman3_python() -> str:
    """Path of a Python 3.8 that imports PyPI's gearman3 0.2.1 (python-gearman's Python 3 fork);
    the venv is created on first use, like gear 0.16.0's."""
    if (GEARMAN3_VENV / "bin" / "python").exists():
        return str(GEARMAN3_VENV / "bin" / "python")
    for candidate in GEARMAN3_PYTHONS:
        found = shutil.which(candidate) if os.sep not in candidate else candidate
        if found and os.path.exists(found) and subprocess.run(
                [found, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                capture_output=True).returncode == 0:
            return _venv_with(GEARMAN3_VENV, found, "gearman3==0.2.1")
    missing_peer("gearman3 needs Python 3.8 (python3.8 not found)")
    raise AssertionError("unreachable")


def pygearman_python() -> str:
    """Path of a python that imports PyPI's pygearman 0.2.6 (a gearman3 fork that runs on
    current Pythons); the venv is created on first use."""
    return _venv_with(PYGEARMAN_VENV, sys.executable, "pygearman==0.2.6")
