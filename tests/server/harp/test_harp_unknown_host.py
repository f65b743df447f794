"""A harp call to a host no worker serves ends with ``unknown_host`` after
``--harp-unknown-host-wait`` (docs/harp.md, "The mapping onto Gearman"), on a service with a
clock of its own."""

from __future__ import annotations

from typing import Any

import gear.constants as c
from gear.protocol.packets import request
from gear.server.broker import Broker, BrokerConfig
from gear.server.harp.service import HarpService
from tests.server.harp.test_harp_store import Clock, Recorder, Sink, call


def service(**kw: Any) -> tuple[HarpService, Clock]:
    clock = Clock()
    svc = HarpService(Broker(BrokerConfig(), clock), clock, lambda: None, store=Recorder(), **kw)
    return svc, clock


def result(svc: HarpService, job_id: str) -> Any:
    sink = Sink()
    svc.handle_line(b'{"harpcaller": 1, "get_result": "%s", "wait": false}' % job_id.encode(),
                    sink)
    return sink.lines[0]


def register(svc: HarpService, function: bytes) -> None:
    worker = svc.broker.connect("worker", 1, 7)
    svc.broker.feed(worker, request(c.CAN_DO, function))


def test_a_call_to_an_unserved_host_ends_with_unknown_host_after_the_wait() -> None:
    svc, clock = service(unknown_host_wait=10)
    job_id = call(svc)
    clock.now += 9.9
    svc.run_timers()
    assert result(svc, job_id) == {"no_result": True}
    clock.now += 0.2
    svc.run_timers()
    assert result(svc, job_id) == {"error": {"type": "unknown_host",
                                             "message": "no worker serves host 'h'"}}
    assert svc.broker.functions[b"h/p"].total == 0  # its Gearman job is gone too


def test_a_worker_of_another_procedure_of_the_host_makes_it_known() -> None:
    svc, clock = service(unknown_host_wait=10)
    register(svc, b"h/other")  # the host is served, just not this procedure yet
    job_id = call(svc)
    clock.now += 60
    svc.run_timers()
    assert result(svc, job_id) == {"no_result": True}


def test_a_call_waiting_in_a_harp_queue_ends_too_and_frees_nothing_it_did_not_hold() -> None:
    svc, clock = service(unknown_host_wait=10)
    first = call(svc, queue={"name": {"q": 1}, "concurrency": 1})
    second = call(svc, queue={"name": {"q": 1}, "concurrency": 1})
    clock.now += 11
    svc.run_timers()
    for job_id in (first, second):
        assert result(svc, job_id)["error"]["type"] == "unknown_host"
    assert svc.queues() == []


def test_zero_waits_for_ever() -> None:
    svc, clock = service(unknown_host_wait=0)
    job_id = call(svc)
    clock.now += 3600
    svc.run_timers()
    assert result(svc, job_id) == {"no_result": True}
