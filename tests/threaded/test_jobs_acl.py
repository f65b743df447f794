"""Job classes, TextList, Job.wait, WorkerJob packets and the ACL (Python 3 fixes included)."""

from __future__ import annotations

import threading

import pytest

import gear
from gear import constants
from gear.protocol.packets import Decoder


def test_job_attributes_and_validation() -> None:
    job = gear.Job("fn", b"args", unique="u1")
    assert job.name == "fn"
    assert job.binary_name == b"fn"
    assert job.arguments == b"args"
    assert job.unique == b"u1"
    assert job.data == [] and not job.complete and job.handle is None
    with pytest.raises(TypeError):
        gear.Job("fn", "text args")
    with pytest.raises(ValueError):
        job.data = ("not", "a list")


def test_job_wait_is_set_by_complete() -> None:
    job = gear.Job("fn", b"")
    assert not job.wait(0.01)
    threading.Timer(0.01, lambda: setattr(job, "complete", True)).start()
    assert job.wait(5)
    job.complete = False
    assert not job.wait(0)


def test_job_wait_wakes_every_waiter_and_survives_a_reset() -> None:
    # Job.wait's latch (a held lock, issue 14): every waiter wakes on completion; a job set
    # back to incomplete makes new and already blocked waiters wait again.
    job = gear.Job("fn", b"")
    results: list[bool] = []
    waiters = [threading.Thread(target=lambda: results.append(job.wait(10))) for _ in range(4)]
    for t in waiters:
        t.start()
    job.complete = True
    for t in waiters:
        t.join(5)
    assert results == [True] * 4
    assert job.wait() and job.wait(0)
    job.complete = True  # completing twice is harmless
    job.complete = False
    assert not job.wait(0.01)
    blocked = threading.Thread(target=lambda: results.append(job.wait(10)))
    blocked.start()
    job.complete = False  # a reset while one waits: it keeps waiting
    blocked.join(0.05)
    assert blocked.is_alive()
    job.complete = True
    blocked.join(5)
    assert results[-1] is True and len(results) == 5


def test_text_job_and_text_list() -> None:
    job = gear.TextJob("fn", "données", unique="ü")
    assert job.arguments == "données"
    assert job.binary_arguments == "données".encode()
    assert job.unique == "ü"
    job.data.append(b"a")
    job.data.extend([b"b", "c"])  # gear's extend raised TypeError
    job.data.insert(0, b"z")
    assert job.data == ["z", "a", "b", "c"]
    assert list(job.binary_data) == [b"z", b"a", b"b", b"c"]
    job.exception = b"boom"
    assert job.exception == "boom"
    job.exception = None  # gear raised AttributeError
    job.unique = None
    assert job.exception is None and job.unique is None


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def sendRaw(self, data: bytes) -> None:
        self.data += data


def test_worker_job_sends_each_result_packet() -> None:
    job = gear.TextWorkerJob(b"H:1", b"fn", b"args", b"u")
    job.connection = sink = _Sink()
    assert job.name == "fn" and job.arguments == "args" and job.unique == "u"
    job.sendWorkData("d")
    job.sendWorkWarning("w")
    job.sendWorkStatus(1, 4)
    job.sendWorkException("e")
    job.sendWorkFail()
    job.sendWorkComplete("done")
    frames = Decoder().feed_all(sink.data)
    assert [(f.ptype, f.body) for f in frames] == [
        (constants.WORK_DATA, b"H:1\x00d"),
        (constants.WORK_WARNING, b"H:1\x00w"),
        (constants.WORK_STATUS, b"H:1\x001\x004"),
        (constants.WORK_EXCEPTION, b"H:1\x00e"),
        (constants.WORK_FAIL, b"H:1"),  # no trailing NUL (libgearman 1.1 drops it otherwise)
        (constants.WORK_COMPLETE, b"H:1\x00done"),
    ]
    assert all(f.magic == constants.REQ for f in frames)


def test_binary_and_server_jobs() -> None:
    assert gear.BinaryJob(b"fn", b"").name == b"fn"
    sj = gear.ServerJob(b"H:1", b"fn", b"a", client_connection=None)
    assert sj.name == b"fn" and sj.worker_connection is None
    assert not hasattr(sj, "connection")
    assert gear.convert_to_bytes("é") == "é".encode() and gear.convert_to_bytes(None) is None


def test_acl_matches_str_and_bytes_names() -> None:
    acl = gear.ACL()
    acl.add(gear.ACLEntry("worker", register="foo.*"))
    acl.grantInvoke("client", "bar")
    assert acl.canRegister("worker", b"foo-x")  # bytes from the wire (gear: TypeError)
    assert acl.canRegister("worker", "foo")
    assert not acl.canRegister("worker", "x-foo")
    assert acl.canInvoke("client", b"bar") and not acl.canInvoke("client", b"baz")
    assert not acl.canInvoke(None, "bar")
    acl.revokeInvoke("client")
    assert "client" not in acl.subjects


def test_acl_errors_are_gearman_errors() -> None:
    acl = gear.ACL()
    acl.add(gear.ACLEntry("a"))
    with pytest.raises(gear.ACLError):
        acl.add(gear.ACLEntry("a"))
    with pytest.raises(gear.GearmanError):
        acl.remove("nobody")
    with pytest.raises(gear.ACLError, match="Regular expression error"):
        gear.ACLEntry("b", register="(")
