"""gear-harpd as a child process: procedures from a module, served through live geards.

The daemon (tests/harp/harpd_support.py) loads a procedures module from a temp dir and
registers it with geard; calls go through geard's harp port with ``gear.harp``: results,
keyword arguments, streams, exception replies, ``pass_call``, the ``PROCEDURES`` dict, two
geards at once; SIGTERM and SIGINT stop it cleanly; bad options and modules are refused with
a clear message.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gear.harp as harp
from tests.harp.conftest import WAIT
from tests.harp.harpd_support import HOST, HarpdProcess, Setup, make_setup, run_harpd
from tests.server.harp.conftest import LiveServer
from tests.support.peers import wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(Path(tmp_path_factory.mktemp("harpd")))


@pytest.fixture
def daemon(setup: Setup, live: LiveServer) -> Iterator[HarpdProcess]:
    proc = HarpdProcess(setup, [live.port])
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)


@pytest.fixture
def rpc(live: LiveServer) -> harp.HarpCaller:
    return harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)


@pytest.mark.usefixtures("daemon")
def test_results_through_geard(rpc: harp.HarpCaller) -> None:
    server = rpc.host(HOST)
    assert server.echo(1, "two", [3]).get() == [1, "two", [3]]
    assert server.greet(name="ann", greeting="hi").get() == "hi, ann"
    assert server.add(2, 3).get() == 5  # from the PROCEDURES dict
    assert getattr(server, "who-am-i")().get() == [HOST, "who-am-i", True]  # pass_call


@pytest.mark.usefixtures("daemon")
def test_stream_through_geard(rpc: harp.HarpCaller) -> None:
    job = rpc.host(HOST).count(3)
    assert list(job.follow(since=0)) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert job.get() == "counted"


@pytest.mark.usefixtures("daemon")
def test_exceptions_through_geard(rpc: harp.HarpCaller) -> None:
    with pytest.raises(harp.RemoteException) as info:
        rpc.host(HOST).divide(1, 0).get()
    assert (info.value.type, info.value.message) == ("ZeroDivisionError", "division by zero")
    with pytest.raises(harp.RemoteException) as info:
        rpc.host(HOST).refuse("not today").get()
    assert (info.value.type, info.value.message, info.value.data) == (
        "refused", "not today", {"retry": False})
    with pytest.raises(harp.RemoteException) as info:  # bad arguments are the procedure's
        rpc.host(HOST).divide(1).get()
    assert info.value.type == "TypeError"


def test_cancel_reaches_the_daemons_procedure(daemon: HarpdProcess, rpc: harp.HarpCaller,
                                               tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    job = rpc.host(HOST).until_cancelled(str(marker))
    assert next(iter(job.follow(since=0))) == "started"
    assert job.cancel() is True
    wait_for(marker.exists, what="the procedure to see the cancel")
    assert job.result() is harp.CALL_CANCELLED


def test_two_geards(setup: Setup, live: LiveServer) -> None:
    other = LiveServer()
    proc = HarpdProcess(setup, [live.port, other.port])
    try:
        for server in (live, other):
            rpc = harp.HarpCaller("127.0.0.1", server.harp_port, timeout=WAIT)
            assert rpc.host(HOST).echo(server.port).get() == [server.port]
    finally:
        proc.stop(signal.SIGKILL)
        other.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(setup: Setup, live: LiveServer, sig: int) -> None:
    proc = HarpdProcess(setup, [live.port])
    rpc = harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
    assert rpc.host(HOST).echo("up").get() == ["up"]  # registered and serving
    assert proc.stop(sig) == 0
    log = proc.log.read_text()
    assert f"got {signal.Signals(sig).name}, stopping" in log
    assert "stopped" in log
    assert "Traceback" not in log
    # geard no longer has the worker: a new call waits (stays queued).
    job = rpc.host(HOST).echo("down")
    assert job.result(wait=False) is harp.CALL_NOT_FINISHED
    assert job.cancel() is True


def test_sigterm_lets_a_running_direct_call_finish(setup: Setup, tmp_path: Path) -> None:
    proc = HarpdProcess(setup, [], "--user", "u", "--password", "p")
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    server = harp.HarpServer("127.0.0.1", "u", "p", port=proc.port, timeout=WAIT)
    results: list[Any] = []
    caller = threading.Thread(target=lambda: results.append(server.wait_fifo(str(fifo))))
    caller.start()
    try:
        wait_for(lambda: "calls wait_fifo" in proc.log.read_text(), what="the call to start")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "got SIGTERM" in proc.log.read_text(), what="the signal")
        assert proc.proc.poll() is None  # still running: the call has not ended
        fifo.write_text("finished")
        caller.join(WAIT)
        assert results == ["finished"]
        assert proc.proc.wait(WAIT) == 0
    finally:
        proc.stop(signal.SIGKILL)  # a caller still waiting gets EOF
        caller.join(WAIT)


def test_logs_what_it_serves(daemon: HarpdProcess, live: LiveServer) -> None:
    log = daemon.log.read_text()
    assert f"serving 9 procedures of host {HOST} to 127.0.0.1:{live.port}" in log
    assert f"listening for direct calls on 127.0.0.1:{daemon.port}" in log


def test_help() -> None:
    done = run_harpd("--help")
    assert done.returncode == 0
    for option in ("--procedures", "--server", "--host", "--listen", "--password-file",
                   "--ssl-ca", "PROCEDURES"):
        assert option in done.stdout


def test_console_script_is_declared() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'gear-harpd = "gear.harp.daemon:main"' in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--procedures", "x.py"], "nothing to do"),
        (["--procedures", "x.py", "--listen", "127.0.0.1:0"], "--listen-cert"),
        (["--procedures", "x.py", "--server", "127.0.0.1:notaport"], "bad port"),
        (["--procedures", "x.py", "--server", "h:1", "--threads", "0"], "at least 1"),
    ],
)
def test_bad_options(args: list[str], message: str) -> None:
    done = run_harpd(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_bad_modules(tmp_path: Path, setup: Setup) -> None:
    missing = run_harpd("--procedures", str(tmp_path / "missing.py"), "--server", "h:1")
    assert missing.returncode == 2 and "missing.py" in missing.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("def not_marked():\n    pass\n")
    done = run_harpd("--procedures", str(empty), "--server", "h:1")
    assert done.returncode == 2 and "no procedures" in done.stderr
    nameless = run_harpd("--procedures", "no_such_module_here", "--server", "h:1")
    assert nameless.returncode == 2 and "no_such_module_here" in nameless.stderr
    no_users = run_harpd("--procedures", str(setup.module), "--listen", "127.0.0.1:0",
                         "--listen-cert", setup.pki.server_cert,
                         "--listen-key", setup.pki.server_key)
    assert no_users.returncode == 2 and "--password-file" in no_users.stderr
