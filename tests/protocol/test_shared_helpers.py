"""Helpers both client front-ends share (gear.protocol.messages): admin ``OK``/``ERR`` and
``show unique jobs`` parsing, CRLF admin lines, job assignments, WORK_FAIL handles, the unique
limit and the coalescing key."""

from __future__ import annotations

import pytest

from gear import constants as c
from gear.errors import InvalidDataError
from gear.protocol import admin as text
from gear.protocol import messages as m
from gear.protocol.packets import AdminLine, Decoder, Frame, response

# --- admin replies ----------------------------------------------------------------------------


def _reply(command: bytes, wire: bytes) -> text.AdminReply:
    """Feed ``wire`` (as a server sends it) through the Decoder into an AdminReply."""
    reply = text.AdminReply(command)
    done = False
    for event in Decoder().feed(wire):
        assert isinstance(event, AdminLine) and not done
        done = reply.add(event.line)
    assert done
    return reply


def test_show_unique_jobs_keeps_empty_uniques() -> None:
    # 2.2: one unique per line; a job without a unique is an empty line.
    reply = _reply(b"show unique jobs", b"u-1\n\nbatch 7\r\n.\n")
    assert text.parse_show_unique_jobs(reply.lines) == [b"u-1", b"", b"batch 7"]
    assert text.parse_show_unique_jobs(_reply(b"show unique jobs", b".\n").lines) == []


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"ERR UNKNOWN_JOB", (b"UNKNOWN_JOB", b"")),
        (
            b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments",
            (b"INVALID_ARGUMENTS", b"An+incomplete+set+of+arguments"),
        ),
        (b"ERR there are still connected workers", (b"there", b"are still connected workers")),
        (b"ERR", (b"", b"")),
        (b"OK", None),
        (b"OK ERR", None),
        (b"fn\t1\t0\t1", None),
    ],
)
def test_parse_admin_error(line: bytes, parsed: tuple[bytes, bytes] | None) -> None:
    assert text.parse_admin_error(line) == parsed


def test_admin_reply_failure_only_for_a_refusal() -> None:
    refused = _reply(b"cancel job H:x:1", b"ERR UNKNOWN_JOB\r\n")
    assert refused.failure == (b"UNKNOWN_JOB", b"")
    # a list command refused with one ERR line (e.g. gearmand's `show` alone)
    listed = _reply(b"show unique jobs", b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n")
    assert listed.failure == (b"UNKNOWN_COMMAND", b"Unknown+server+commandshow")
    assert _reply(b"cancel job H:x:1", b"OK\r\n").failure is None
    assert _reply(b"status", b"fn\t1\t0\t1\n.\n").failure is None


@pytest.mark.parametrize(
    ("line", "value"),
    [(b"OK", b""), (b"OK 1.1.20+ds", b"1.1.20+ds"), (b"OK 4242", b"4242"), (b"OK  x", b" x")],
)
def test_parse_admin_ok(line: bytes, value: bytes) -> None:
    assert text.parse_admin_ok(line) == value


@pytest.mark.parametrize("line", [b"ERR UNKNOWN_JOB", b"OKAY", b"", b"ok"])
def test_parse_admin_ok_refuses_other_lines(line: bytes) -> None:
    with pytest.raises(InvalidDataError, match="expected an OK reply"):
        text.parse_admin_ok(line)


def test_admin_command_crlf() -> None:
    # 2.2: with a bare LF gearmand's `create function fnB` creates "fn"; gearadmin sends CRLF.
    line = text.admin_command("create function", b"fnB", crlf=True)
    assert line == b"create function fnB\r\n"
    assert text.admin_command("create function", b"fnB") == b"create function fnB\n"
    # the server side reads both forms as the same line (2.1)
    assert Decoder().feed_all(line) == [AdminLine(b"create function fnB")]
    with pytest.raises(InvalidDataError):
        text.admin_command("create function", "a\r", crlf=True)


# --- worker: job assignments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ptype", "fields", "expected"),
    [
        (
            c.JOB_ASSIGN,
            (b"H:1", b"fn", b"a\x00b"),
            m.JobAssignment(b"H:1", b"fn", b"", b"", b"a\x00b"),
        ),
        (
            c.JOB_ASSIGN_UNIQ,
            (b"H:2", b"fn", b"u", b"data"),
            m.JobAssignment(b"H:2", b"fn", b"u", b"", b"data"),
        ),
        (
            c.JOB_ASSIGN_ALL,
            (b"H:3", b"fn", b"u", b"red", b""),
            m.JobAssignment(b"H:3", b"fn", b"u", b"red", b""),
        ),
    ],
)
def test_parse_job_assign_from_the_wire(
    ptype: int, fields: tuple[bytes, ...], expected: m.JobAssignment
) -> None:
    (frame,) = Decoder().feed_all(response(ptype, *fields))
    assert isinstance(frame, Frame) and ptype in m.ASSIGN_TYPES
    job = m.parse_job_assign(frame.ptype, frame.args())
    assert job == expected
    assert (job.handle, job.function, job.data) == (expected[0], expected[1], expected[4])


@pytest.mark.parametrize(
    ("ptype", "args"),
    [
        (c.JOB_ASSIGN, [b"H:1", b"fn"]),
        (c.JOB_ASSIGN_UNIQ, [b"H:1", b"fn", b"data"]),
        (c.JOB_ASSIGN_ALL, [b"H:1", b"fn", b"u", b"data"]),
        (c.JOB_CREATED, [b"H:1"]),
    ],
)
def test_parse_job_assign_refuses_the_wrong_shape(ptype: int, args: list[bytes]) -> None:
    with pytest.raises(InvalidDataError, match="not a job assignment"):
        m.parse_job_assign(ptype, args)
    assert c.JOB_CREATED not in m.ASSIGN_TYPES


# --- client: WORK_* handles, uniques, coalescing ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "handle"),
    [
        (b"H:vm:9", b"H:vm:9"),  # WORK_FAIL as the protocol defines it
        (b"H:vm:9\x00", b"H:vm:9"),  # gearmand's converted WORK_EXCEPTION (1.5)
        (b"H:vm:9\x00result\x00with NULs", b"H:vm:9"),  # WORK_COMPLETE
        (b"H:vm:9\x001\x002", b"H:vm:9"),  # WORK_STATUS
    ],
)
def test_work_handle(body: bytes, handle: bytes) -> None:
    assert m.work_handle(body) == handle


def test_check_unique_limit() -> None:
    longest = b"u" * m.MAX_UNIQUE_SIZE
    assert m.MAX_UNIQUE_SIZE == 63
    assert m.check_unique(longest) is longest
    assert m.check_unique(b"") == b""
    # 64 bytes: gearmand truncates it and never coalesces it; longer: ARGUMENT_TOO_LARGE (1.2)
    for size in (64, 65, 1000):
        with pytest.raises(InvalidDataError, match=r"unique is \d+ bytes; at most 63"):
            m.check_unique(b"u" * size)


def test_coalescing_key() -> None:
    # 3.2: same function and unique coalesce whatever the workload ...
    assert m.coalescing_key(b"fn", b"u", b"a") == m.coalescing_key(b"fn", b"u", b"b")
    assert m.coalescing_key(b"fn", b"u", b"a") != m.coalescing_key(b"other", b"u", b"a")
    # ... except the unique "-", which coalesces on the workload
    assert m.coalescing_key(b"fn", b"-", b"a") != m.coalescing_key(b"fn", b"-", b"b")
    assert m.coalescing_key(b"fn", b"-", b"a") == m.coalescing_key(b"fn", b"-", b"a")
