"""Unit tests of gear.server.admin: exact reply bytes for every command."""

from __future__ import annotations

import os

import pytest

from gear import constants as c
from gear.acl import ACL
from tests.server.helpers import Net, res

UNKNOWN = b"ERR UNKNOWN_COMMAND Unknown+server+command"
INCOMPLETE = b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"


@pytest.fixture
def net() -> Net:
    return Net(version=b"1.1.20+ds")


def test_empty_server_lists(net: Net) -> None:
    adm = net.connect()
    for line in (b"status\n", b"prioritystatus\r\n", b"show jobs\n", b"show unique jobs\n"):
        assert net.admin(adm, line) == b".\n"
    assert net.admin(adm, b"workers\n") == b"%d 127.0.0.1 - :\n.\n" % adm.fd


def test_simple_values(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"version\n") == b"OK 1.1.20+ds\n"
    assert net.admin(adm, b"VERBOSE\r\n") == b"OK ERROR\n"
    assert net.admin(adm, b"getpid extra\n") == b"OK %d\n" % os.getpid()


def test_status_prioritystatus_show_jobs(net: Net) -> None:
    adm, cl = net.connect(), net.connect()
    w = net.worker(b"f", b"f", b"g")
    net.submit(cl, b"f", b"u1", b"a", c.SUBMIT_JOB_HIGH_BG)
    net.submit(cl, b"f", b"", b"b", c.SUBMIT_JOB)
    net.submit(cl, b"f", b"u3", b"c", c.SUBMIT_JOB_LOW_BG)
    net.submit(cl, b"h", b"u4", b"d", c.SUBMIT_JOB_BG)
    net.grab(w)  # takes the HIGH job of f
    assert net.admin(adm, b"status\n") == b"f\t3\t1\t2\ng\t0\t0\t1\nh\t1\t0\t0\n.\n"
    assert net.admin(adm, b"prioritystatus\n") == (
        b"f\t0\t1\t1\t2\ng\t0\t0\t0\t1\nh\t0\t1\t0\t0\n.\n")
    assert net.admin(adm, b"show jobs\n") == (
        b"H:t:1\t0\t0\t1\nH:t:2\t0\t0\t0\nH:t:3\t0\t0\t1\nH:t:4\t0\t0\t1\n.\n")
    assert net.admin(adm, b"show unique jobs\n") == b"u1\n\nu3\nu4\n.\n"
    assert net.admin(adm, b"SHOW UNIQUE JOBS\n") == b"u1\n\nu3\nu4\n.\n"


def test_workers_lists_every_connection_newest_first(net: Net) -> None:
    w = net.worker(b"ff", b"ff", b"gg")
    net.send(w, c.SET_CLIENT_ID, b"my worker id")
    adm = net.connect()
    assert net.admin(adm, b"workers\n") == (
        b"%d 127.0.0.1 - :\n%d 127.0.0.1 my worker id : gg ff ff\n.\n" % (adm.fd, w.fd))
    net.broker.disconnect(w)
    assert net.admin(adm, b"workers\n") == b"%d 127.0.0.1 - :\n.\n" % adm.fd


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"foo bar\n", UNKNOWN + b"foo\r\n"),
        (b"\n", UNKNOWN + b"\r\n"),
        (b" \n", UNKNOWN + b"\r\n"),
        (b"  status\n", UNKNOWN + b"\r\n"),
        (b"version\t\n", UNKNOWN + b"version\t\r\n"),
        (b"x\r\r\n", UNKNOWN + b"x\r\r\n"),
        (b"a b c d e\n", UNKNOWN + b"a\r\n"),
        (b"Status a b c d\n", b".\n"),
        (b"status \n", b".\n"),
        (b"show\n", UNKNOWN + b"show\r\n"),
        (b"show foo\n", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"show unique\n", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"show jobs x\n", b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"),
        (b"cancel\n", UNKNOWN + b"cancel\r\n"),
        (b"cancel job\n", UNKNOWN + b"cancel\r\n"),
        (b"cancel x y\n", b"ERR UNKNOWN_ERROR\r\n"),
        (b"cancel job H:x:1 extra\r\n", b"ERR UNKNOWN_ERROR\r\n"),
        (b"Cancel Job H:x:1\r\n", b"ERR UNKNOWN_JOB\r\n"),
        (b"create\n", INCOMPLETE + b"create\r\n"),
        (b"create foo bar\r\n", INCOMPLETE + b"create\r\n"),
        (b"create function a b\r\n", INCOMPLETE + b"create\r\n"),
        (b"drop function\r\n", INCOMPLETE + b"drop\r\n"),
        (b"drop function nope\r\n", b"ERR function not found\r\n"),
        (b"maxqueue\n", INCOMPLETE + b"maxqueue\r\n"),
        (b"maxqueue nofn 3\r\n", b"OK\r\n"),
        (b"acl list\n", b"ERR ACL_DISABLED\n"),
        (b"acl foo\n", UNKNOWN + b"acl\r\n"),
    ],
)
def test_line_parsing_and_errors(net: Net, line: bytes, reply: bytes) -> None:
    adm = net.connect()
    assert net.admin(adm, line) == reply
    assert not adm.closing


