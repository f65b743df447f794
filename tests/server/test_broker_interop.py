"""The broker against a real gearmand: the same bytes in, the same bytes out.

Each scenario runs step by step on raw sockets to gearmand and on an in-process broker with the
same handle prefix. After every step each connection is synchronised with an ECHO marker (no
sleeps): everything received before the marker is that step's output, compared byte for byte
(the fd column of ``workers``, and line order where gearmand uses hash order, are normalised).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from gear import constants as c
from gear.protocol.packets import REQ, RES, encode, request
from tests.server.helpers import Mirror, no_fd

pytestmark = pytest.mark.interop

@pytest.fixture
def mirror(gearmand: object) -> Mirror:
    m = Mirror(gearmand.address)  # type: ignore[attr-defined]
    yield m  # type: ignore[misc]
    m.close()


def test_submit_grab_complete_and_status(mirror: Mirror) -> None:
    m = mirror
    m.open("w")
    m.open("c")
    m.open("c2")
    m.step("w", request(c.CAN_DO, b"rev") + request(c.GRAB_JOB_ALL) + request(c.PRE_SLEEP))
    m.step("c", request(c.SUBMIT_JOB, b"rev", b"uuid-1", b"hello"))  # NOOP to w
    m.step("c2", request(c.SUBMIT_JOB, b"rev", b"uuid-1", b"again"))  # coalesced
    m.step("c", request(c.GET_STATUS, m.net.broker.handle_prefix + b":1")
           + request(c.GET_STATUS_UNIQUE, b"uuid-1") + request(c.GET_STATUS, b"H:nope:1")
           + request(c.GET_STATUS_UNIQUE, b"nouniq"))
    m.step("w", request(c.GRAB_JOB_ALL))
    h = m.net.broker.handle_prefix + b":1"
    m.step("w", request(c.WORK_STATUS, h, b"1", b"4") + request(c.WORK_DATA, h, b"part"))
    m.step("c", request(c.GET_STATUS, h) + request(c.GET_STATUS_UNIQUE, b"uuid-1"))
    m.step("w", request(c.WORK_COMPLETE, h, b"olleh") + request(c.GRAB_JOB_UNIQ))
    m.step("c", request(c.GET_STATUS, h))


def test_priorities_within_a_function(mirror: Mirror) -> None:
    m = mirror
    m.open("c")
    m.open("w")
    for data, ptype in ((b"low1", c.SUBMIT_JOB_LOW_BG), (b"norm1", c.SUBMIT_JOB_BG),
                        (b"high1", c.SUBMIT_JOB_HIGH_BG), (b"norm2", c.SUBMIT_JOB_BG),
                        (b"high2", c.SUBMIT_JOB_HIGH_BG)):
        m.step("c", request(ptype, b"f", b"", data))
    m.step("w", request(c.CAN_DO, b"f"))
    for _ in range(6):
        m.step("w", request(c.GRAB_JOB))


def test_error_packets(mirror: Mirror) -> None:
    m = mirror
    m.open("p")
    m.step("p", encode(RES, c.ECHO_REQ, [b"x"]))  # RES magic: ERROR, stays open
    for ptype in (c.NOOP, c.JOB_CREATED, c.NO_JOB, c.ECHO_RES, c.OPTION_RES, 5, c.ALL_YOURS):
        m.step("p", struct.pack("!4sII", REQ, ptype, 0))
    m.step("p", request(c.SUBMIT_JOB_SCHED, b"f", b"u", b"1", b"2", b"3", b"4", b"5", b"d"))
    m.step("p", request(c.OPTION_REQ, b"Exceptions") + request(c.OPTION_REQ, b"foo"))
    m.step("p", request(c.ECHO_REQ, b"hello\x00world") + request(c.ECHO_REQ, b""))
    m.step("p", request(c.WORK_FAIL, b"H:x:1") + request(c.WORK_COMPLETE, b"H:x:1", b"r")
           + request(c.WORK_DATA, b"H:x:1", b"r") + request(c.WORK_WARNING, b"H:x:1", b"r")
           + request(c.WORK_EXCEPTION, b"H:x:1", b"r")
           + request(c.WORK_STATUS, b"H:x:1", b"1", b"2"))
    m.step("p", request(c.WORK_FAIL, b"H" * 64))
    m.step("p", request(c.SUBMIT_JOB_BG, b"f", b"u" * 65, b"d"))
    m.step("p", request(c.SET_CLIENT_ID, b"my id") + b"workers\n", normalize=no_fd)


def test_exceptions_to_a_client_with_the_option(mirror: Mirror) -> None:
    m = mirror
    m.open("c")
    m.open("w")
    m.step("c", request(c.OPTION_REQ, b"exceptions"))
    m.step("c", request(c.SUBMIT_JOB, b"f", b"u", b"d"))
    m.step("w", request(c.CAN_DO, b"f") + request(c.GRAB_JOB_UNIQ))
    h = m.net.broker.handle_prefix + b":1"
    m.step("w", request(c.WORK_EXCEPTION, h, b"boom") + request(c.WORK_FAIL, h))


def test_worker_death_requeues_and_job_retries(gearmand_factory: Callable[..., object]) -> None:
    server = gearmand_factory("--job-retries=2")
    m = Mirror(server.address, job_retries=2)  # type: ignore[attr-defined]
    try:
        m.open("c")
        m.step("c", request(c.SUBMIT_JOB, b"f", b"", b"d"))
        for attempt in range(2):
            name = f"w{attempt}"
            m.open(name)
            m.step(name, request(c.CAN_DO, b"f") + request(c.GRAB_JOB))
            m.step("c", b"show jobs\n")
            m.socks.pop(name).close()
            m.net.broker.disconnect(m.peers.pop(name))
        m.step("c", b"status\n")  # the client got WORK_FAIL (no NUL) before this reply
    finally:
        m.close()


def test_bad_input_closes(mirror: Mirror) -> None:
    m = mirror
    for i, data in enumerate((
        b"\x00REX" + (16).to_bytes(4, "big") + (0).to_bytes(4, "big"),
        b"\x00REQ" + (43).to_bytes(4, "big") + (0).to_bytes(4, "big"),
        request(c.CAN_DO_TIMEOUT, b"f", b"1" * 21),
        request(c.GET_STATUS, b"H" * 64),
    )):
        name = f"p{i}"
        m.open(name)
        m.step(name, request(c.ECHO_REQ, b"before"))
        # gearmand also drops replies to packets read in the same chunk as the bad one; we send
        # those first (a kinder close), so the bad packet travels alone here.
        m.closes(name, data + request(c.ECHO_REQ, b"after"))


@pytest.mark.parametrize("wakeup", [0, 1])
def test_wakeups(gearmand_factory: Callable[..., object], wakeup: int) -> None:
    server = gearmand_factory(f"--worker-wakeup={wakeup}")
    m = Mirror(server.address, worker_wakeup=wakeup)  # type: ignore[attr-defined]
    try:
        m.open("c")
        for name in ("a", "b", "z"):
            m.open(name)
            m.step(name, request(c.CAN_DO, b"f") + request(c.GRAB_JOB_UNIQ)
                   + request(c.PRE_SLEEP))
        m.step("c", request(c.SUBMIT_JOB_BG, b"f", b"", b"one"))  # NOOPs (every sleeper, or a)
        m.step("c", request(c.SUBMIT_JOB_BG, b"f", b"", b"two"))  # nobody twice (or b)
        m.step("a", request(c.GRAB_JOB_UNIQ) + request(c.PRE_SLEEP))  # work left: NOOP at once
    finally:
        m.close()


def test_reduce_epoch_and_cant_do(mirror: Mirror) -> None:
    m = mirror
    m.open("c")
    m.open("w")
    m.step("c", request(c.SUBMIT_REDUCE_JOB, b"f", b"r1", b"reducer", b"", b"map me"))
    m.step("c", request(c.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"r2", b"red", b"agg", b"bg"))
    m.step("c", request(c.SUBMIT_JOB_EPOCH, b"f", b"e1", b"12", b"past epoch"))
    m.step("c", request(c.SUBMIT_JOB_EPOCH, b"f", b"e2", b"abc", b"junk epoch"))
    m.step("w", request(c.CAN_DO, b"f") + request(c.GRAB_JOB_ALL) + request(c.GRAB_JOB_UNIQ)
           + request(c.GRAB_JOB_ALL) + request(c.GRAB_JOB) + request(c.GRAB_JOB))
    prefix = m.net.broker.handle_prefix
    for n in (1, 3, 4):
        m.step("w", request(c.WORK_COMPLETE, prefix + b":%d" % n, b"done"))
    # The requeued job is alone, so front (ours) and tail (gearmand) are the same place.
    m.step("w", request(c.CANT_DO, b"f"))
    m.step("w", request(c.WORK_COMPLETE, prefix + b":2", b"late"))  # JOB_NOT_FOUND
    m.step("c", b"show jobs\n")
    m.step("w", request(c.CAN_DO, b"f") + request(c.GRAB_JOB_ALL) + request(c.GRAB_JOB))
