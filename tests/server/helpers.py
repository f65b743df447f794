"""Helpers shared by the broker and admin tests: a broker driven as connections would drive it.

:class:`Net` is a broker with an injected clock and admin handler, plus helpers to talk to it;
:func:`res` / :func:`error` build expected packets; :class:`Store` is a store answered by hand;
:class:`Mirror` drives gearmand and the broker with the same steps (interop tests).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

from gear import constants as c
from gear.protocol.packets import RES, Decoder, encode, request
from gear.server.admin import run_command
from gear.server.broker import Broker, BrokerConfig, Job, Peer
from gear.server.storage.base import StoredJob

__all__ = ["Mirror", "Net", "Store", "error", "no_fd", "res", "sorted_lines"]


class Net:
    """A broker plus helpers to talk to it as connections would."""

    def __init__(self, **config: object) -> None:
        config.setdefault("handle_prefix", b"H:t")
        self.now = 1_000_000.0
        self.broker = Broker(BrokerConfig(**config), clock=lambda: self.now,  # type: ignore[arg-type]
                             admin=run_command)
        self._fd = 10

    def connect(self, subject: str | None = None) -> Peer:
        self._fd += 1
        return self.broker.connect("127.0.0.1", 40000 + self._fd, self._fd, subject)

    def send(self, peer: Peer, ptype: int, *args: bytes) -> None:
        self.broker.feed(peer, request(ptype, *args))

    def raw(self, peer: Peer, data: bytes) -> None:
        self.broker.feed(peer, data)

    def take(self, peer: Peer) -> bytes:
        """Everything queued for ``peer`` (and check it was marked dirty)."""
        data = b"".join(peer.out)
        if data:
            assert peer in self.broker.dirty
        peer.out.clear()
        self.broker.dirty.discard(peer)
        return data

    def recv(self, peer: Peer) -> list[tuple[int, bytes]]:
        """The packets queued for ``peer`` as (type, body)."""
        frames = Decoder().feed_all(self.take(peer))
        out = []
        for frame in frames:
            assert frame.magic == RES  # type: ignore[union-attr]
            out.append((frame.ptype, frame.body))  # type: ignore[union-attr]
        return out

    def admin(self, peer: Peer, line: bytes) -> bytes:
        self.raw(peer, line)
        return self.take(peer)

    def worker(self, *functions: bytes) -> Peer:
        w = self.connect()
        for fn in functions:
            self.send(w, c.CAN_DO, fn)
        return w

    def sleep(self, w: Peer) -> None:
        """GRAB (expect NO_JOB) then PRE_SLEEP, as libgearman does."""
        self.send(w, c.GRAB_JOB_UNIQ)
        assert self.recv(w) == [(c.NO_JOB, b"")]
        self.send(w, c.PRE_SLEEP)
        assert self.recv(w) == []

    def submit(self, client: Peer, fn: bytes, unique: bytes = b"", data: bytes = b"x",
               ptype: int = c.SUBMIT_JOB) -> bytes:
        self.send(client, ptype, fn, unique, data)
        (packet,) = self.recv(client)
        assert packet[0] == c.JOB_CREATED, packet
        return packet[1]

    def grab(self, w: Peer, ptype: int = c.GRAB_JOB_UNIQ) -> tuple[int, list[bytes]]:
        self.send(w, ptype)
        (packet,) = self.recv(w)
        return packet[0], packet[1].split(b"\x00")


def res(ptype: int, *args: bytes) -> bytes:
    return encode(RES, ptype, args)


def error(code: bytes, text: bytes) -> tuple[int, bytes]:
    return (c.ERROR, code + b"\x00" + text)


class Store:
    """A store answered by hand: a callback per job (``BrokerConfig.store``), or batched
    (``store_batched`` + ``Broker.stored_batch``). ``pending`` holds (record, done callback or
    job) in submission order."""

    def __init__(self, batched: bool = False) -> None:
        self.batched = batched
        self.pending: list[tuple[StoredJob, object]] = []
        self.removed: list[int] = []
        self.stored: list[int] = []  # keys whose store succeeded
        self.calls = 0  # store / store_batched calls
        self.broker: Broker | None = None

    def config(self) -> dict[str, object]:
        if self.batched:
            return {"store_batched": self.store_batched, "remove": self.remove}
        return {"store": self.store, "remove": self.remove}

    def net(self, **config: object) -> Net:
        net = Net(**self.config(), **config)
        self.broker = net.broker
        return net

    def store(self, record: StoredJob, done: object) -> None:
        self.calls += 1
        self.pending.append((record, done))

    def store_batched(self, records: list[StoredJob], jobs: list[Job]) -> None:
        self.calls += 1
        self.pending.extend(zip(records, jobs, strict=True))

    def remove(self, key: int) -> None:
        self.removed.append(key)

    def answer(self, token: object, exc: BaseException | None) -> None:
        if self.batched:
            assert self.broker is not None and isinstance(token, Job)
            self.broker.stored_batch([token], exc)
        else:
            token(exc)  # type: ignore[operator]

    def finish(self, index: int = 0, exc: BaseException | None = None) -> StoredJob:
        record, token = self.pending.pop(index)
        if exc is None:
            self.stored.append(record.key)
        self.answer(token, exc)
        return record


Normalize = Callable[[bytes], bytes]


def sorted_lines(data: bytes) -> bytes:
    """gearmand lists functions and jobs in hash order: compare line sets."""
    lines = data.split(b"\n")
    return b"\n".join(sorted(lines))


def no_fd(data: bytes) -> bytes:
    """``workers`` shows socket fds, which differ: blank them, then sort."""
    return sorted_lines(re.sub(rb"(?m)^\d+ ", b"FD ", data))


class Mirror:
    """Drive gearmand and the broker with the same steps and compare their output."""

    def __init__(self, address: tuple[str, int], **config: object) -> None:
        config.setdefault("handle_prefix", None)  # H:<hostname>, as gearmand
        config.setdefault("version", b"1.1.20+ds")
        self.net = Net(**config)
        self.address = address
        self.socks: dict[str, socket.socket] = {}
        self.peers: dict[str, Peer] = {}
        self.buffers: dict[str, bytes] = {}
        self.marks = 0

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()

    def open(self, name: str) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socks[name] = sock
        self.buffers[name] = b""
        self.peers[name] = self.net.connect()

    def _until(self, name: str, marker: bytes) -> bytes:
        sock = self.socks[name]
        buf = self.buffers[name]
        while marker not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"gearmand closed {name}; got {buf!r}")
            buf += chunk
        end = buf.index(marker) + len(marker)
        self.buffers[name] = buf[end:]
        return buf[:end]

    def sync(self, name: str) -> tuple[bytes, bytes]:
        """(gearmand, broker) output of ``name`` up to a fresh ECHO marker."""
        self.marks += 1
        mark = b"sync-%d" % self.marks
        self.socks[name].sendall(request(c.ECHO_REQ, mark))
        self.net.raw(self.peers[name], request(c.ECHO_REQ, mark))
        return self._until(name, res(c.ECHO_RES, mark)), self.net.take(self.peers[name])

    def step(self, name: str, data: bytes, normalize: Normalize | None = None) -> bytes:
        """Send ``data`` on ``name`` to both; compare what every connection got."""
        self.socks[name].sendall(data)
        self.net.raw(self.peers[name], data)
        # The sender first: once its marker is back, gearmand has handled the step and queued
        # anything it sends to the other connections before their markers.
        order = [name] + [n for n in self.socks if n != name]
        result = b""
        for n in order:
            theirs, ours = self.sync(n)
            if normalize is not None and n == name:
                theirs, ours = normalize(theirs), normalize(ours)
            assert ours == theirs, f"connection {n} after {data!r}"
            if n == name:
                result = ours
        return result

    def closes(self, name: str, data: bytes) -> None:
        """Both close ``name`` after ``data``, with the same bytes before the close."""
        sock = self.socks[name]
        sock.sendall(data)
        self.net.raw(self.peers[name], data)
        buf = self.buffers[name]
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        assert self.peers[name].closing
        assert self.net.take(self.peers[name]) == buf
        sock.close()
        del self.socks[name]