@pytest.mark.parametrize("line", [b"status a b c d e\n", b"acl foo b c d e\n"])
def test_six_tokens_close_without_reply(net: Net, line: bytes) -> None:
    adm = net.connect()
    assert net.admin(adm, b"status\n" + line + b"status\n") == b".\n"
    assert adm.closing


def test_pipelined_text_and_binary(net: Net) -> None:
    adm = net.connect()
    from gear.protocol.packets import request

    out = net.admin(adm, b"version\n" + request(c.ECHO_REQ, b"e") + b"verbose\r\n")
    assert out == b"OK 1.1.20+ds\n" + res(c.ECHO_RES, b"e") + b"OK ERROR\n"


def test_create_and_drop_function(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"CREATE FUNCTION Fx\n") == b"OK\r\n"  # bare \n keeps the last char
    assert net.admin(adm, b"status\n") == b"Fx\t0\t0\t0\n.\n"
    assert net.admin(adm, b"drop FUNCTION fX\r\n") == b"OK\r\n"  # case-insensitive name
    assert net.admin(adm, b"status\n") == b".\n"
    cl = net.connect()
    net.submit(cl, b"q", ptype=c.SUBMIT_JOB_BG)
    busy = b"ERR there are still connected workers or executing clients\r\n"
    assert net.admin(adm, b"drop function q\r\n") == busy  # queued jobs block the drop
    net.worker(b"w")
    assert net.admin(adm, b"drop function w\r\n") == busy


def test_maxqueue_forms(net: Net) -> None:
    adm = net.connect()
    net.admin(adm, b"create function f\r\n")
    f = net.broker.functions[b"f"]
    for line, limits in ((b"maxqueue f 5\n", [5, 5, 5]), (b"maxqueue f 1 2\n", [1, 2, 0]),
                         (b"maxqueue f 1 2 3\n", [1, 2, 3]), (b"maxqueue f -5 x 7abc\n", [0, 0, 7]),
                         (b"maxqueue f\n", None)):
        assert net.admin(adm, line) == b"OK\r\n"
        assert f.max_queue == limits, line
    assert net.admin(adm, b"maxqueue F 9\n") == b"OK\r\n"  # case-sensitive lookup: no-op
    assert f.max_queue is None


def test_cancel_job(net: Net) -> None:
    adm, cl = net.connect(), net.connect()
    running = net.submit(cl, b"f", b"", b"r")
    queued = net.submit(cl, b"f", b"u", b"q")
    w = net.worker(b"f")
    net.send(w, c.GRAB_JOB_UNIQ)
    net.recv(w)
    assert net.admin(adm, b"cancel job " + queued + b"\r\n") == b"OK\r\n"
    assert net.take(cl) == res(c.WORK_FAIL, queued)
    assert net.admin(adm, b"status\n") == b"f\t1\t1\t1\n.\n"  # not left counted
    assert net.admin(adm, b"cancel job " + queued + b"\r\n") == b"ERR UNKNOWN_JOB\r\n"
    net.send(w, c.GRAB_JOB_UNIQ)
    assert net.recv(w) == [(c.NO_JOB, b"")]
    net.submit(cl, b"f", b"u", b"new job with the same unique")  # no longer coalesces
    # A running job: clients failed and detached, the worker finishes it quietly.
    assert net.admin(adm, b"cancel job " + running + b"\r\n") == b"OK\r\n"
    assert net.take(cl) == res(c.WORK_FAIL, running)
    assert net.admin(adm, b"show jobs\n").startswith(running + b"\t0\t1\t0\n")
    net.send(w, c.WORK_COMPLETE, running, b"x")
    assert net.recv(w) == [] and net.recv(cl) == []
    assert running not in net.broker.jobs


