"""A throwaway PostgreSQL server for tests, from the distribution's binaries.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` (Debian: ``/usr/lib/postgresql/<v>/bin``)
in a fresh temporary directory. It listens ONLY on a unix socket inside that directory
(``listen_addresses=''``: no TCP port at all), trusts local connections, and is removed on
``cleanup()``. PostgreSQL refuses to run as root, so when the tests run as root the server runs
as the ``postgres`` system user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from tests.support.peers import missing_peer


def find_bindir() -> str | None:
    """Directory holding ``initdb`` and ``pg_ctl`` (newest installed version), or ``None``."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: [int(x) for x in Path(p).parts[-3].split(".")
                                       if x.isdigit()])
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """A private PostgreSQL cluster on a unix socket; ``url`` is a libpq connection URL."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None or not os.path.exists(os.path.join(bindir, "pg_ctl")):
            missing_peer("PostgreSQL is not installed (Debian: postgresql)")
        assert bindir is not None
        self.bindir = bindir
        self.user = "postgres"
        self._as: list[str] = []
        uid = gid = -1
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                missing_peer("running as root and there is no 'postgres' user to run PostgreSQL")
            runuser = shutil.which("runuser")
            if runuser is None:
                missing_peer("running as root and runuser is missing")
            assert runuser is not None
            uid, gid = entry.pw_uid, entry.pw_gid
            self._as = [runuser, "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        # Short path: a unix socket path must fit in ~107 bytes.
        self.root = tempfile.mkdtemp(prefix="gearpg-")
        if uid >= 0:
            os.chown(self.root, uid, gid)
        self.datadir = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self._run("initdb", "-D", self.datadir, "-U", self.user, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--no-instructions")
        self.start()

    @property
    def url(self) -> str:
        return (f"postgresql:///postgres?host={quote(self.socket_dir, safe='')}"
                f"&user={quote(self.user, safe='')}")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, os.path.join(self.bindir, tool), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.root)
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=50"
        self._run("pg_ctl", "-D", self.datadir, "-o", options, "-l",
                  os.path.join(self.root, "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode="immediate"`` is a crash: no checkpoint)."""
        self._run("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", self.datadir, "status", check=False).returncode == 0

    def cleanup(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
