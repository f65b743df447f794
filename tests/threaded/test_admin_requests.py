"""AdminRequest.isComplete: the (complete, remainder) contract, fed growing buffers."""

from __future__ import annotations

import pytest

import gear


@pytest.mark.parametrize(
    ("reply", "rest"),
    [
        (b".\n", b""),
        (b".\r\n", b"x"),
        (b"fn\t1\t0\t1\n.\n", b""),
        (b"fn\t1\t0\t1\r\n.\r\n", b"\x00RES"),
        (b"a\n.b\n..\n.\n", b"tail"),  # lines starting with "." are not the terminator
    ],
)
def test_list_reply_complete_only_at_terminator(reply: bytes, rest: bytes) -> None:
    req = gear.StatusAdminRequest()
    data = reply + rest
    for i in range(len(reply)):
        assert req.isComplete(data[:i]) == (False, None)
    assert req.isComplete(data) == (True, rest)
    assert req.response == reply


def test_single_line_requests() -> None:
    req = gear.CancelJobAdminRequest("H:host:1")
    assert req.getCommand() == b"cancel job H:host:1\n"
    assert req.isComplete(b"OK") == (False, None)
    assert req.isComplete(b"OK\nmore") == (True, b"more")
    assert req.response == b"OK\n"
    version = gear.VersionAdminRequest()
    assert version.isComplete(b"OK 1.1.20\n") == (True, b"")


def test_refused_list_command_completes_at_err_line() -> None:
    req = gear.ShowUniqueJobsAdminRequest()
    assert req.isComplete(b"ERR UNKNOWN_COMMAND Unknown+server+command\n") == (True, b"")
    assert req.response.startswith(b"ERR ")


def test_commands_and_base_class() -> None:
    assert gear.StatusAdminRequest().getCommand() == b"status\n"
    assert gear.ShowJobsAdminRequest().getCommand() == b"show jobs\n"
    assert gear.WorkersAdminRequest().getCommand() == b"workers\n"
    with pytest.raises(NotImplementedError):
        gear.AdminRequest()


def test_server_admin_request_takes_one_line() -> None:
    req = gear.ServerAdminRequest(connection=None)
    assert req.isComplete(b"stat") == (False, None)
    assert req.isComplete(b"status\nworkers\n") == (True, b"workers\n")
    assert req.command == b"status"


def test_only_a_first_line_err_without_tabs_ends_a_list_early() -> None:
    # a function named "ERR x" is a status line (it has tabs), not a refusal (docs/protocol.md §2.2)
    req = gear.StatusAdminRequest()
    data = b"ERR x\t1\t0\t1\nERR y\t0\t0\t0\n.\n"
    assert req.isComplete(data[:14]) == (False, None)
    assert req.isComplete(data) == (True, b"")
    assert req.response == data


def test_list_reply_in_chunks_resumes_where_it_stopped() -> None:
    req = gear.WorkersAdminRequest()
    lines = b"".join(b"%d 127.0.0.1 - : fn\n" % i for i in range(200))
    data = lines + b".\r\nnext"
    for end in range(0, len(data) - 4, 37):
        assert req.isComplete(data[:end]) == (False, None)
    assert req.isComplete(data) == (True, b"next")
    assert req.response == lines + b".\r\n"