def test_shutdown_extension(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"shutdown graceful\r\n") == b"OK\r\n"
    assert net.broker.shutdown_requested == "graceful"
    assert net.admin(adm, b"shutdown now please\r\n") == INCOMPLETE + b"shutdown\r\n"
    assert net.admin(adm, b"SHUTDOWN\r\n") == b"OK\r\n"
    assert net.broker.shutdown_requested == "immediate"


def test_acl_commands() -> None:
    acl = ACL()
    acl.grantGrant("admin")
    net = Net(acl=acl)
    admin, user = net.connect("admin"), net.connect("user")
    assert net.admin(user, b"acl grant invoke user f.*\n") == b"ERR PERMISSION_DENIED\n"
    assert net.admin(admin, b"acl grant invoke user f.*\n") == b"OK\n"
    assert net.admin(admin, b"acl grant register worker w x\n") == b"OK\n"  # pattern with a space
    assert net.admin(admin, b"acl grant bogus user x\n") == b"ERR UNKNOWN_ACL_VERB\n"
    assert net.admin(admin, b"acl grant invoke user (\n").startswith(b"ERR UNABLE ")
    assert net.admin(admin, b"acl grant invoke\n") == b"ERR INVALID_ARGUMENTS\n"
    assert net.admin(user, b"acl list\n") == (
        b"admin\tregister=None\tinvoke=None\tgrant=True\n"
        b"user\tregister=None\tinvoke=f.*\tgrant=False\n"
        b"worker\tregister=w x\tinvoke=None\tgrant=False\n.\n")
    net.submit(user, b"foo", ptype=c.SUBMIT_JOB_BG)  # the grant took effect
    assert net.admin(user, b"acl revoke invoke admin\n") == b"ERR PERMISSION_DENIED\n"
    assert net.admin(user, b"acl revoke invoke user\n") == b"OK\n"  # one's own entry
    assert acl.canInvoke("user", "foo") is False
    assert net.admin(admin, b"acl revoke all worker\n") == b"OK\n"
    assert net.admin(admin, b"acl revoke all nobody\n") == b"OK\n"
    assert net.admin(admin, b"acl self-revoke grant\n") == b"OK\n"
    assert net.admin(admin, b"acl self-revoke bogus\n") == b"ERR UNKNOWN_ACL_VERB\n"
    assert net.admin(admin, b"acl list\n") == b".\n"


def test_cancel_needs_invoke_permission_with_an_acl() -> None:
    acl = ACL()
    acl.grantInvoke("owner", "f")
    net = Net(acl=acl)
    owner, other = net.connect("owner"), net.connect("other")
    h = net.submit(owner, b"f", ptype=c.SUBMIT_JOB_BG)
    assert net.admin(other, b"cancel job " + h + b"\r\n") == b"ERR PERMISSION_DENIED\r\n"
    assert net.admin(owner, b"cancel job " + h + b"\r\n") == b"OK\r\n"


def test_tokens_split_on_runs_of_spaces_keeping_the_empty_ends() -> None:
    from gear.server.admin.commands import tokenize

    assert tokenize(b"cancel  job H") == [b"cancel", b"job", b"H"]
    assert tokenize(b"cancel job ") == [b"cancel", b"job", b""]
    assert tokenize(b"  status") == [b"", b"status"]
    assert tokenize(b"version\t") == [b"version\t"]


def test_a_trailing_space_after_a_shutdown_does_not_stop_the_server(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"shutdown \r\n") == INCOMPLETE + b"shutdown\r\n"
    assert net.broker.shutdown_requested is None


def test_own_commands_read_a_trailing_space_as_no_function(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"show dead jobs \n") == b".\n"
    assert net.admin(adm, b"retry dead jobs \n") == b"OK 0\n"
