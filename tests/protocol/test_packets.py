"""Golden bytes for every packet type, and the incremental decoder under any chunking."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gear import constants as c
from gear.errors import (
    BadMagicError,
    InvalidDataError,
    MalformedPacketError,
    PacketTooLargeError,
    UnknownPacketTypeError,
)
from gear.protocol.packets import (
    FIELD_COUNTS,
    AdminLine,
    Decoder,
    Frame,
    encode,
    request,
    response,
    split_args,
)

# (type, magic, args, exact wire bytes) for every type 1-42; layouts from docs/protocol.md §1.4.
GOLDEN: list[tuple[int, bytes, tuple[bytes, ...], bytes]] = [
    (c.CAN_DO, c.REQ, (b"revtool",), b"\0REQ\0\0\0\x01\0\0\0\x07revtool"),
    (c.CANT_DO, c.REQ, (b"fn",), b"\0REQ\0\0\0\x02\0\0\0\x02fn"),
    (c.RESET_ABILITIES, c.REQ, (), b"\0REQ\0\0\0\x03\0\0\0\0"),
    (c.PRE_SLEEP, c.REQ, (), b"\0REQ\0\0\0\x04\0\0\0\0"),
    (5, c.REQ, (), b"\0REQ\0\0\0\x05\0\0\0\0"),
    (c.NOOP, c.RES, (), b"\0RES\0\0\0\x06\0\0\0\0"),
    (c.SUBMIT_JOB, c.REQ, (b"fn", b"u", b"d\0ata"), b"\0REQ\0\0\0\x07\0\0\0\x0afn\0u\0d\0ata"),
    (c.JOB_CREATED, c.RES, (b"H:vm:36",), b"\0RES\0\0\0\x08\0\0\0\x07H:vm:36"),
    (c.GRAB_JOB, c.REQ, (), b"\0REQ\0\0\0\x09\0\0\0\0"),
    (c.NO_JOB, c.RES, (), b"\0RES\0\0\0\x0a\0\0\0\0"),
    (c.JOB_ASSIGN, c.RES, (b"H:1", b"fn", b"x"), b"\0RES\0\0\0\x0b\0\0\0\x08H:1\0fn\0x"),
    (c.WORK_STATUS, c.REQ, (b"H:1", b"1", b"4"), b"\0REQ\0\0\0\x0c\0\0\0\x07H:1\x001\x004"),
    (c.WORK_COMPLETE, c.REQ, (b"H:1", b""), b"\0REQ\0\0\0\x0d\0\0\0\x04H:1\0"),
    (c.WORK_FAIL, c.REQ, (b"H:1",), b"\0REQ\0\0\0\x0e\0\0\0\x03H:1"),
    (c.GET_STATUS, c.REQ, (b"H:1",), b"\0REQ\0\0\0\x0f\0\0\0\x03H:1"),
    (c.ECHO_REQ, c.REQ, (b"a\0b",), b"\0REQ\0\0\0\x10\0\0\0\x03a\0b"),
    (c.ECHO_RES, c.RES, (b"",), b"\0RES\0\0\0\x11\0\0\0\0"),
    (c.SUBMIT_JOB_BG, c.REQ, (b"f", b"", b"d"), b"\0REQ\0\0\0\x12\0\0\0\x04f\0\0d"),
    (
        c.ERROR,
        c.RES,
        (b"QUEUE_ERROR", b"Job queue is full"),
        b"\0RES\0\0\0\x13\0\0\0\x1dQUEUE_ERROR\0Job queue is full",
    ),
    (
        c.STATUS_RES,
        c.RES,
        (b"H:vm:8", b"1", b"1", b"1", b"4"),
        b"\0RES\0\0\0\x14\0\0\0\x0eH:vm:8\x001\x001\x001\x004",
    ),
    (c.SUBMIT_JOB_HIGH, c.REQ, (b"f", b"u", b""), b"\0REQ\0\0\0\x15\0\0\0\x04f\0u\0"),
    (c.SET_CLIENT_ID, c.REQ, (b"my id",), b"\0REQ\0\0\0\x16\0\0\0\x05my id"),
    (c.CAN_DO_TIMEOUT, c.REQ, (b"fn", b"1000"), b"\0REQ\0\0\0\x17\0\0\0\x07fn\x001000"),
    (c.ALL_YOURS, c.REQ, (), b"\0REQ\0\0\0\x18\0\0\0\0"),
    (c.WORK_EXCEPTION, c.REQ, (b"H:1", b"boom"), b"\0REQ\0\0\0\x19\0\0\0\x08H:1\0boom"),
    (c.OPTION_REQ, c.REQ, (b"exceptions",), b"\0REQ\0\0\0\x1a\0\0\0\x0aexceptions"),
    (c.OPTION_RES, c.RES, (b"EXCEPTIONS",), b"\0RES\0\0\0\x1b\0\0\0\x0aEXCEPTIONS"),
    (c.WORK_DATA, c.REQ, (b"H:1", b"d"), b"\0REQ\0\0\0\x1c\0\0\0\x05H:1\0d"),
    (c.WORK_WARNING, c.REQ, (b"H:1", b"w"), b"\0REQ\0\0\0\x1d\0\0\0\x05H:1\0w"),
    (c.GRAB_JOB_UNIQ, c.REQ, (), b"\0REQ\0\0\0\x1e\0\0\0\0"),
    (
        c.JOB_ASSIGN_UNIQ,
        c.RES,
        (b"H:vm:10", b"rev", b"", b"x"),
        b"\0RES\0\0\0\x1f\0\0\0\x0eH:vm:10\0rev\0\0x",
    ),
    (c.SUBMIT_JOB_HIGH_BG, c.REQ, (b"f", b"u", b"d"), b"\0REQ\0\0\0\x20\0\0\0\x05f\0u\0d"),
    (c.SUBMIT_JOB_LOW, c.REQ, (b"f", b"u", b"d"), b"\0REQ\0\0\0\x21\0\0\0\x05f\0u\0d"),
    (c.SUBMIT_JOB_LOW_BG, c.REQ, (b"f", b"u", b"d"), b"\0REQ\0\0\0\x22\0\0\0\x05f\0u\0d"),
    (
        c.SUBMIT_JOB_SCHED,
        c.REQ,
        (b"f", b"u", b"1", b"2", b"3", b"4", b"5", b"d"),
        b"\0REQ\0\0\0\x23\0\0\0\x0ff\0u\x001\x002\x003\x004\x005\0d",
    ),
    (
        c.SUBMIT_JOB_EPOCH,
        c.REQ,
        (b"f", b"u", b"1700000000", b"d"),
        b"\0REQ\0\0\0\x24\0\0\0\x10f\0u\x001700000000\0d",
    ),
    (
        c.SUBMIT_REDUCE_JOB,
        c.REQ,
        (b"f", b"u", b"red", b"", b"d"),
        b"\0REQ\0\0\0\x25\0\0\0\x0af\0u\0red\0\0d",
    ),
    (
        c.SUBMIT_REDUCE_JOB_BACKGROUND,
        c.REQ,
        (b"f", b"u", b"red", b"", b"d"),
        b"\0REQ\0\0\0\x26\0\0\0\x0af\0u\0red\0\0d",
    ),
    (c.GRAB_JOB_ALL, c.REQ, (), b"\0REQ\0\0\0\x27\0\0\0\0"),
    (
        c.JOB_ASSIGN_ALL,
        c.RES,
        (b"H:1", b"f", b"u", b"red", b"d"),
        b"\0RES\0\0\0\x28\0\0\0\x0dH:1\0f\0u\0red\0d",
    ),
    (c.GET_STATUS_UNIQUE, c.REQ, (b"same",), b"\0REQ\0\0\0\x29\0\0\0\x04same"),
    (
        c.STATUS_RES_UNIQUE,
        c.RES,
        (b"same", b"1", b"1", b"1", b"4", b"2"),
        b"\0RES\0\0\0\x2a\0\0\0\x0esame\x001\x001\x001\x004\x002",
    ),
    # geard's extension (docs/protocol.md §1.7)
    (c.JOB_CANCEL, c.RES, (b"H:x:1",), b"\0RES\0\0\0\x40\0\0\0\x05H:x:1"),
]


def test_golden_table_covers_every_type() -> None:
    assert sorted(t for t, *_ in GOLDEN) == [*range(1, 43), c.JOB_CANCEL]
    assert sorted(FIELD_COUNTS) == [*range(1, 43), 64]


@pytest.mark.parametrize(("ptype", "magic", "args", "wire"), GOLDEN, ids=lambda v: str(v)[:20])
def test_encode_golden(ptype: int, magic: bytes, args: tuple[bytes, ...], wire: bytes) -> None:
    assert encode(magic, ptype, args) == wire


@pytest.mark.parametrize(("ptype", "magic", "args", "wire"), GOLDEN, ids=lambda v: str(v)[:20])
def test_decode_golden(ptype: int, magic: bytes, args: tuple[bytes, ...], wire: bytes) -> None:
    (frame,) = Decoder().feed_all(wire)
    assert frame == Frame(magic, ptype, wire[12:])
    assert frame.args() == list(args)
    assert frame.encode() == wire


def test_request_and_response_choose_the_magic() -> None:
    assert request(c.ECHO_REQ, b"x")[:4] == b"\0REQ"
    assert response(c.ECHO_RES, b"x")[:4] == b"\0RES"


def test_last_argument_keeps_nuls() -> None:
    assert split_args(c.WORK_COMPLETE, b"H:1\0a\0b\0") == [b"H:1", b"a\0b\0"]
    # a single-field type takes the whole body, a trailing NUL included (gearmand: part of the name)
    assert split_args(c.CAN_DO, b"fn\0") == [b"fn\0"]


def test_argumentless_types_ignore_their_body() -> None:
    assert split_args(c.GRAB_JOB, b"junk") == []


def test_too_few_separators_is_malformed_not_an_index_error() -> None:
    with pytest.raises(MalformedPacketError, match="SUBMIT_JOB_BG needs 3 arguments, got 2"):
        split_args(c.SUBMIT_JOB_BG, b"fnx\0data")
    with pytest.raises(MalformedPacketError):
        split_args(c.SUBMIT_REDUCE_JOB, b"f\0u\0red\0data")  # PROTOCOL's 3-arg layout


def test_encode_rejects_wrong_argument_count_and_inner_nul() -> None:
    with pytest.raises(InvalidDataError, match="takes 3 arguments"):
        request(c.SUBMIT_JOB, b"fn", b"data")
    with pytest.raises(InvalidDataError, match="contains NUL"):
        request(c.SUBMIT_JOB, b"f\0n", b"", b"d")
    with pytest.raises(UnknownPacketTypeError):
        request(43)
    with pytest.raises(UnknownPacketTypeError):
        request(63)


def test_decoder_any_chunking_mixes_text_and_binary() -> None:
    stream = (
        b"version\n"
        + request(c.ECHO_REQ, b"hello\0world")
        + b"getpid\r\n"
        + request(c.SUBMIT_JOB, b"fn", b"", b"x" * 5000)
        + b"status\r\r\n"
    )
    expected = [
        AdminLine(b"version"),
        Frame(c.REQ, c.ECHO_REQ, b"hello\0world"),
        AdminLine(b"getpid"),
        Frame(c.REQ, c.SUBMIT_JOB, b"fn\0\0" + b"x" * 5000),
        AdminLine(b"status\r"),  # only one \r directly before \n is stripped (2.1)
    ]
    rng = random.Random(7)
    for _ in range(50):
        decoder = Decoder()
        events: list[Frame | AdminLine] = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 700)
            events += decoder.feed_all(stream[pos : pos + step])
            pos += step
        assert events == expected
        assert decoder.buffered == 0


def _packet(ptype: int, body: bytes) -> bytes:
    """A valid packet of ``ptype`` whose last field is ``body`` (earlier fields: NUL-free)."""
    n = FIELD_COUNTS[ptype]
    if n == 0:
        return encode(c.REQ, ptype, ())
    head = [body.replace(b"\0", b"")] * (n - 1)
    return encode(c.REQ, ptype, [*head, body])


@given(
    st.lists(st.tuples(st.sampled_from(sorted(FIELD_COUNTS)), st.binary(max_size=40)), max_size=20),
    st.data(),
)
def test_decoder_round_trips_random_packets(
    packets: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    wire = b"".join(_packet(t, body) for t, body in packets)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    decoder = Decoder()
    frames = decoder.feed_all(wire[:cut]) + decoder.feed_all(wire[cut:])
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.ptype for f in frames if isinstance(f, Frame)] == [t for t, _ in packets]
    assert b"".join(f.encode() for f in frames if isinstance(f, Frame)) == wire
    for frame in frames:
        if isinstance(frame, Frame):
            assert len(frame.args()) == FIELD_COUNTS[frame.ptype]


def test_bad_magic_is_raised_after_earlier_events() -> None:
    decoder = Decoder()
    events = []
    with pytest.raises(BadMagicError, match="bad packet magic"):
        for event in decoder.feed(request(c.ECHO_REQ, b"ok") + b"\0XYZ" + bytes(8)):
            events.append(event)
    assert events == [Frame(c.REQ, c.ECHO_REQ, b"ok")]
    with pytest.raises(MalformedPacketError, match="already failed"):
        decoder.feed_all(b"")


@pytest.mark.parametrize("ptype", [0, 43, 63, 65, 0xFFFFFFFF])
def test_unknown_type_is_rejected(ptype: int) -> None:
    header = b"\0REQ" + ptype.to_bytes(4, "big") + bytes(4)
    with pytest.raises(UnknownPacketTypeError):
        Decoder().feed_all(header)


def test_oversize_packet_is_rejected_from_the_header_alone() -> None:
    decoder = Decoder(max_packet_size=1024)
    header = b"\0REQ" + c.SUBMIT_JOB.to_bytes(4, "big") + (1025).to_bytes(4, "big")
    with pytest.raises(PacketTooLargeError, match="exceeds the 1024-byte limit"):
        decoder.feed_all(header)


def test_oversize_admin_line_is_rejected() -> None:
    decoder = Decoder(max_line_size=16)
    assert decoder.feed_all(b"x" * 16) == []
    with pytest.raises(PacketTooLargeError):
        decoder.feed_all(b"x")


def test_the_admin_line_limit_does_not_depend_on_the_chunking() -> None:
    # Found by the fuzzer (tests/fuzz): a too-long line that arrived whole with its newline
    # was accepted, the same line in two pieces was refused.
    line = b"y" * 17 + b"\n"
    for chunks in ([line], [line[:10], line[10:]]):
        decoder = Decoder(max_line_size=16)
        with pytest.raises(PacketTooLargeError):
            for chunk in chunks:
                decoder.feed_all(chunk)
    # At the limit (the bytes before the newline, a "\r" included) it passes both ways.
    for chunks in ([b"y" * 15 + b"\r\n"], [b"y" * 15 + b"\r", b"\n"]):
        decoder = Decoder(max_line_size=16)
        assert [e for chunk in chunks for e in decoder.feed_all(chunk)] == [AdminLine(b"y" * 15)]


def test_text_disabled_rejects_lines() -> None:
    with pytest.raises(BadMagicError):
        Decoder(text=False).feed_all(b"status\n")


def test_partial_packet_waits_for_more() -> None:
    decoder = Decoder()
    wire = request(c.WORK_DATA, b"H:1", b"abc")
    assert decoder.feed_all(wire[:11]) == []
    assert decoder.feed_all(wire[11:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert decoder.feed_all(wire[-1:]) == [Frame(c.REQ, c.WORK_DATA, b"H:1\0abc")]


def test_decoder_can_frame_types_it_does_not_know() -> None:
    """For servers with packet types of their own (gear.Server.handlePacket overrides)."""
    custom = b"\x00REQ" + (100).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"a\x00b"
    events = Decoder(unknown_types=True).feed_all(custom + request(c.ECHO_REQ, b"x"))
    assert events == [Frame(c.REQ, 100, b"a\x00b"), Frame(c.REQ, c.ECHO_REQ, b"x")]
    with pytest.raises(UnknownPacketTypeError):
        Decoder().feed_all(custom)
