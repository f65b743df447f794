"""Admin commands against a real gearmand: byte-identical replies for the same line sequence."""

from __future__ import annotations

import pytest

from gear import constants as c
from gear.protocol.packets import request
from tests.server.helpers import Mirror, no_fd, sorted_lines

pytestmark = pytest.mark.interop


@pytest.fixture
def mirror(gearmand: object) -> Mirror:
    m = Mirror(gearmand.address)  # type: ignore[attr-defined]
    yield m  # type: ignore[misc]
    m.close()


LINES = [
    b"status \n", b"status  x\n", b"show unique\n", b"SHOW JOBS\n", b"show JOBS\n",
    b"show unique JOBS\n", b"show jobs x\n", b"show unique jobs x\n", b"create foo bar\r\n",
    b"create function\r\n", b"create function a b\r\n", b"drop foo bar\r\n",
    b"drop function\r\n", b"drop function nope\r\n", b"cancel JOB H:x:1\r\n",
    b"cancel job H:x:1 extra\r\n", b"maxqueue nofn 3\r\n", b"a b c d e\n", b"\n", b" \n",
    b"  status\n", b"version\t\n", b"verbose\n", b"Version\n", b"status a b c d\n", b"show\n",
    b"cancel\n", b"cancel job\n", b"cancel x y\n", b"create\n", b"maxqueue\n",
    b"prioritystatus\n", b"x\r\r\n", b"foo bar\r\n",
    # A trailing space is an empty last token (docs/protocol.md §2.1).
    b"cancel job \r\n", b"cancel job  \r\n", b"cancel  job H:x:1\r\n", b"cancel job H:x:1 \r\n",
    b"show jobs \n", b"show unique jobs \n", b"create function x \r\n", b"maxqueue  \r\n",
    b"drop function nope \r\n", b"a b c d \n",
]


def test_line_parsing_matches(mirror: Mirror) -> None:
    mirror.open("a")
    for line in LINES:
        mirror.step("a", line)


def test_lists_match(mirror: Mirror) -> None:
    m = mirror
    m.open("w")
    m.open("c")
    m.open("a")
    m.step("w", request(c.SET_CLIENT_ID, b"my worker") + request(c.CAN_DO, b"ff")
           + request(c.CAN_DO, b"ff") + request(c.CAN_DO, b"gg"))
    m.step("a", b"CREATE FUNCTION Fx\r\n")
    m.step("c", request(c.SUBMIT_JOB_HIGH_BG, b"ff", b"u1", b"a")
           + request(c.SUBMIT_JOB, b"ff", b"", b"b")
           + request(c.SUBMIT_JOB_LOW_BG, b"ff", b"u3", b"c")
           + request(c.SUBMIT_JOB_BG, b"hh", b"u4", b"d"))
    m.step("w", request(c.GRAB_JOB))
    for line in (b"status\n", b"prioritystatus\n", b"show jobs\n", b"show unique jobs\n"):
        m.step("a", line, normalize=sorted_lines)
    m.step("a", b"workers\n", normalize=no_fd)
    m.step("a", b"drop function ff\r\n")  # a worker is registered
    m.step("a", b"drop FUNCTION fX\r\n")
    m.step("a", b"status\n", normalize=sorted_lines)


def test_the_empty_function_name_from_a_trailing_space(mirror: Mirror) -> None:
    mirror.open("a")
    for line in (b"create function \r\n", b"create function  x\r\n"):
        mirror.step("a", line)
    mirror.step("a", b"status\n", normalize=sorted_lines)
    mirror.step("a", b"drop function \r\n")
    mirror.step("a", b"status\n", normalize=sorted_lines)


def test_maxqueue_matches(mirror: Mirror) -> None:
    m = mirror
    m.open("a")
    m.open("c")
    m.step("a", b"create function fq\r\n")
    m.step("a", b"maxqueue fq 10 3 100\r\n")
    for i in range(3):
        m.step("c", request(c.SUBMIT_JOB_BG, b"fq", b"u%d" % i, b"d"))
    m.step("c", request(c.SUBMIT_JOB_BG, b"fq", b"", b"refused"))
    m.step("c", request(c.SUBMIT_JOB_HIGH_BG, b"fq", b"", b"accepted"))
    m.step("c", request(c.SUBMIT_JOB_BG, b"fq", b"u1", b"coalesced"))
    m.step("a", b"maxqueue fq\r\n")
    m.step("c", request(c.SUBMIT_JOB_BG, b"fq", b"", b"unlimited again"))


def test_cancel_queued_job_matches(mirror: Mirror) -> None:
    m = mirror
    m.open("c")
    m.open("a")
    m.step("c", request(c.SUBMIT_JOB, b"f", b"", b"d"))
    h = m.net.broker.handle_prefix + b":1"
    m.step("a", b"cancel job " + h + b"\r\n")  # WORK_FAIL (no NUL) reaches c
    m.step("a", b"cancel job H:nope:1\r\n")


def test_six_tokens_close(mirror: Mirror) -> None:
    mirror.open("a")
    mirror.step("a", b"status\n")
    mirror.closes("a", b"status a b c d e\nstatus\n")
