"""Broker.submit_local, the harp port's packet-less foreground submit, against SUBMIT_JOB.

The same checks answer the same ERROR packets, the job it makes is the job SUBMIT_JOB makes,
sleeping workers are woken, coalescing attaches the local peer (through the wire's own
coalescing: a job not yet on disk holds it as it holds a client), and the job's WORK_* packets
reach the local peer's output as they reach a client's.
"""

from __future__ import annotations

from gear import constants as c
from gear.server import broker as b
from tests.server.helpers import Net, Store


def _slots(job: b.Job) -> dict[str, object]:
    return {name: getattr(job, name, "<unset>") for name in b.Job.__slots__
            if name not in ("clients", "function")}


def test_the_job_is_the_job_submit_job_makes() -> None:
    wire, local = Net(), Net()
    wc, lc = wire.connect(), local.connect()
    handle = wire.submit(wc, b"h/p", b"u-1", b"[1]")
    job = local.broker.submit_local(lc, b"h/p", b"u-1", b"[1]")
    assert isinstance(job, b.Job)
    assert job.handle == handle
    assert _slots(job) == _slots(wire.broker.jobs[handle])
    assert job.function.name == b"h/p" and job.function.total == 1
    assert job.clients == [lc] and lc.client_jobs == {job: 1}
    assert local.take(lc) == b""  # no JOB_CREATED: the handle is the return value


def test_errors_are_the_packets_the_wire_gets() -> None:
    net = Net(max_unique_size=8)
    peer = net.connect()
    net.send(peer, c.SUBMIT_JOB, b"f", b"123456789", b"x")
    assert net.broker.submit_local(peer, b"f", b"123456789", b"x") == net.take(peer)
    adm = net.connect()
    net.admin(adm, b"create function g\r\n")
    assert net.admin(adm, b"maxqueue g 1 1 1\r\n") == b"OK\r\n"
    net.submit(peer, b"g", b"", b"x")
    net.send(peer, c.SUBMIT_JOB, b"g", b"", b"y")
    full = net.take(peer)
    assert full.startswith(b"\0RES") and b"QUEUE_ERROR" in full
    assert net.broker.submit_local(peer, b"g", b"", b"y") == full


def test_wakes_a_sleeping_worker_and_gets_the_result() -> None:
    net = Net()
    w = net.worker(b"h/p")
    net.sleep(w)
    link = net.connect()
    job = net.broker.submit_local(link, b"h/p", b"id", b"[2]")
    assert isinstance(job, b.Job)
    assert net.recv(w) == [(c.NOOP, b"")]
    ptype, args = net.grab(w)
    assert ptype == c.JOB_ASSIGN_UNIQ and args == [job.handle, b"h/p", b"id", b"[2]"]
    net.send(w, c.WORK_DATA, job.handle, b"1")
    net.send(w, c.WORK_COMPLETE, job.handle, b"2")
    assert net.recv(link) == [(c.WORK_DATA, job.handle + b"\0" + b"1"),
                              (c.WORK_COMPLETE, job.handle + b"\0" + b"2")]
    assert job.handle not in net.broker.jobs and link.client_jobs == {}


def test_coalesces_on_the_unique() -> None:
    net = Net()
    client, link = net.connect(), net.connect()
    handle = net.submit(client, b"h/p", b"same", b"x")
    job = net.broker.submit_local(link, b"h/p", b"same", b"other")
    assert isinstance(job, b.Job)
    assert job.handle == handle and job.clients == [client, link]
    assert link.client_jobs == {job: 1}


def test_coalescing_on_a_job_not_yet_on_disk_holds_the_local_peer_as_a_client() -> None:
    store = Store(batched=True)
    net = store.net()
    client, link = net.connect(), net.connect()
    net.send(client, c.SUBMIT_JOB_BG, b"h/p", b"same", b"x")
    assert net.recv(client) == []  # no JOB_CREATED before the job is on disk
    job = net.broker.submit_local(link, b"h/p", b"same", b"y")
    assert isinstance(job, b.Job) and job.clients == [link]
    assert net.recv(link) == []
    store.broker.stored_batch([j for _, j in store.pending], None)
    assert net.recv(client) == [(c.JOB_CREATED, job.handle)]
    assert net.recv(link) == [(c.JOB_CREATED, job.handle)]
