"""How a connection leaves the broker: its running jobs requeued, its own jobs detached.

Owns :class:`Departures` (mixed into ``core.Broker``): ``disconnect``, ``run_deferred`` and the
detaching of a gone client from its jobs. A client that leaves with many jobs is detached from
at most ``DETACH_SLICE`` of them per call, the rest on later passes of the network layer's loop
(``run_deferred``), so no other connection waits for the whole of it (docs/semantics.md,
"Removal from a queue"). Until its slice comes, a gone client's job may still be handed to a
worker; its results then reach nobody, as for a job that was already running when its client
left.

Must not import ``core.py``, sockets, asyncio or threads.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import TYPE_CHECKING

from gear.server.broker.lifecycle import Outcome
from gear.server.broker.model import Job, JobState, Peer

__all__ = ["DETACH_SLICE", "Departures"]

#: Jobs of a leaving client detached per slice: ~1 ms of the loop on an idle machine
#: (docs/semantics.md, "Removal from a queue").
DETACH_SLICE = 500


class Departures:
    """Disconnects and the deferred detaching of gone clients (a mixin of ``core.Broker``)."""

    if TYPE_CHECKING:  # what it uses of the broker, defined in core.py
        peers: dict[Peer, None]
        dirty: set[Peer]
        _leaving: deque[Peer]

        def _unsleep(self, peer: Peer) -> None: ...
        def _requeue(self, job: Job) -> None: ...
        def _finish(self, job: Job, outcome: Outcome, packet: bytes | None = None) -> None: ...

    def disconnect(self, peer: Peer) -> None:
        """The connection is gone: requeue the jobs it runs, detach it from its jobs
        (docs/protocol.md §3.6, §3.7): up to ``DETACH_SLICE`` of them now, the rest by
        :meth:`run_deferred`.

        Safe to call twice. Output still in ``peer.out`` or held is dropped.
        """
        if peer.gone:
            return
        peer.gone = True
        self.peers.pop(peer, None)
        self.dirty.discard(peer)
        peer.held = None
        self._unsleep(peer)
        for f in peer.abilities:
            f.workers -= peer.functions.count(f.name)
        peer.abilities = []
        peer.functions = []
        peer.timeouts = {}
        client_jobs = peer.client_jobs
        # Detach as a client first, so that a job it both submitted and ran (or one failed by
        # the retry limit) never writes to this gone peer.
        for job in list(peer.worker_jobs):
            if job in client_jobs:
                self._detach_client(job, peer)
        for job in list(peer.worker_jobs):
            self._requeue(job)
        # Its own jobs: a slice now, the rest in slices on later passes of the loop
        # (run_deferred), so that a client leaving with 100,000 jobs never holds every other
        # connection for the whole of it (docs/semantics.md, "Removal from a queue").
        # Meanwhile those jobs still name it: output for it is dropped with the connection.
        if client_jobs:
            self._detach_slice(peer)
            if client_jobs:
                self._leaving.append(peer)

    def run_deferred(self) -> bool:
        """One slice of the work a call left for later (the jobs of clients that left with
        more than ``DETACH_SLICE``); True while more remains. The network layer calls it once
        per pass of its loop until it returns False."""
        leaving = self._leaving
        if not leaving:
            return False
        peer = leaving[0]
        self._detach_slice(peer)
        if not peer.client_jobs:
            leaving.popleft()
        return bool(leaving)

    def _detach_slice(self, peer: Peer) -> None:
        """Detach gone client ``peer`` from up to ``DETACH_SLICE`` of its jobs, oldest first."""
        for job in list(islice(peer.client_jobs, DETACH_SLICE)):
            self._detach_client(job, peer)

    def _detach_client(self, job: Job, peer: Peer) -> None:
        """Client ``peer`` disconnected: drop all its attachments to ``job`` (docs/protocol.md
        §3.7)."""
        clients = job.clients
        if len(clients) == 1 and clients[0] is peer:  # the usual case: no new list
            job.clients = ()
        else:
            job.clients = [p for p in clients if p is not peer]
        peer.client_jobs.pop(job, None)
        if job.orphaned and job.state is JobState.QUEUED:
            job.function.queues[job.priority].forget(job)  # O(1): no scan of the queue
            self._finish(job, Outcome.ORPHANED)
        # A running job goes on; its results reach nobody and it is forgotten when it ends.
