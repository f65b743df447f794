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
    first = Geard("--data-dir", str(tmp_path), tmp=tmp_path)  # -p 0: queue-0.db
    queue = tmp_path / "queue-0.db"
    try:
        sock = connect(first.port)
        sock.sendall(request(c.SUBMIT_JOB_BG, b"durable", b"u1", b"payload"))
        assert read_packet(sock)[0] == c.JOB_CREATED  # sent only once stored
        assert queue.exists()
    finally:
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(10)
        first.stop()
    assert f"job queue: sqlite {queue}; replayed 0 stored background jobs" in (
        first.log.read_text())
    second = Geard("--data-dir", str(tmp_path), tmp=tmp_path)
    try:
        worker = connect(second.port)
        worker.sendall(request(c.CAN_DO, b"durable") + request(c.GRAB_JOB_UNIQ))
        ptype, args = read_packet(worker)
        assert ptype == c.JOB_ASSIGN_UNIQ
        assert args[1:] == [b"durable", b"u1", b"payload"]
        # Finish the job, so that the graceful stop below has nothing to wait for.
        worker.sendall(request(c.WORK_COMPLETE, args[0], b"done"))
        worker.sendall(request(c.ECHO_REQ, b"sync"))
        assert read_packet(worker) == (c.ECHO_RES, [b"sync"])
    finally:
        assert second.stop(timeout=10) == 0  # graceful and prompt: not killed
    assert "replayed 1 stored background jobs" in second.log.read_text()
    third = Geard("--data-dir", str(tmp_path), tmp=tmp_path)
    try:
        worker = connect(third.port)
        worker.sendall(request(c.CAN_DO, b"durable") + request(c.GRAB_JOB_UNIQ))
        assert read_packet(worker)[0] == c.NO_JOB  # the completed job is gone for good
    finally:
        third.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_queue_pidfile_and_log_are_per_port(tmp_path: Path) -> None:
    parse = cli.build_parser().parse_args
    assert cli._queue_url(parse([]), tmp_path) == f"sqlite://{tmp_path}/queue.db"  # kept
    assert cli._queue_url(parse(["-p", "4731"]), tmp_path) == f"sqlite://{tmp_path}/queue-4731.db"
    assert cli.per_port("geard.pid", 4730) == "geard.pid"
    assert cli.per_port("geard.log", 4731) == "geard-4731.log"
    # Two servers with default settings on different ports run side by side.
    a = GeardProcess("-p", str(_free_port()), "--data-dir", str(tmp_path),
                     log=tmp_path / "a.err")
    try:
        b = GeardProcess("-p", str(_free_port()), "--data-dir", str(tmp_path),
                         log=tmp_path / "b.err")
        try:
            for server in (a, b):
                sock = connect(server.port)
                sock.sendall(request(c.SUBMIT_JOB_BG, b"f", b"", b"x"))
                assert read_packet(sock)[0] == c.JOB_CREATED
                assert (tmp_path / f"queue-{server.port}.db").exists()
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_held_queue_is_one_clear_error_naming_the_option(tmp_path: Path) -> None:
    first = Geard("--data-dir", str(tmp_path), tmp=tmp_path)  # holds queue-0.db
    try:
        result = subprocess.run(
            [*GEARD, "-d", "-p", "0", "-L", "127.0.0.1", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=20,
        )
    finally:
        first.stop()
    assert result.returncode == 1
    assert "in use by another server" in result.stderr
    assert "--queue URL" in result.stderr and "--data-dir" in result.stderr
    assert result.stderr.count("in use by another server") == 1, result.stderr


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


def test_help_shows_every_default() -> None:
    parser = cli.build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.default in (None, False, "==SUPPRESS==") or not action.option_strings:
            continue
        if action.option_strings == ["--no-uvloop"]:  # shares --uvloop's dest (None)
            assert "default: uvloop when installed" in formatter._expand_help(action)
            continue
        text = formatter._expand_help(action)
        assert "default" in text and str(action.default) in text, (action.option_strings, text)
    text = parser.format_help()
    for option in ("--shutdown-timeout", "--keepalive-idle", "--keepalive-interval",
                   "--keepalive-count", "--job-retries", "--worker-wakeup"):
        assert option in text


def test_acl_without_mutual_tls_refuses_to_start(tmp_path: Path) -> None:
    acl = tmp_path / "acl.ini"
    acl.write_text("[worker1]\ninvoke=rev\n")
    result = subprocess.run(
        [*GEARD, "-d", "-p", "0", "--queue", "memory", "--acl", str(acl)],
        capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 1
    assert "--acl needs mutual TLS (--ssl-key, --ssl-cert and --ssl-ca)" in result.stderr
    assert "listening" not in result.stderr


def test_config_file_sets_options_and_the_command_line_wins(tmp_path: Path) -> None:
    from gear.server.config_file import option_keys

    config = tmp_path / "geard.toml"
    config.write_text(
        'port = 4999\nlisten-address = "127.0.0.1"\nqueue = "memory"\n'
        'job_handle_prefix = "H:conf"\nverbose = "warning"\nnodaemon = true\n'
        "shutdown-timeout = 5\nno-uvloop = true\n"
    )
    args = cli.parse_args(["--config", str(config), "-p", "0"])
    assert args.port == 0  # the command line wins
    assert (args.listen_address, args.queue, args.job_handle_prefix, args.verbose) == (
        "127.0.0.1", "memory", "H:conf", "WARNING")
    assert args.nodaemon is True and args.shutdown_timeout == 5.0 and args.uvloop is False
    # Every option of the command line has a key.
    parser = cli.build_parser()
    keys = option_keys(parser)
    for action in parser._actions:
        if action.dest not in ("help", "version", "config"):
            assert action in keys.values(), action.option_strings
    server = Geard("--config", str(config), tmp=tmp_path)  # -p 0 from GeardProcess wins
    try:
        sock = connect(server.port)
        sock.sendall(request(c.SUBMIT_JOB_BG, b"f", b"", b"x"))
        assert read_packet(sock) == (c.JOB_CREATED, [b"H:conf:1"])
    finally:
        server.stop()


@pytest.mark.parametrize(("line", "message"), [
    ("prot = 1", "unknown key 'prot'"),
    ('port = "4730"', "port must be an integer, not str '4730'"),
    ("keepalive = 1", "keepalive must be true or false"),
    ('verbose = "LOUD"', "verbose must be one of"),
    ("port = [", "not valid TOML"),
])
def test_config_file_errors_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "geard.toml"
    config.write_text(line + "\n")
    result = subprocess.run([*GEARD, "--config", str(config)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 1
    assert message in result.stderr and str(config) in result.stderr
