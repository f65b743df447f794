"""Client/worker request building and reply parsing (gear.protocol.messages)."""

from __future__ import annotations

import pytest

from gear import constants as c
from gear.errors import ConfigurationError, InvalidDataError
from gear.protocol import admin as text
from gear.protocol import messages as m
from gear.protocol.packets import Decoder, Frame


@pytest.mark.parametrize(
    ("background", "priority", "ptype"),
    [
        (False, m.NORMAL, c.SUBMIT_JOB),
        (False, m.LOW, c.SUBMIT_JOB_LOW),
        (False, m.HIGH, c.SUBMIT_JOB_HIGH),
        (True, m.NORMAL, c.SUBMIT_JOB_BG),
        (True, m.LOW, c.SUBMIT_JOB_LOW_BG),
        (True, m.HIGH, c.SUBMIT_JOB_HIGH_BG),
    ],
)
def test_submit_type(background: bool, priority: int, ptype: int) -> None:
    assert m.submit_type(background, priority) == ptype


def test_priorities_are_gears_precedence_values() -> None:
    import gear

    assert (m.NORMAL, m.LOW, m.HIGH) == (
        gear.PRECEDENCE_NORMAL,
        gear.PRECEDENCE_LOW,
        gear.PRECEDENCE_HIGH,
    )


def test_invalid_precedence() -> None:
    with pytest.raises(ConfigurationError, match="Invalid precedence value"):
        m.submit_type(False, 7)


def test_epoch_submission_layout() -> None:
    wire = m.submit_job(b"fn", b"u1", b"data", background=True, when=1700000000)
    (frame,) = Decoder().feed_all(wire)
    assert isinstance(frame, Frame)
    assert frame.ptype == c.SUBMIT_JOB_EPOCH
    assert frame.args() == [b"fn", b"u1", b"1700000000", b"data"]


@pytest.mark.parametrize(("background", "priority"), [(False, m.NORMAL), (True, m.HIGH)])
def test_epoch_refuses_what_the_protocol_cannot_express(background: bool, priority: int) -> None:
    with pytest.raises(ConfigurationError):
        m.submit_job(b"fn", b"", b"", background=background, priority=priority, when=1)


def test_empty_unique_keeps_both_separators() -> None:
    # docs/protocol.md §1.1: a client must emit every separator, "fn\0\0payload" for an empty unique
    assert m.submit_job(b"fn", b"", b"payload")[12:] == b"fn\0\0payload"


@pytest.mark.parametrize(
    ("timeout", "wire"), [(30, b"30000"), (1.5, b"1500"), (b"2", b"2000"), ("0.0004", b"1")]
)
def test_can_do_timeout_is_sent_in_milliseconds(timeout: object, wire: bytes) -> None:
    (frame,) = Decoder().feed_all(m.can_do(b"fn", timeout))  # type: ignore[arg-type]
    assert isinstance(frame, Frame)
    assert frame.ptype == c.CAN_DO_TIMEOUT
    assert frame.args() == [b"fn", wire]


def test_can_do_without_timeout() -> None:
    assert m.can_do(b"fn") == b"\0REQ\0\0\0\x01\0\0\0\x02fn"
    with pytest.raises(ConfigurationError):
        m.timeout_ms(-1)


def test_parse_status_res_and_unique() -> None:
    status = m.parse_status_res([b"H:vm:8", b"1", b"1", b"1", b"4"])
    assert (status.known, status.running, status.numerator, status.denominator) == (
        True,
        True,
        1,
        4,
    )
    assert status.fraction_complete == 0.25
    assert status.client_count is None
    unknown = m.parse_status_res([b"nouniq", b"0", b"0", b"0", b"0", b"0"])
    assert not unknown.known and unknown.client_count == 0 and unknown.fraction_complete is None
    with pytest.raises(InvalidDataError):
        m.parse_status_res([b"x"])


def test_admin_command_encoding() -> None:
    assert text.admin_command("cancel job", b"H:x:1") == b"cancel job H:x:1\n"
    with pytest.raises(InvalidDataError):
        text.admin_command("maxqueue", "fn\nshutdown")


@pytest.mark.parametrize(
    ("command", "multiline"),
    [
        (b"status", True),
        (b"STATUS extra", True),
        (b"workers", True),
        (b"show jobs", True),
        (b"show unique jobs", True),
        (b"prioritystatus", True),
        (b"acl list", True),
        (b"show", False),
        (b"show foo", False),
        (b"version", False),
        (b"cancel job H:1", False),
        (b"maxqueue fn 1", False),
    ],
)
def test_is_multiline(command: bytes, multiline: bool) -> None:
    assert text.is_multiline(command) is multiline


def test_admin_reply_collects_until_dot() -> None:
    reply = text.AdminReply(b"status\n")
    assert not reply.add(b"fn\t2\t1\t1")
    assert not reply.add(b"other\t0\t0\t3")
    assert reply.add(b".")
    assert reply.error is None
    assert text.parse_status(reply.lines) == [
        text.FunctionStatus(b"fn", 2, 1, 1),
        text.FunctionStatus(b"other", 0, 0, 3),
    ]
    assert text.parse_status(reply.lines)[0].queued == 1


def test_admin_reply_error_on_a_list_command_is_one_line() -> None:
    reply = text.AdminReply(b"acl list")
    assert reply.add(b"ERR ACL_DISABLED")
    assert reply.error == b"ACL_DISABLED"


def test_admin_reply_single_line() -> None:
    reply = text.AdminReply(b"version")
    assert reply.add(b"OK 1.1.20+ds")
    assert reply.lines == [b"OK 1.1.20+ds"] and reply.error is None


def test_parse_workers_with_spaces_in_client_id_and_no_functions() -> None:
    lines = [b"39 127.0.0.1 my worker id with spaces : idfn other", b"38 127.0.0.1 - :"]
    assert text.parse_workers(lines) == [
        text.WorkerInfo(39, b"127.0.0.1", b"my worker id with spaces", (b"idfn", b"other")),
        text.WorkerInfo(38, b"127.0.0.1", b"-", ()),
    ]


def test_parse_prioritystatus_and_show_jobs() -> None:
    expected = [text.PriorityStatus(b"pq", 1, 2, 3, 0)]
    assert text.parse_prioritystatus([b"pq\t1\t2\t3\t0"]) == expected
    assert text.parse_show_jobs([b"H:vm:7\t0\t0\t1"]) == [text.JobInfo(b"H:vm:7", 0, False, True)]


def test_function_names_with_tabs_keep_the_counts_right() -> None:
    # gearmand allows tabs in function names (1.2); the counts are the last three fields
    assert text.parse_status([b"a\tb\t1\t0\t2"]) == [text.FunctionStatus(b"a\tb", 1, 0, 2)]


def test_priority_is_gearmands_order_and_converts_gears_precedence() -> None:
    from gear.protocol.messages import HIGH, LOW, NORMAL, Priority

    assert sorted(Priority) == [Priority.HIGH, Priority.NORMAL, Priority.LOW]
    assert [int(p) for p in Priority] == [0, 1, 2]
    pairs = ((NORMAL, Priority.NORMAL), (LOW, Priority.LOW), (HIGH, Priority.HIGH))
    for precedence, priority in pairs:
        assert Priority.from_precedence(precedence) is priority
        assert priority.to_precedence() == precedence
    with pytest.raises(ConfigurationError):
        Priority.from_precedence(7)
