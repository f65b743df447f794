"""Seeded random operation sequences against the broker, checking its bookkeeping after each.

Counters (status TOTAL/RUNNING/WORKERS), queues, unique maps, worker and client links and
sleeper lists must always agree with the jobs and connections that exist.
"""

from __future__ import annotations

import random

import pytest

from gear import constants as c
from gear.server import broker as b
from tests.server.helpers import Net, Store

FUNCTIONS = [b"a", b"b", b"c"]
UNIQUES = [b"", b"", b"u1", b"u2", b"-"]
SUBMITS = [c.SUBMIT_JOB, c.SUBMIT_JOB_BG, c.SUBMIT_JOB_HIGH, c.SUBMIT_JOB_HIGH_BG,
           c.SUBMIT_JOB_LOW, c.SUBMIT_JOB_LOW_BG]


def check(net: Net) -> None:
    broker = net.broker
    jobs = list(broker.jobs.values())
    peers = list(broker.peers)
    for handle, job in broker.jobs.items():
        assert job.handle == handle and job.state != b.JobState.DONE
    for f in broker.functions.values():
        mine = [j for j in jobs if j.function is f]
        assert f.total == len(mine)
        assert f.running == sum(j.state == b.JobState.RUNNING for j in mine)
        assert f.waiting == sum(j.state == b.JobState.WAITING for j in mine)
        queued = [j for j in mine if j.state == b.JobState.QUEUED]
        assert sum(len(q) - q.dead for q in f.queues) == len(queued)
        assert all(q[0].state == b.JobState.QUEUED for q in f.queues if q)  # a live head
        for p, queue in enumerate(f.queues):
            seqs = [j.seq for j in queue]
            assert seqs == sorted(seqs)
            assert all(j.priority == p and j.state == b.JobState.QUEUED for j in queue)
        assert f.workers == sum(peer.functions.count(f.name) for peer in peers)
        for unique, job in f.uniques.items():
            assert job.unique == unique and broker.jobs.get(job.handle) is job and not job.ignore
        for data, job in f.by_data.items():
            assert job.arguments == data and job.unique == b"-"
        for peer in f.sleepers:
            assert peer.sleeping and f in peer.abilities and not peer.gone
    for job in jobs:
        if job.state == b.JobState.RUNNING:
            assert job.worker is not None and job in job.worker.worker_jobs
            assert not job.worker.gone
        else:
            assert job.worker is None
        if job.timer is not None:
            assert job.timer.job is job
        for client in job.clients:
            assert not client.gone
            assert client.client_jobs[job] == job.clients.count(client)
        if not (job.clients or job.background or job.keep):
            assert job.state in (b.JobState.RUNNING,), "an abandoned job must be running or gone"
    for peer in peers:
        assert sorted(set(peer.functions)) == sorted(f.name for f in peer.abilities)
        for job in peer.worker_jobs:
            assert job.worker is peer
        for job in peer.client_jobs:
            assert peer in job.clients and broker.jobs.get(job.handle) is job


def run(seed: int, store: bool, batched: bool = False) -> None:
    rnd = random.Random(seed)
    saved = Store(batched=batched)
    config: dict[str, object] = {"job_retries": 3, "worker_wakeup": rnd.choice([0, 1, 2])}
    if store:
        config.update(saved.config())
    net = Net(**config)
    saved.broker = net.broker
    peers = [net.connect() for _ in range(4)]
    adm = net.connect()
    for _ in range(400):
        op = rnd.randrange(14)
        peer = rnd.choice(peers)
        fn = rnd.choice(FUNCTIONS)
        if op == 0:
            net.broker.disconnect(peer)
            peers.remove(peer)
            peers.append(net.connect())
        elif op == 1:
            net.send(peer, c.CAN_DO, fn)
        elif op == 2:
            net.send(peer, c.CAN_DO_TIMEOUT, fn, b"%d" % rnd.choice([0, 1000, 3000]))
        elif op == 3:
            if rnd.random() < 0.7:
                net.send(peer, c.CANT_DO, fn)
            else:
                net.send(peer, c.RESET_ABILITIES)
        elif op in (4, 5):
            net.send(peer, rnd.choice(SUBMITS), fn, rnd.choice(UNIQUES), rnd.choice([b"x", b"y"]))
        elif op == 6:
            when = int(net.now) + rnd.choice([-5, 0, 2, 10])
            net.send(peer, c.SUBMIT_JOB_EPOCH, fn, rnd.choice(UNIQUES), b"%d" % when, b"e")
        elif op in (7, 8):
            net.send(peer, rnd.choice([c.GRAB_JOB, c.GRAB_JOB_UNIQ, c.GRAB_JOB_ALL]))
        elif op == 9:
            net.send(peer, c.PRE_SLEEP)
        elif op == 10 and peer.worker_jobs:
            job = rnd.choice(list(peer.worker_jobs))
            ptype = rnd.choice([c.WORK_COMPLETE, c.WORK_FAIL, c.WORK_EXCEPTION, c.WORK_DATA,
                                c.WORK_STATUS])
            args = {c.WORK_FAIL: [job.handle], c.WORK_STATUS: [job.handle, b"1", b"2"]}.get(
                ptype, [job.handle, b"r"])
            net.send(peer, ptype, *args)
        elif op == 11 and net.broker.jobs:
            handle = rnd.choice(list(net.broker.jobs))
            net.admin(adm, b"cancel job " + handle + b"\r\n")
        elif op == 12:
            net.now += rnd.choice([0.5, 1.0, 3.0])
            net.broker.run_timers()
        elif op == 13 and saved.pending:
            saved.finish(rnd.randrange(len(saved.pending)),
                         None if rnd.random() < 0.8 else OSError("no"))
        check(net)
        for p in [*peers, adm]:
            net.take(p)
    # Drain: every job must be finishable, and counters return to zero.
    while saved.pending:
        saved.finish()
    net.now += 100
    net.broker.run_timers()
    worker = net.worker(*FUNCTIONS)
    for p in peers:
        net.broker.disconnect(p)
    for _ in range(1000):
        net.send(worker, c.GRAB_JOB)
        (packet,) = net.recv(worker)
        if packet[0] == c.NO_JOB:
            break
        net.send(worker, c.WORK_COMPLETE, packet[1].split(b"\x00")[0], b"")
    check(net)
    assert net.broker.jobs == {}
    assert all(f.total == f.running == f.waiting == 0 for f in net.broker.functions.values())
    if store:
        # Every stored job was removed exactly once, and nothing else was.
        assert sorted(saved.removed) == sorted(saved.stored)


@pytest.mark.parametrize("seed", range(12))
def test_random_operations_keep_the_books(seed: int) -> None:
    # Seeds 1, 5, 9: per-job store callbacks; 3, 7, 11: batched store answers.
    run(seed, store=seed % 2 == 1, batched=seed % 4 == 3)
