"""The harp service on a broker, without sockets: submissions through ``Broker.submit_local``
and the end replies made from what workers send (kept as sent when it is one line of JSON)."""

from __future__ import annotations

import json

from gear import constants as c
from gear.server.harp.service import HarpService
from tests.server.helpers import Net


class Sink:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False
        self.answered = 0

    def write(self, data: bytes) -> None:
        self.out.append(data)

    replay = write

    def done(self, close: bool = False) -> None:
        self.answered += 1
        self.closed = self.closed or close


def _call(service: HarpService, args: str = "[1]") -> str:
    sink = Sink()
    service.handle_line(b'{"harpcaller":1,"host":"h","procedure":"p","arguments":%s}'
                        % args.encode(), sink)
    (line,) = sink.out
    return str(json.loads(line)["job_id"])


def _result(service: HarpService, job_id: str) -> Sink:
    sink = Sink()
    service.handle_line(b'{"harpcaller":1,"get_result":"%s"}' % job_id.encode(), sink)
    return sink


def _setup() -> tuple[Net, HarpService]:
    net = Net()
    service = HarpService(net.broker, lambda: net.now, lambda: None)
    return net, service


def _complete(net: Net, service: HarpService, body: bytes) -> bytes:
    """Run one call on a worker that answers ``body``; the get_result reply line."""
    w = net.worker(b"h/p")
    job_id = _call(service, '{"k": [1, 2]}')
    waiting = _result(service, job_id)
    assert waiting.out == []
    _, (handle, fn, unique, data) = net.grab(w)
    assert (fn, unique, data) == (b"h/p", job_id.encode(), b'{"k":[1,2]}')
    net.send(w, c.WORK_COMPLETE, handle, body)
    service._drain()
    (line,) = waiting.out
    assert _result(service, job_id).out == [line]  # the same bytes for a later get_result
    return line


def test_a_json_result_is_kept_as_the_worker_sent_it() -> None:
    net, service = _setup()
    assert _complete(net, service, b'{"a": [1, "\\u00e9"]}') \
        == b'{"result":{"a": [1, "\\u00e9"]}}\n'


def test_a_result_on_several_lines_is_re_encoded_and_text_becomes_a_string() -> None:
    net, service = _setup()
    assert _complete(net, service, b'{"a":\n 1}') == b'{"result":{"a":1}}\n'
    assert _complete(net, service, b"not json") == b'{"result":"not json"}\n'
    assert _complete(net, service, b"\xff") == b'{"result":"\\ufffd"}\n'


def test_a_refused_submission_ends_the_call_with_submit_failed() -> None:
    net, service = _setup()
    adm = net.connect()
    net.admin(adm, b"create function h/p\r\n")
    assert net.admin(adm, b"maxqueue h/p 1 1 1\r\n") == b"OK\r\n"
    first = _call(service)
    refused = _call(service)
    assert _result(service, first).out == []  # queued, waiting for a worker
    assert json.loads(_result(service, refused).out[0]) == {"error": {
        "type": "submit_failed", "message": "QUEUE_ERROR: Job queue is full"}}
