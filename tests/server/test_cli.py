"""``geard`` as users run it: a real subprocess, foreground (-d) and daemonized, with signals.

The port is found from /proc (``listening_ports``), never fixed. Waiting on the child process
uses ``wait_for`` polling (another process: there is no event to block on).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gear import constants as c
from gear.protocol.packets import request, response
from gear.server import cli
from tests.support.peers import GeardProcess, listening_ports, wait_for
from tests.support.raw import connect, read_packet

GEARD = [sys.executable, "-m", "gear.server"]


def Geard(*args: str, tmp: Path) -> GeardProcess:
    """``geard -d`` with its stderr in ``tmp``, so tests can read what it logged."""
    return GeardProcess(*args, log=tmp / "geard.err")


@pytest.fixture
def geard(tmp_path: Path) -> Iterator[GeardProcess]:
    server = Geard("--queue", "memory", "--shutdown-timeout", "5", tmp=tmp_path)
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


def test_version_is_fast_and_gear_compatible() -> None:
    start = time.monotonic()
    out = subprocess.run([*GEARD, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Gear version: ")
    assert time.monotonic() - start < 2.0  # includes interpreter start on a loaded 2-core box


def test_help_lists_gear_and_gearmand_options() -> None:
    text = cli.build_parser().format_help()
    for option in ("-d", "--listen-address", "--log-config", "--pidfile", "--ssl-ca", "--acl",
                   "--keepalive-count", "--job-retries", "--worker-wakeup", "--threads",
                   "--queue", "--data-dir", "--max-packet-size", "--no-uvloop",
                   "--shutdown-timeout"):
        assert option in text


def test_foreground_server_answers_and_sigterm_stops_it(geard: GeardProcess) -> None:
    sock = connect(geard.port)
    sock.sendall(request(c.ECHO_REQ, b"ping"))
    assert read_packet(sock) == (c.ECHO_RES, [b"ping"])
    geard.proc.send_signal(signal.SIGTERM)
    assert geard.proc.wait(10) == 0
    assert sock.recv(10) == b""
    assert "server stopped" in geard.log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_graceful_shutdown_lets_the_running_job_finish(geard: GeardProcess, sig: int) -> None:
    client, worker = connect(geard.port), connect(geard.port)
    worker.sendall(request(c.CAN_DO, b"slow"))
    client.sendall(request(c.SUBMIT_JOB, b"slow", b"", b"data"))
    ptype, (handle,) = read_packet(client)
    assert ptype == c.JOB_CREATED
    worker.sendall(request(c.GRAB_JOB_UNIQ))
    assert read_packet(worker)[0] == c.JOB_ASSIGN_UNIQ
    geard.proc.send_signal(sig)
    # Stops accepting at once, but keeps serving the connections it has.
    wait_for(lambda: not listening_ports(geard.proc.pid), what="listener to close")
    assert geard.proc.poll() is None
    worker.sendall(request(c.WORK_COMPLETE, handle, b"result"))
    assert read_packet(client) == (c.WORK_COMPLETE, [handle, b"result"])
    assert geard.proc.wait(10) == 0


def test_daemon_mode_writes_and_removes_its_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "geard.pid"
    log = tmp_path / "geard.log"
    result = subprocess.run(
        [*GEARD, "-p", "0", "--listen-address", "127.0.0.1", "--queue", "memory",
         "--pidfile", str(pidfile), "--log-file", str(log), "--data-dir", str(tmp_path)],
        capture_output=True, timeout=20,
    )
    assert result.returncode == 0, result.stderr
    pid = int(pidfile.read_text())
    try:
        ports = wait_for(lambda: listening_ports(pid), what="the daemon to listen")
        port = ports[0]  # type: ignore[index]
        sock = connect(port)
        sock.sendall(request(c.ECHO_REQ, b"daemon"))
        assert read_packet(sock) == (c.ECHO_RES, [b"daemon"])
        # A new session (detached from our terminal), and not its leader (double fork: it can
        # never reacquire a controlling terminal).
        assert os.getsid(pid) not in (os.getsid(0), pid)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), what="pidfile removal")
        assert "listening on 127.0.0.1" in log.read_text()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_daemon_reports_start_errors_in_the_foreground(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        result = subprocess.run(
            [*GEARD, "-p", str(busy.getsockname()[1]), "--listen-address", "127.0.0.1",
             "--queue", "memory", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=20,
        )
    finally:
        busy.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert not (tmp_path / "geard.pid").exists()


def test_configuration_errors_exit_1_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [*GEARD, "-d", "-p", "0", "--queue", "nosuch://"], capture_output=True, text=True,
        timeout=20,
    )
    assert result.returncode == 1 and "unknown queue" in result.stderr
    result = subprocess.run(
        [*GEARD, "-d", "-p", "0", "--queue", "memory", "--acl", str(tmp_path / "missing.ini")],
        capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 1 and "Unable to read ACL file" in result.stderr


def test_default_queue_is_sqlite_in_the_data_dir_and_survives_restart(tmp_path: Path) -> None:
    first = Geard("--data-dir", str(tmp_path), tmp=tmp_path)
    try:
        sock = connect(first.port)
        sock.sendall(request(c.SUBMIT_JOB_BG, b"durable", b"u1", b"payload"))
        assert read_packet(sock)[0] == c.JOB_CREATED  # sent only once stored
        assert (tmp_path / "queue.db").exists()
    finally:
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(10)
        first.stop()
    second = Geard("--data-dir", str(tmp_path), tmp=tmp_path)
    try:
        worker = connect(second.port)
        worker.sendall(request(c.CAN_DO, b"durable") + request(c.GRAB_JOB_UNIQ))
        ptype, args = read_packet(worker)
        assert ptype == c.JOB_ASSIGN_UNIQ
        assert args[1:] == [b"durable", b"u1", b"payload"]
    finally:
        second.stop()


def test_load_acl_reads_gears_ini_format(tmp_path: Path) -> None:
    path = tmp_path / "acl.ini"
    path.write_text(
        "[my_worker]\nregister=.*\n\n[my_client]\ninvoke=job-.*\n\n[admin]\ngrant=True\n"
    )
    acl = cli.load_acl(str(path))
    assert acl.canRegister("my_worker", "anything")
    assert not acl.canInvoke("my_worker", "anything")
    assert acl.canInvoke("my_client", "job-1") and not acl.canInvoke("my_client", "other")
    assert acl.canGrant("admin") and not acl.canGrant("my_client")
    path.write_text("[bad]\nregister=(\n")
    with pytest.raises(cli.ConfigurationError, match=r"\[bad\]"):
        cli.load_acl(str(path))


def test_default_data_dir_depends_on_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.default_data_dir() == Path("/var/lib/geard")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/state")
    assert cli.default_data_dir() == Path("/tmp/state/geard")


def test_python_m_gear_server_is_geard() -> None:
    result = subprocess.run([*GEARD, "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: geard")
    assert response(c.ECHO_RES, b"")  # the protocol module imports fine alongside


def test_gearmand_options_reach_the_broker(tmp_path: Path) -> None:
    server = Geard("--queue", "memory", "--job-handle-prefix", "H:bench", "--max-packet-size",
                   "1024", "-t", "4", "--verbose", "WARNING", "--no-uvloop", tmp=tmp_path)
    try:
        sock = connect(server.port)
        sock.sendall(request(c.SUBMIT_JOB_BG, b"f", b"", b"x" * 900))
        ptype, (handle,) = read_packet(sock)
        assert ptype == c.JOB_CREATED and handle == b"H:bench:1"
        sock.sendall(b"verbose\n")
        assert sock.recv(100) == b"OK WARNING\n"
        sock.sendall(request(c.SUBMIT_JOB_BG, b"f", b"", b"x" * 2000))  # over the cap
        assert sock.recv(100) == b""  # closed
        other = connect(server.port)
        other.sendall(request(c.ECHO_REQ, b"fine"))
        assert read_packet(other) == (c.ECHO_RES, [b"fine"])
    finally:
        server.stop()


def test_admin_shutdown_stops_geard(geard: GeardProcess) -> None:
    sock = connect(geard.port)
    sock.sendall(b"shutdown graceful\n")
    assert sock.recv(100) == b"OK\r\n"
    assert geard.proc.wait(10) == 0


def test_uvloop_required_but_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gear.server import engine

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    with pytest.raises(cli.ConfigurationError, match=r"geartrain\[uvloop\]"):
        engine.new_event_loop(True)
    loop = engine.new_event_loop(None)  # "use it when installed": falls back quietly
    loop.close()


def test_statsd_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gear.server.observe.statsd import Metrics

    monkeypatch.setitem(sys.modules, "statsd", None)
    with pytest.raises(cli.ConfigurationError, match=r"geartrain\[statsd\]"):
        Metrics("127.0.0.1")


def test_relative_sqlite_queue_survives_the_daemons_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parse = cli.build_parser().parse_args
    assert cli._queue_url(parse(["--queue", "sqlite:q.db?max_size=1M"]), tmp_path) == (
        f"sqlite://{tmp_path}/q.db?max_size=1M"
    )
    assert cli._queue_url(parse(["--queue", "sqlite:///abs/q.db"]), tmp_path) == (
        "sqlite:///abs/q.db"
    )
    assert cli._queue_url(parse([]), tmp_path) == f"sqlite://{tmp_path}/queue.db"


def test_tls_and_acl_options_end_to_end(tmp_path: Path) -> None:
    import ssl

    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    acl = tmp_path / "acl.ini"
    acl.write_text("[worker1]\ninvoke=rev\n")
    server = Geard("--queue", "memory", "--ssl-key", pki.server_key, "--ssl-cert",
                   pki.server_cert, "--ssl-ca", pki.ca, "--acl", str(acl), tmp=tmp_path)
    try:
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        sock = ctx.wrap_socket(connect(server.port))
        sock.sendall(request(c.SUBMIT_JOB_BG, b"rev", b"", b"ok"))
        assert read_packet(sock)[0] == c.JOB_CREATED  # type: ignore[arg-type]
        sock.sendall(request(c.SUBMIT_JOB_BG, b"other", b"", b"no"))
        ptype, args = read_packet(sock)  # type: ignore[arg-type]
        assert ptype == c.ERROR and b"Permission denied by ACL" in args[1]
        plain = connect(server.port)  # plaintext on the TLS port: refused, server unharmed
        plain.sendall(request(c.ECHO_REQ, b"x"))
        try:
            answer = plain.recv(100)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(c.RES)  # at most a TLS alert, never a Gearman reply
        sock.sendall(request(c.ECHO_REQ, b"still"))
        assert read_packet(sock) == (c.ECHO_RES, [b"still"])  # type: ignore[arg-type]
    finally:
        server.stop()


def test_sighup_is_harmless(geard: GeardProcess) -> None:
    # logrotate setups written for gearmand send SIGHUP; geard must keep serving.
    assert geard.proc is not None
    geard.proc.send_signal(signal.SIGHUP)
    sock = connect(geard.port)
    sock.sendall(request(c.ECHO_REQ, b"still here"))
    assert read_packet(sock) == (c.ECHO_RES, [b"still here"])
    assert geard.proc.poll() is None
    geard.proc.send_signal(signal.SIGTERM)
    assert geard.proc.wait(10) == 0
    assert "SIGHUP" in geard.log.read_text()
