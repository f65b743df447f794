"""Direct reads: a thread that waits for an answer on one connection reads it itself (issue 14).

Owns ``DirectReads``, a mixin of ``BaseClientServer``. The poll thread reads every connection
and hands each answer to the thread waiting for it; that hand-off (the poll thread's wakeup, the
GIL passed to and fro, a lock or queue futex each way) cost a Worker about as much CPU per job
as all its Python. So a thread about to block on an answer that can only come on one connection
(``Worker.getJob`` as the only waiter on a Worker with one connection) takes that connection out
of the poll thread's epoll set (Linux's epoll changes a set while another thread waits on it,
without waking it), reads and dispatches it through the same ``handleXxx`` hooks, and gives it
back once its answer is in (the poll thread then reads at once whatever arrived meanwhile).

Measured and not used for the Client: direct reads of JOB_CREATED in ``submitJob`` saved
nothing for one synchronous submitter (its WORK_COMPLETE still comes through the poll thread)
and cost 1.8x the CPU per job with four submitting threads (they contend for the one reader).

One direct reader at a time per object; plain TCP only (TLS stays with the poll thread). A wake
pipe ends a direct read when the poll thread is needed again: the connection is lost, the object
shuts down, a Worker's waiters are stopped or it gains a second connection. ``_read_lock`` is
held around every read of a connection, so the poll thread and a direct reader never split
one byte stream between them.

Names are camelCase like the classes that use it. Must not import the client, connection,
worker or server modules.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EPOLL", "EPOLL_MASK", "POLL_IN", "DirectReads"]

#: Whether the poll thread can use epoll (the only poll set direct reads can change).
EPOLL = hasattr(select, "epoll")
POLL_IN = select.POLLIN | select.POLLPRI
#: What the poll thread (and a direct reader) waits for on a connection.
EPOLL_MASK = POLL_IN | select.POLLERR | select.POLLHUP


class DirectReads:
    """The direct-read half of ``BaseClientServer`` (module docstring)."""

    running: bool
    _poll_lock: threading.Lock
    _poller: Any
    _polled: dict[Any, tuple[int, Any]]

    def _lostConnection(self, conn: Any) -> None:
        raise NotImplementedError

    def _readItems(self, conn: Any, sock: Any) -> bool:
        raise NotImplementedError

    def _initDirect(self) -> None:
        #: The connection a waiting thread reads itself (changed under _poll_lock).
        self._direct: Any = None
        self._read_lock = threading.Lock()
        self._direct_waiter: tuple[Any, Any] | None = None
        self._direct_wake_read, self._direct_wake_write = os.pipe()
        os.set_blocking(self._direct_wake_read, False)
        os.set_blocking(self._direct_wake_write, False)

    def _closeDirect(self) -> None:
        # -1 first: a late _wakeDirect() must not write into a reused descriptor number.
        wake_read, wake_write = self._direct_wake_read, self._direct_wake_write
        self._direct_wake_read = self._direct_wake_write = -1
        self._direct_waiter = None
        os.close(wake_read)
        os.close(wake_write)

    def _pollable(self, conn: Any) -> bool:
        """Whether the poll thread reads ``conn`` now (``_poll_lock`` held)."""
        return conn is not self._direct

    def _startDirect(self, conn: Any) -> bool:
        """Take ``conn`` from the poll thread for the calling thread; False if not now."""
        if not EPOLL or conn.use_ssl or conn.conn is None or self._direct is not None:
            return False
        with self._poll_lock:
            poller = self._poller
            if self._direct is not None or poller is None:
                return False
            entry = self._polled.get(conn)
            if entry is None or entry[1] is not conn.conn:
                return False  # the poll thread has not taken this socket up yet
            try:
                poller.unregister(entry[0])
            except OSError:
                return False
            self._direct = conn
        return True

    def _endDirect(self, conn: Any) -> None:
        """Give ``conn`` back to the poll thread."""
        with self._poll_lock:
            self._direct = None
            poller = self._poller
            entry = self._polled.get(conn)
            if poller is not None and entry is not None and entry[1] is conn.conn:
                try:
                    poller.register(entry[0], EPOLL_MASK)
                except OSError:
                    pass  # closed meanwhile: the poll thread rebuilds its set anyway

    def _wakeDirect(self) -> None:
        """End the current direct read, if any (it returns; its caller waits as before)."""
        if self._direct is not None:
            try:
                os.write(self._direct_wake_write, b"1")
            except OSError:
                pass  # full (a wake is pending) or closed at shutdown

    def _drainDirectWake(self) -> None:
        try:
            while os.read(self._direct_wake_read, 64):
                pass
        except OSError:
            pass  # drained (EAGAIN), or closed at shutdown

    def _readDirect(self, conn: Any, waiting: Callable[[], bool], timeout: float | None) -> None:
        """Read and dispatch ``conn`` (taken by :meth:`_startDirect`) while ``waiting()`` (a
        C method such as ``SimpleQueue.empty`` costs no Python frame per read), until the
        timeout, a wake or the connection's loss; then give it back. The caller then waits
        for its answer as it would have without the direct read."""
        sock = conn.conn
        wake = self._direct_wake_read
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # One poll object per socket, kept for the next direct read (one reader at a time).
            kept = self._direct_waiter
            if kept is not None and kept[0] is sock:
                waiter = kept[1]
            else:
                waiter = select.poll()
                waiter.register(sock.fileno(), EPOLL_MASK)
                waiter.register(wake, select.POLLIN)
                self._direct_waiter = (sock, waiter)
            with self._read_lock:
                pass  # a read the poll thread began before the takeover has ended
            while waiting():
                if deadline is None:
                    events = waiter.poll()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    events = waiter.poll(remaining * 1000)
                    if not events:
                        break
                if not self.running or conn.conn is not sock:
                    break
                event = 0
                for fd, mask in events:
                    if fd == wake:
                        event = -1
                        break
                    event = mask
                if event < 0:
                    self._drainDirectWake()
                    break
                with self._read_lock:
                    if not event & POLL_IN:
                        self._lostConnection(conn)
                        break
                    if not self._readItems(conn, sock):
                        break
        except (OSError, ValueError):
            pass  # closed under us (shutdown); the caller's own wait has the answer
        finally:
            self._endDirect(conn)
