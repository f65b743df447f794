"""The threaded harp worker helper beyond what test_client.py calls through: the call object
(``pass_call``), cancel reaching the worker, stopping, and a job for a procedure it does not
have."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import gear
import gear.harp as harp
from gear.harp.messages import HarpCall
from gear.threaded.harp_worker import HarpWorker
from tests.harp.conftest import WAIT
from tests.server.harp.conftest import LiveServer


def test_pass_call_cancel_hook_and_stop(live: LiveServer) -> None:
    w = gear.Worker("harp-hook")
    w.addServer("127.0.0.1", live.port)
    w.waitForServer(WAIT)
    hw = HarpWorker(w, "box")
    first_sent, go_on, closed = threading.Event(), threading.Event(), threading.Event()

    @hw.procedure("ticker", pass_call=True)
    def ticker(call: HarpCall, n: int) -> Iterator[object]:
        try:
            yield {"id": call.job_id, "proc": call.procedure}
            first_sent.set()
            assert go_on.wait(WAIT)
            yield from range(n)
        finally:
            closed.set()

    @hw.procedure()
    def who(call_arg: str) -> str:
        return threading.current_thread().name + ":" + call_arg

    hw.start(threads=2)
    try:
        rpc = harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
        assert rpc.box.who("x").get().startswith("gear.harp.worker-")
        call = rpc.box.ticker(100)
        assert first_sent.wait(WAIT)
        assert call.stream().all() == [{"id": call.id(), "proc": "ticker"}]
        assert call.cancel() is True
        (running,) = hw.running.values()
        assert running.job_id == call.id()
        # geard's JOB_CANCEL reached the worker (docs/protocol.md §1.7): the generator stops
        # at its next yield without sending it.
        assert running.job.waitForCancel(WAIT) and running.cancelled
        go_on.set()
        assert closed.wait(WAIT)
        assert call.result() is harp.CALL_CANCELLED
        assert call.stream().all() == [{"id": call.id(), "proc": "ticker"}]
        assert rpc.box.who("again").get().endswith(":again")
    finally:
        hw.stop()
        w.shutdown()
    assert all(not t.is_alive() for t in hw._threads)


def test_a_job_of_an_unknown_procedure_fails(live: LiveServer) -> None:
    w = gear.Worker("harp-unknown")
    w.addServer("127.0.0.1", live.port)
    w.waitForServer(WAIT)
    w.registerFunction("box/ghost")  # registered on the worker, not on the helper
    hw = HarpWorker(w, "box")
    hw.start(threads=1)
    try:
        rpc = harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
        outcome = rpc.box.ghost().result(wait=True)
        assert isinstance(outcome, harp.RemoteError) and outcome.type == "failed"
    finally:
        hw.stop()
        w.shutdown()
