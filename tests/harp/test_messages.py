"""gear.harp.messages without a network: requests, the reply -> outcome mapping, the worker
convention and :func:`run_procedure`."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from gear.harp import messages as m


def test_call_request_sends_only_given_options() -> None:
    assert m.call_request("h", "p", (1, 2)) == {
        "harpcaller": 1, "host": "h", "procedure": "p", "arguments": [1, 2]}
    req = m.call_request("h", "p", {"a": 1}, queue={"q": 1}, concurrency=2, timeout=5,
                         max_exec_time=9, info=None)
    assert req["queue"] == {"name": {"q": 1}, "concurrency": 2}
    assert (req["timeout"], req["max_exec_time"], req["info"]) == (5, 9, None)
    assert "concurrency" not in m.call_request("h", "p", [], concurrency=3)


def test_stream_requests() -> None:
    assert m.follow_request("id") == {"harpcaller": 1, "follow_stream": "id"}
    assert m.read_stream_request("id", since=3)["since"] == 3
    assert m.follow_request("id", recent=0)["recent"] == 0
    with pytest.raises(m.HarpException):
        m.read_stream_request("id", since=1, recent=1)


def test_framing() -> None:
    line = m.encode(m.result_request("id", True))
    assert line.endswith(b"\n") and json.loads(line) == {
        "harpcaller": 1, "get_result": "id", "wait": True}
    with pytest.raises(m.HarpException):
        m.encode({"x": object()})
    with pytest.raises(m.CommunicationError, match="EOF"):
        m.decode(b"")
    with pytest.raises(m.CommunicationError, match="invalid JSON"):
        m.decode(b"{nope\n")


@pytest.mark.parametrize(("reply", "expected"), [
    ({"result": [1]}, [1]),
    ({"result": None}, None),
    ({"no_result": True}, m.CALL_NOT_FINISHED),
    ({"continue": True}, m.CALL_NOT_FINISHED),
    ({"cancelled": True}, m.CALL_CANCELLED),
    ({"exception": {"type": "t", "message": "msg", "data": {"d": 1}}},
     m.RemoteException("t", "msg", {"d": 1})),
    ({"error": {"type": "timeout", "message": "reading result timed out"}},
     m.RemoteError("timeout", "reading result timed out")),
])
def test_outcome(reply: dict[str, Any], expected: Any) -> None:
    got = m.outcome(reply)
    assert got == expected if not isinstance(expected, m._Sentinel) else got is expected


def test_outcome_of_nonsense_and_finality() -> None:
    assert isinstance(m.outcome({"what": 1}), m.CommunicationError)
    assert isinstance(m.outcome([1]), m.CommunicationError)
    assert not m.is_final(m.CALL_NOT_FINISHED)
    assert not m.is_final(m.CommunicationError("x"))
    assert m.is_final(m.CALL_CANCELLED) and m.is_final(None)
    assert m.is_final(m.RemoteError("t", "m"))


def test_unwrap() -> None:
    assert m.unwrap(5) == 5
    assert m.unwrap(m.CALL_NOT_FINISHED) is m.CALL_NOT_FINISHED
    with pytest.raises(m.CancelledException):
        m.unwrap(m.CALL_CANCELLED)
    with pytest.raises(m.RemoteError):
        m.unwrap(m.RemoteError("t", "m"))


def test_replies_that_raise() -> None:
    assert m.job_id_of({"harpcaller": 1, "job_id": "abc"}) == "abc"
    with pytest.raises(m.RemoteError) as info:
        m.job_id_of({"error": {"type": "invalid_request", "message": "bad"}})
    assert (info.value.type, info.value.message) == ("invalid_request", "bad")
    with pytest.raises(m.CommunicationError):
        m.job_id_of({"job": 1})
    assert m.cancelled_of({"cancelled": False}) is False
    with pytest.raises(m.CommunicationError):
        m.cancelled_of({})
    status = m.status_of({"call": {"procedure": "p", "arguments": [], "host": "h"},
                          "time": {"submit": 1, "start": None, "end": None}, "info": 7})
    assert status == m.CallStatus("p", [], "h", 1, None, None, 7)
    with pytest.raises(m.CommunicationError):
        m.status_of({"call": {}})
    assert m.stream_packet({"packet": 3, "data": "x"}) == (3, "x")
    assert m.stream_packet({"result": 1}) is None


def test_sentinels() -> None:
    assert repr(m.CALL_NOT_FINISHED) == "<CallNotFinished>"
    assert repr(m.CALL_CANCELLED) == "<CallCancelled>"
    assert pickle.loads(pickle.dumps(m.CALL_CANCELLED)) is m.CALL_CANCELLED
    assert pickle.loads(pickle.dumps(m.CALL_NOT_FINISHED)) is m.CALL_NOT_FINISHED


def test_worker_convention() -> None:
    assert m.call_arguments(b"[1, 2]") == ([1, 2], {})
    assert m.call_arguments(b'{"a": 1}') == ([], {"a": 1})
    assert m.call_arguments(b"") == ([], {})
    assert m.call_arguments(b"3") == ([3], {})
    assert json.loads(m.encode_exception(ValueError("v"))) == {
        "type": "ValueError", "message": "v", "data": None}
    assert json.loads(m.encode_exception(m.RemoteException("t", "msg", [1]))) == {
        "type": "t", "message": "msg", "data": [1]}
    odd = RuntimeError("odd")
    odd.data = {1, 2}  # type: ignore[attr-defined]
    assert json.loads(m.encode_exception(odd))["data"] == "{1, 2}"


def _gen(n: int) -> Iterator[int]:
    yield from range(n)
    return "end"  # type: ignore[return-value]


def test_run_procedure() -> None:
    sent: list[bytes] = []
    call = m.HarpCall("h/p", "id")
    assert (call.host, call.procedure, call.job_id) == ("h", "p", "id")
    assert m.run_procedure(_gen, call, b"[2]", sent.append) == ("complete", b'"end"')
    assert sent == [b"0", b"1"]
    kind, payload = m.run_procedure(lambda: object(), call, b"", sent.append)
    assert kind == "exception" and json.loads(payload)["type"] == "TypeError"
    kind, payload = m.run_procedure(lambda a: a, call, b"[1, 2]", sent.append)
    assert kind == "exception" and json.loads(payload)["type"] == "TypeError"
    assert m.run_procedure(lambda c, x: (c.procedure, x), call, b"[5]", sent.append,
                           pass_call=True) == ("complete", b'["p",5]')


def test_run_procedure_stops_a_cancelled_generator() -> None:
    closed: list[bool] = []
    call = m.HarpCall("h/p", "id")

    def gen() -> Iterator[int]:
        try:
            yield 1
            call.cancel()  # as a cancel signal would, while the procedure runs
            yield 2
            yield 3
        finally:
            closed.append(True)

    sent: list[bytes] = []
    assert m.run_procedure(gen, call, b"", sent.append) == ("cancelled", b"")
    assert sent == [b"1"] and closed == [True]  # 2 came after the cancel: not sent


def test_a_call_is_cancelled_when_its_job_is() -> None:
    class Job:
        cancelled = False

    job = Job()
    call = m.HarpCall("h/p", "id", job)
    assert not call.cancelled
    job.cancelled = True  # what the workers' JOB_CANCEL handling does (docs/protocol.md §1.7)
    assert call.cancelled
    assert m.HarpCall("h/p", "id", object()).cancelled is False  # a job without the flag


def test_decode_is_json_loads() -> None:
    import json

    from gear.harp import messages as m

    for line in [b'{"a":1}\n', b'{"a": 1} \n', b'\xef\xbb\xbf{"a":1}\n', b"NaN\n", b"[1]\r\n",
                 "é".encode(), b"1 2\n", b"{\n", b"\xff\n", b"\n", b"1\n\n"]:
        try:
            expected: object = json.loads(line)
        except ValueError:
            with pytest.raises(m.CommunicationError, match="invalid JSON"):
                m.decode(line)
            continue
        got = m.decode(line)
        assert got == expected or (got != got and expected != expected)  # NaN
