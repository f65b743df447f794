"""Load and measurement helpers for the fault tests (tests/server/test_output_limits.py,
test_descriptors.py, test_disconnect_stall.py) and bench/probe_faults.py.

* :class:`RawWorker`: a raw-socket worker in a thread that answers every job of one function
  with a result of a given size, counting what it did;
* :class:`Pinger`: a thread doing ECHO round trips on its own connection, keeping the largest
  gap between two answers (the stall another connection sees);
* :func:`rss`, :func:`open_fds`: a process's resident memory and descriptors, from /proc;
* :func:`admin`: one admin command's reply; :func:`submit_many`: pipelined SUBMIT_JOBs.

Plain sockets and threads, no pytest (the probes import it too).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from gear import constants as c
from gear.protocol.packets import RES, encode, request
from tests.support.raw import connect, read_packet


class RawWorker(threading.Thread):
    """A worker for ``function`` on 127.0.0.1:``port``: each job is answered with a
    WORK_COMPLETE of ``result_size`` bytes. ``done`` counts completed jobs, ``seen`` keeps the
    arguments of every job; :meth:`wait_done` waits for a count. Stops at :meth:`stop`."""

    def __init__(self, port: int, function: bytes, result_size: int = 10_000) -> None:
        super().__init__(daemon=True)
        self.sock = connect(port, timeout=None)  # type: ignore[arg-type]
        self.sock.sendall(request(c.CAN_DO, function))
        self.result = b"r" * result_size
        self.done = 0
        self.seen: list[bytes] = []
        self._cond = threading.Condition()
        self._stopped = False
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        sock = self.sock
        try:
            while True:
                sock.sendall(request(c.GRAB_JOB))
                ptype, args = read_packet(sock)
                while ptype == c.NOOP:
                    ptype, args = read_packet(sock)
                if ptype == c.NO_JOB:
                    sock.sendall(request(c.PRE_SLEEP))
                    ptype, args = read_packet(sock)  # the NOOP that wakes us
                    continue
                assert ptype == c.JOB_ASSIGN, (ptype, args)
                sock.sendall(request(c.WORK_COMPLETE, args[0], self.result))
                with self._cond:
                    self.done += 1
                    self.seen.append(args[2])
                    self._cond.notify_all()
        except (OSError, EOFError) as exc:
            if not self._stopped:
                self.error = exc
        finally:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def wait_done(self, count: int, timeout: float = 30.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.done >= count or self._stopped, timeout)
        if not ok or self.done < count:
            raise AssertionError(f"worker did {self.done} jobs of {count} ({self.error!r})")

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv (close does not)
        self.sock.close()
        self.join(5)


class Pinger(threading.Thread):
    """ECHO round trips on one connection until :meth:`stop`; ``max_gap`` is the longest time
    (seconds) between two answers since the last :meth:`reset`."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = connect(port, timeout=30)
        self.max_gap = 0.0
        self.rounds = 0
        self._stop_event = threading.Event()
        self._lock = threading.Condition()
        self.error: BaseException | None = None
        self._last = time.perf_counter()
        self.start()

    def run(self) -> None:
        packet = request(c.ECHO_REQ, b"ping")
        try:
            while not self._stop_event.is_set():
                self.sock.sendall(packet)
                assert read_packet(self.sock) == (c.ECHO_RES, [b"ping"])
                now = time.perf_counter()
                with self._lock:
                    self.max_gap = max(self.max_gap, now - self._last)
                    self._last = now
                    self.rounds += 1
                    self._lock.notify_all()
        except BaseException as exc:  # reported by stop()
            self.error = exc
            with self._lock:
                self._lock.notify_all()

    def wait_rounds(self, count: int, timeout: float = 60.0) -> None:
        """Wait for ``count`` more round trips."""
        with self._lock:
            target = self.rounds + count
            if not self._lock.wait_for(
                    lambda: self.rounds >= target or self.error is not None, timeout):
                raise AssertionError(f"ping loop: {self.rounds} of {target} rounds")
        if self.error is not None:
            raise AssertionError(f"ping loop failed: {self.error!r}")

    def wait_seconds(self, seconds: float) -> None:
        """Keep measuring for ``seconds`` (a measured stretch, not a synchronisation)."""
        end = time.perf_counter() + seconds
        with self._lock:
            while time.perf_counter() < end and self.error is None:
                self._lock.wait(end - time.perf_counter())
        if self.error is not None:
            raise AssertionError(f"ping loop failed: {self.error!r}")

    def reset(self) -> None:
        with self._lock:
            self.max_gap = 0.0
            self._last = time.perf_counter()

    def gap(self) -> float:
        """The largest gap since :meth:`reset`, counting the one still open."""
        with self._lock:
            return max(self.max_gap, time.perf_counter() - self._last)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        self.sock.close()
        if self.error is not None:
            raise AssertionError(f"ping loop failed: {self.error!r}")


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """Descriptors process ``pid`` has open (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def admin(port: int, command: bytes) -> bytes:
    """The reply to a multi-line admin ``command`` (status, workers...), up to its ``.``."""
    with connect(port) as sock:
        sock.sendall(command + b"\n")
        data = b""
        while not (data == b".\n" or data.endswith(b"\n.\n")):
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"admin {command!r}: closed after {data!r}")
            data += chunk
        return data


def queued_total(port: int, function: bytes) -> int | None:
    """The ``total`` column of admin ``status`` for ``function`` (None: not listed)."""
    for line in admin(port, b"status").split(b"\n"):
        cols = line.split(b"\t")
        if cols[0] == function and len(cols) >= 4:
            return int(cols[1])
    return None


def drain(sock: socket.socket, timeout: float = 60.0) -> int:
    """Read and drop everything the server has sent on ``sock`` so far: sends an ECHO and
    reads up to its answer. Returns the bytes read."""
    answer = encode(RES, c.ECHO_RES, (b"drain-marker",))
    sock.sendall(request(c.ECHO_REQ, b"drain-marker"))
    sock.settimeout(timeout)
    tail = b""
    total = 0
    while not tail.endswith(answer):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError("closed while draining")
        total += len(chunk)
        tail = (tail + chunk)[-len(answer):]
    return total


def submit_many(sock: socket.socket, function: bytes, count: int, tag: bytes = b"j",
                ptype: int = c.SUBMIT_JOB) -> None:
    """Pipeline ``count`` submissions of ``function`` (arguments ``tag`` + index)."""
    batch = 2000
    for start in range(0, count, batch):
        sock.sendall(b"".join(request(ptype, function, b"", tag + b"%d" % i)
                              for i in range(start, min(count, start + batch))))
