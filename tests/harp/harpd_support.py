"""What the gear-harpd tests share: a procedures module, the PKI and users, and the daemon.

:class:`HarpdProcess` runs ``python -m gear.harp.daemon`` (what the ``gear-harpd`` script
runs) as a child process serving :data:`PROCEDURES_SOURCE` from a temp dir, host ``testhost``,
registered with the given geards and listening for direct calls on a free port over TLS
(read from /proc, as :class:`tests.support.peers.ServerProcess` does).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers import ServerProcess
from tests.support.pki import PKI, make_pki

HOST = "testhost"
USER = "operator"
PASSWORD = "s3cret pass"

#: The procedures module the daemon loads: marked with gear.harp.procedure, and a PROCEDURES
#: dict.
PROCEDURES_SOURCE = '''
import time

import gear.harp as harp


@harp.procedure()
def echo(*args):
    return list(args)


@harp.procedure()
def greet(name, greeting="hello"):
    return f"{greeting}, {name}"


@harp.procedure()
def count(n):
    for i in range(n):
        yield {"i": i}
    return "counted"


@harp.procedure()
def divide(a, b):
    return a / b


@harp.procedure()
def refuse(why):
    raise harp.RemoteException("refused", why, {"retry": False})


@harp.procedure(name="who-am-i", pass_call=True)
def who(call):
    return [call.host, call.procedure, call.job is not None]


@harp.procedure()
def wait_fifo(path):
    with open(path) as fifo:  # blocks until the test opens the FIFO to write
        return fifo.read()


@harp.procedure(pass_call=True)
def until_cancelled(call, marker):
    yield "started"
    while not call.cancelled:  # a long procedure polls its call, as docs/harp.md says
        time.sleep(0.005)
    with open(marker, "w") as f:
        f.write("saw the cancel")


def add(a, b):
    return a + b


PROCEDURES = {"add": add}
'''


@dataclass
class Setup:
    """A temp dir with the procedures module, a password file and a PKI."""

    directory: Path
    module: Path
    password_file: Path
    pki: PKI


def make_setup(directory: Path) -> Setup:
    module = directory / "site_procedures.py"
    module.write_text(PROCEDURES_SOURCE)
    password_file = directory / "users"
    password_file.write_text(f"# direct-call users\n{USER}:{PASSWORD}\nother:x\n")
    return Setup(directory, module, password_file, make_pki(directory))


def harpd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gear.harp.daemon", *args]


def run_harpd(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the daemon to its exit (for option errors and --help)."""
    return subprocess.run(harpd_command(*args), capture_output=True, text=True,
                          timeout=timeout, check=False)


class HarpdProcess(ServerProcess):
    """gear-harpd serving :data:`PROCEDURES_SOURCE`; :attr:`port` is its direct-call port."""

    what = "gear-harpd"

    def __init__(self, setup: Setup, gearman_ports: list[int], *extra: str,
                 module: str | None = None, cwd: Path | None = None) -> None:
        self.setup = setup
        self.gearman_ports = gearman_ports
        self.module = module or str(setup.module)
        super().__init__(*extra, cwd=cwd)

    def command(self) -> list[str]:
        s = self.setup
        servers = [arg for port in self.gearman_ports for arg in ("--server", f"127.0.0.1:{port}")]
        return harpd_command(
            "--procedures", self.module, "--host", HOST, *servers,
            "--listen", f"127.0.0.1:{self.port}", "--listen-cert", s.pki.server_cert,
            "--listen-key", s.pki.server_key, "--password-file", str(s.password_file),
            "--log-level", "DEBUG", *self.extra_args)
