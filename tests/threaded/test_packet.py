"""gear.Packet: validation, equality, encoding, arguments and handle lookup."""

from __future__ import annotations

import pytest

import gear
from gear import constants
from gear.protocol.packets import Decoder


def test_rejects_bad_code_and_data() -> None:
    with pytest.raises(TypeError):
        gear.Packet("\x00REQ", constants.NOOP, b"")  # type: ignore[arg-type]
    with pytest.raises(gear.InvalidDataError):
        gear.Packet(b"XREQ", constants.NOOP, b"")
    with pytest.raises(TypeError):
        gear.Packet(constants.REQ, constants.NOOP, "text")  # type: ignore[arg-type]


def test_equality_ignores_connection_and_is_unhashable() -> None:
    a = gear.Packet(constants.REQ, constants.ECHO_REQ, b"x", connection=object())
    b = gear.Packet(constants.REQ, constants.ECHO_REQ, b"x")
    assert a == b
    assert not a.__ne__(b)
    assert a != gear.Packet(constants.RES, constants.ECHO_REQ, b"x")
    assert a != gear.Packet(constants.REQ, constants.ECHO_RES, b"x")
    assert a != "not a packet"
    with pytest.raises(TypeError):
        hash(a)


def test_to_binary_round_trips_through_the_core_decoder() -> None:
    p = gear.Packet(constants.RES, constants.WORK_COMPLETE, b"H:1\x00result\x00with nul")
    wire = p.toBinary()
    assert wire[:12] == b"\x00RES\x00\x00\x00\x0d\x00\x00\x00\x13"
    (frame,) = Decoder().feed_all(wire)
    assert frame.ptype == constants.WORK_COMPLETE
    assert frame.body == p.data


def test_get_argument_and_last() -> None:
    p = gear.Packet(constants.RES, constants.JOB_ASSIGN_UNIQ, b"H:1\x00fn\x00u\x00a\x00b")
    assert p.getArgument(0) == b"H:1"
    assert p.getArgument(2) == b"u"
    assert p.getArgument(3, True) == b"a\x00b"


def test_repr_names_type_and_handle() -> None:
    p = gear.Packet(constants.RES, constants.JOB_CREATED, b"H:x:9")
    assert "type: JOB_CREATED" in repr(p)
    assert "H:x:9" in repr(p)
    assert "UNKNOWN" in repr(gear.Packet(constants.RES, 99, b""))


class _Conn:
    def __init__(self) -> None:
        self.related_jobs: dict[bytes, object] = {}


def test_get_job_by_handle_with_or_without_trailing_nul() -> None:
    conn = _Conn()
    job = gear.Job(b"fn", b"")
    conn.related_jobs[b"H:1"] = job
    assert gear.Packet(constants.RES, constants.WORK_FAIL, b"H:1", conn).getJob() is job
    assert gear.Packet(constants.RES, constants.WORK_FAIL, b"H:1\x00", conn).getJob() is job
    with pytest.raises(gear.UnknownJobError):
        gear.Packet(constants.RES, constants.WORK_FAIL, b"H:2", conn).getJob()
