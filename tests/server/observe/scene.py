"""A broker in a known state for the metrics and status tests, on a fake clock.

:func:`scene` builds, on a :class:`~tests.server.helpers.Net` broker observed by a
:class:`~gear.server.observe.metrics.JobMetrics` with the broker's own fake clock: a held
running job, queued jobs at two priorities, and jobs completed, failed, excepted, timed out
and cancelled; :data:`EXPECTED` says what every counter must read.
"""

from __future__ import annotations

from dataclasses import dataclass

from gear import constants as c
from gear.server.broker import Peer
from gear.server.observe.metrics import JobMetrics
from tests.server.helpers import Net


@dataclass
class Scene:
    net: Net
    metrics: JobMetrics
    client: Peer
    held: bytes  # the handle of the running job nobody finishes
    workers: tuple[Peer, Peer, Peer]


def observed(max_functions: int = 100) -> tuple[Net, JobMetrics]:
    """A broker observed by metrics on its fake clock (the broker reads it at every event)."""
    net = Net()
    metrics = JobMetrics(max_functions, clock=lambda: net.now)
    metrics.bind(net.broker)
    return net, metrics


def scene() -> Scene:
    """The state (function: what it holds):

    * ``work``: 1 running (held, waited 1 s), 1 HIGH + 2 NORMAL queued, 1 cancelled while
      queued; 1 worker. Submitted 5.
    * ``other``: completed (waited 0.5 s, ran 0.25 s), failed (ran 2 s), exception (ran 4 s);
      1 worker (the exceptions option set). Submitted 3.
    * ``slow``: 1 timed out (CAN_DO_TIMEOUT 1000 ms: ran 1 s); 1 worker. Submitted 1.
    """
    net, metrics = observed()
    client = net.connect()
    w1 = net.worker(b"work")
    held = net.submit(client, b"work", data=b"a")
    net.now += 1.0
    assert net.grab(w1)[0] == c.JOB_ASSIGN_UNIQ
    net.submit(client, b"work", data=b"b")
    net.submit(client, b"work", data=b"c")
    net.submit(client, b"work", data=b"d", ptype=c.SUBMIT_JOB_HIGH)
    cancelled = net.submit(client, b"work", data=b"e")
    admin = net.connect()
    assert net.admin(admin, b"cancel job " + cancelled + b"\n") == b"OK\r\n"
    net.take(client)  # its WORK_FAIL

    w2 = net.worker(b"other")
    net.send(w2, c.OPTION_REQ, b"exceptions")
    net.take(w2)
    for data, ptype, ran, *reply in (
        (b"ok", c.WORK_COMPLETE, 0.25, b"done"),
        (b"no", c.WORK_FAIL, 2.0),
        (b"ex", c.WORK_EXCEPTION, 4.0, b"boom"),
    ):
        h = net.submit(client, b"other", data=data)
        net.now += 0.5
        assert net.grab(w2)[0] == c.JOB_ASSIGN_UNIQ
        net.now += ran
        net.send(w2, ptype, h, *reply)
        net.take(client)

    w3 = net.connect()
    net.send(w3, c.CAN_DO_TIMEOUT, b"slow", b"1000")
    h = net.submit(client, b"slow")
    assert net.grab(w3)[0] == c.JOB_ASSIGN_UNIQ
    net.now += 1.0
    net.broker.run_timers()
    net.take(client)
    net.take(w3)
    return Scene(net, metrics, client, held, (w1, w2, w3))


#: What the scene's counters read: submitted per function, finished per (function, outcome).
SUBMITTED = {"work": 5, "other": 3, "slow": 1}
FINISHED = {("work", "cancelled"): 1, ("other", "complete"): 1, ("other", "fail"): 1,
            ("other", "exception"): 1, ("slow", "timeout"): 1}
