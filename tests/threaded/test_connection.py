"""Connection.readPacket's buffering contract, non-blocking reads and waiter failure."""

from __future__ import annotations

import threading

import pytest

import gear
from gear import constants
from gear.protocol.packets import response
from tests.threaded.fakes import ScriptedSocket, scripted_connection

BIG = response(constants.WORK_COMPLETE, b"H:1", b"x" * 9000)
SMALL = response(constants.NOOP)
ADMIN = b"fn\t1\t0\t1\n.\n"


def test_never_reads_while_a_complete_item_is_buffered() -> None:
    conn, sock = scripted_connection([SMALL + SMALL + SMALL])
    for _ in range(3):
        p = conn.readPacket()
        assert isinstance(p, gear.Packet) and p.ptype == constants.NOOP
    assert sock.recv_calls == 1
    with pytest.raises(EOFError):  # only now does it read again
        conn.readPacket()


@pytest.mark.parametrize("size", [1, 5, 12, 13, 1448, 4096])
def test_any_chunking_yields_the_same_items_in_order(size: int) -> None:
    stream = BIG + ADMIN + SMALL + b"OK\n"
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    conn, _sock = scripted_connection(chunks)
    status, cancel = gear.StatusAdminRequest(), gear.CancelJobAdminRequest(b"H:1")
    conn.admin_requests.extend([status, cancel])
    first = conn.readPacket()
    assert isinstance(first, gear.Packet) and first.getArgument(1) == b"x" * 9000
    assert first.connection is conn
    assert conn.readPacket() is status and status.response == ADMIN
    second = conn.readPacket()
    assert isinstance(second, gear.Packet) and second.ptype == constants.NOOP
    assert conn.readPacket() is cancel and cancel.response == b"OK\n"
    assert conn.admin_requests == []
    assert conn.input_buffer == b""


def test_leftover_bytes_stay_in_input_buffer() -> None:
    conn, _sock = scripted_connection([SMALL + BIG[:20]])
    assert conn.readPacket() == gear.Packet(constants.RES, constants.NOOP, b"")
    assert conn.input_buffer == BIG[:20]


def test_eof_returns_none() -> None:
    conn, sock = scripted_connection([SMALL[:5], b""])
    assert conn.readPacket() is None
    assert sock.recv_calls == 2


def test_admin_text_without_a_request_is_an_error() -> None:
    conn, _sock = scripted_connection([b"OK\n"])
    with pytest.raises(gear.InvalidDataError):
        conn.readPacket()


def test_non_blocking_keeps_partial_data_across_retry() -> None:
    conn = gear.NonBlockingConnection("127.0.0.1", 4730)
    conn.conn = ScriptedSocket([BIG[:100], None, BIG[100:] + SMALL], blocking=False)
    with pytest.raises(gear.RetryIOError):
        conn.readPacket()
    assert conn.input_buffer == BIG[:100]
    assert conn.readPacket().getArgument(1) == b"x" * 9000  # type: ignore[union-attr]
    assert conn.readPacket().ptype == constants.NOOP  # type: ignore[union-attr]
    with pytest.raises(gear.RetryIOError):
        conn.readPacket()


def test_non_blocking_send_queue() -> None:
    conn = gear.NonBlockingConnection("127.0.0.1", 4730)
    sock = conn.conn = ScriptedSocket()
    conn.sendPacket(gear.Packet(constants.REQ, constants.ECHO_REQ, b"hi"))
    assert sock.sent == [response(constants.ECHO_REQ, b"hi").replace(b"RES", b"REQ", 1)]
    assert conn.send_queue == []


def test_server_connection_parses_commands_and_packets() -> None:
    sock = ScriptedSocket([b"stat", None, b"us\n" + SMALL], blocking=True)
    conn = gear.ServerConnection(("10.0.0.1", 555), sock, False, "srv")
    assert sock.blocking is False  # the constructor makes it non-blocking
    with pytest.raises(gear.RetryIOError):
        conn.readPacket()
    req = conn.readPacket()
    assert isinstance(req, gear.ServerAdminRequest) and req.command == b"status"
    assert conn.readPacket().ptype == constants.NOOP  # type: ignore[union-attr]
    assert conn.host == "10.0.0.1" and conn.functions == set() and conn.client_id is None


def test_repr_and_state() -> None:
    conn = gear.Connection(None, "80")
    assert repr(conn).endswith("host: None port: 80>")
    assert conn.state == "INIT"


def test_lost_connection_fails_waiters_at_once() -> None:
    conn, _sock = scripted_connection([])
    req = gear.StatusAdminRequest()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            conn.sendAdminRequest(req, timeout=30)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=ask)
    t.start()
    while not conn.admin_requests:
        t.join(0.001)
    conn.disconnect()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(errors[0], gear.ConnectionError)


def test_echo_timeout_and_duplicate() -> None:
    conn, sock = scripted_connection([])
    with pytest.raises(gear.TimeoutError):
        conn.echo(b"ping", timeout=0.01)
    assert sock.sent == [response(constants.ECHO_REQ, b"ping").replace(b"RES", b"REQ", 1)]
    assert conn.echo_conditions == {}
    assert conn.handleEchoRes(b"nobody") is False


def test_ssl_context_allows_tls13() -> None:
    import ssl

    ctx = gear.create_ssl_context()
    assert not ctx.options & ssl.OP_NO_TLSv1_3
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_bad_magic_is_a_protocol_error() -> None:
    conn, _sock = scripted_connection([b"\x00XYZ" + bytes(8)])
    with pytest.raises(gear.errors.BadMagicError):
        conn.readPacket()


def test_non_blocking_send_queue_is_dropped_with_the_connection() -> None:
    # the rest of a packet queued for the old socket must not start the next stream
    conn = gear.NonBlockingConnection("127.0.0.1", 4730, client_id="c")
    conn.send_queue.append(b"\x00REQ\x00\x00\x00\x10half a pac")
    conn.disconnect()
    assert conn.send_queue == []
