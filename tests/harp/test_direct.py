"""Direct calls (``HarpServer``) to gear-harpd's listen port, TLS with user and password.

Against the daemon as a child process (tests/harp/harpd_support.py): results, keyword
arguments, streams (items then ``Result``, or ``result()``), exception replies, a wrong
password and an unknown procedure refused with harpd's error types, certificate checks.
Against an in-process :class:`DirectListener`: harpd's error replies to malformed requests on
a raw TLS socket, and a client leaving mid-stream closes the procedure's generator.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gear.harp as harp
from gear.harp.listener import DirectListener
from gear.net import tls_context
from tests.harp.conftest import WAIT
from tests.harp.harpd_support import PASSWORD, USER, HarpdProcess, Setup, make_setup
from tests.server.harp.conftest import LiveServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(Path(tmp_path_factory.mktemp("harpd-direct")))


@pytest.fixture(scope="module")
def daemon(setup: Setup) -> Iterator[HarpdProcess]:
    live = LiveServer()
    proc = HarpdProcess(setup, [live.port])
    try:
        yield proc
    finally:
        proc.stop(signal.SIGKILL)
        live.stop()


@pytest.fixture
def server(daemon: HarpdProcess, setup: Setup) -> harp.HarpServer:
    return harp.HarpServer("127.0.0.1", USER, PASSWORD, port=daemon.port,
                           ca_file=setup.pki.ca, timeout=WAIT)


def test_results(server: harp.HarpServer) -> None:
    assert server.echo(1, "two", None) == [1, "two", None]
    assert server.echo() == []
    assert server.greet(name="bob") == "hello, bob"
    assert server.add(40, 2) == 42
    assert server.procedure("who-am-i")() == ["testhost", "who-am-i", False]


def test_stream_ends_with_a_result(server: harp.HarpServer) -> None:
    stream = server.count(3)
    assert isinstance(stream, harp.HarpStreamIterator)
    items = list(stream)
    assert items == [{"i": 0}, {"i": 1}, {"i": 2}, harp.Result("counted")]
    assert isinstance(items[-1], harp.Result) and items[-1].value == "counted"
    assert stream.result() == "counted"


def test_stream_result_and_messages(server: harp.HarpServer) -> None:
    stream = server.count(2)
    assert next(stream) == {"i": 0}
    assert stream.result() == "counted"  # drops the rest
    assert server.count(4).messages() == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    empty = server.count(0)
    assert isinstance(empty, harp.HarpStreamIterator)  # a generator streams, even empty
    assert list(empty) == [harp.Result("counted")]


def test_exceptions(server: harp.HarpServer) -> None:
    with pytest.raises(harp.RemoteException) as info:
        server.divide(1, 0)
    assert (info.value.type, info.value.message) == ("ZeroDivisionError", "division by zero")
    with pytest.raises(harp.RemoteException) as info:
        server.refuse("no")
    assert (info.value.type, info.value.message, info.value.data) == ("refused", "no",
                                                                      {"retry": False})
    with pytest.raises(harp.RemoteException) as info:
        server.greet()
    assert info.value.type == "TypeError"


def test_wrong_password_is_refused(daemon: HarpdProcess, setup: Setup) -> None:
    for user, password in ((USER, "wrong"), ("nobody", PASSWORD), (USER, "")):
        bad = harp.HarpServer("127.0.0.1", user, password, port=daemon.port,
                              ca_file=setup.pki.ca, timeout=WAIT)
        with pytest.raises(harp.RemoteError) as info:
            bad.echo(1)
        assert (info.value.type, info.value.message) == (
            "auth_error", "unknown user or wrong password")
    assert "refused: unknown user or wrong password (auth_error)" in daemon.log.read_text()
    other = harp.HarpServer("127.0.0.1", "other", "x", port=daemon.port, timeout=WAIT)
    assert other.echo("no ca_file: no verification") == ["no ca_file: no verification"]


def test_unknown_procedure_and_mixed_arguments(server: harp.HarpServer) -> None:
    with pytest.raises(harp.RemoteError) as info:
        server.no_such_thing()
    assert (info.value.type, info.value.data) == ("no_such_procedure",
                                                  {"procedure": "no_such_thing"})
    with pytest.raises(harp.HarpException, match="mixed keyword and positional"):
        server.greet("a", greeting="b")


def test_listen_only_with_a_module_name(setup: Setup) -> None:
    # No --server: direct calls only; the module found by name (python -m puts the cwd on
    # sys.path) and the one user given with --user/--password.
    proc = HarpdProcess(setup, [], "--user", "solo", "--password", "pw",
                        module="site_procedures", cwd=setup.directory)
    try:
        solo = harp.HarpServer("127.0.0.1", "solo", "pw", port=proc.port, timeout=WAIT)
        assert solo.add(1, 2) == 3
        assert solo.count(1).result() == "counted"
        assert "serving" not in proc.log.read_text()  # no job server
    finally:
        assert proc.stop() == 0


def test_certificate_checks(daemon: HarpdProcess, setup: Setup) -> None:
    untrusting = harp.HarpServer("127.0.0.1", USER, PASSWORD, port=daemon.port,
                                 ca_file=setup.pki.other_ca, timeout=WAIT)
    with pytest.raises(harp.CommunicationError):
        untrusting.echo(1)


def test_no_daemon() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(harp.CommunicationError, match="can't connect"):
        harp.HarpServer("127.0.0.1", USER, PASSWORD, port=port, timeout=WAIT).echo()


def test_repr_and_dunder_attributes(server: harp.HarpServer) -> None:
    assert repr(server).endswith(f"127.0.0.1:{server._port}>")
    assert repr(server.echo).endswith(".echo()>")
    with pytest.raises(AttributeError):
        server.__deepcopy__  # noqa: B018


# -- an in-process listener ---------------------------------------------------------------------


class Gen:
    def __init__(self) -> None:
        self.closed = threading.Event()
        self.more = threading.Event()

    def endless(self) -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                self.more.wait(WAIT)
        finally:
            self.closed.set()


@pytest.fixture
def listener(setup: Setup) -> Iterator[tuple[DirectListener, Gen]]:
    gen = Gen()
    context = tls_context(server_side=True)
    context.load_cert_chain(setup.pki.server_cert, setup.pki.server_key)
    procedures: dict[str, tuple[Any, bool]] = {"endless": (gen.endless, False),
                                               "echo": (lambda *a: list(a), False)}
    lst = DirectListener(procedures, {USER: PASSWORD}, context, port=0, host="inproc")
    lst.start()
    try:
        yield lst, gen
    finally:
        gen.more.set()
        assert lst.stop(WAIT)


def raw_ask(port: int, line: bytes) -> list[Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock, \
            context.wrap_socket(sock) as tls:
        tls.sendall(line)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return [json.loads(row) for row in data.splitlines()]


@pytest.mark.parametrize(
    ("line", "kind", "message"),
    [
        (b"not json\n", "parse_error", None),
        (b"[1]\n", "invalid_request", "invalid request data type"),
        (b'{"harp": 2}\n', "invalid_request", "unsupported protocol version"),
        (b'{"harp": 1, "procedure": "echo", "arguments": []}\n', "invalid_request",
         "malformed credentials data"),
        (b'{"harp": 1, "auth": {"user": "operator", "password": "s3cret pass"}, '
         b'"procedure": "echo", "arguments": 5}\n', "invalid_argument_list", None),
        (b'{"harp": 1, "auth": {"user": "operator", "password": "s3cret pass"}}\n',
         "invalid_request", "invalid request"),
        (b'{"harp": 1, "auth": {"user": "operator", "password": "s3cret pass"}, '
         b'"procedure": "echo"}\n', "invalid_request", "invalid request"),
        (b'{"harp": 1}\n{"harp": 1}\n', "invalid_request", "excessive data after request"),
    ],
)
def test_malformed_requests(listener: tuple[DirectListener, Gen], line: bytes, kind: str,
                            message: str | None) -> None:
    lst, _gen = listener
    replies = raw_ask(lst.port, line)
    assert len(replies) == 1
    assert replies[0]["harp"] == 1
    assert replies[0]["error"]["type"] == kind
    if message is not None:
        assert replies[0]["error"]["message"] == message


def test_raw_reply_lines(listener: tuple[DirectListener, Gen]) -> None:
    lst, _gen = listener
    request = {"harp": 1, "auth": {"user": USER, "password": PASSWORD}, "procedure": "echo",
               "arguments": [1, "x"]}
    assert raw_ask(lst.port, json.dumps(request).encode() + b"\n") == [
        {"harp": 1, "stream_result": False}, {"result": [1, "x"]}]


def test_client_leaving_mid_stream_closes_the_generator(
        listener: tuple[DirectListener, Gen]) -> None:
    lst, gen = listener
    server = harp.HarpServer("127.0.0.1", USER, PASSWORD, port=lst.port, timeout=WAIT)
    stream = server.endless()
    assert next(stream) == 0
    stream.close()
    gen.more.set()  # the next yields hit a closed connection
    assert gen.closed.wait(WAIT)
    assert lst.stop(WAIT)  # and the call is over
