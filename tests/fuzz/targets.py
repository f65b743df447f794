"""The fuzz targets: one function per target, from arbitrary bytes to a pass or a failure.

Shared by the bounded hypothesis run of the suite (tests/fuzz/test_fuzz.py) and the long,
coverage-guided run (bench/fuzz.py, atheris). Each target reads its input with :class:`Input`
(every byte string is a valid input: what runs out reads as zeros) and fails by raising: an
``AssertionError`` for a broken invariant, or whatever unexpected exception escaped the code
under test. The documented errors are caught where they are documented:

* ``packets``: the protocol :class:`~gear.protocol.packets.Decoder` fed the stream in two
  chunkings (whole, and random pieces) with limits taken from the input. Both must give the
  same events and the same error; every event must be the bytes at its place in the stream
  (a frame re-encodes to them, an admin line is them less its line ending); a frame's fields
  re-encode to its body. Only the decoder's ``ProtocolError`` kinds may be raised, and a failed
  decoder refuses further input.
* ``admin``: the client-side readers of admin replies (``gear.protocol.admin``) on the input's
  lines, then the same lines as admin commands to a broker holding functions, queued, running
  and background jobs, with and without an ACL: every reply is whole lines, the broker keeps
  its books (tests/server/test_broker_invariants.py ``check``), and a connection closed for a
  long line is replaced as the network layer does.
* ``broker``: a program of connection events from several fake peers (packets built from
  vocabularies, raw bytes, disconnects, timers, store answers, admin cancel) fed into a
  :class:`~gear.server.broker.Broker` as the engine does. After each step the books are
  checked; ``feed`` must never raise (its contract); at the end every peer leaves, one worker
  drains what is left, and every job is accounted for: each created job finished exactly once
  (the lifecycle seam), no background job was orphaned, no job is left, every stored job was
  removed once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from gear import constants as c
from gear.errors import InvalidDataError, ProtocolError
from gear.protocol import admin as padmin
from gear.protocol.packets import (
    FIELD_COUNTS,
    AdminLine,
    Decoder,
    Frame,
    encode,
    request,
)
from gear.server.broker import Job, JobEvents, Outcome, Peer
from tests.server.helpers import Net, Store
from tests.server.test_broker_invariants import check

__all__ = ["TARGETS", "Input", "admin", "broker", "packets"]

T = TypeVar("T")


class Input:
    """Reads numbers and byte strings off a fuzz input; past its end everything is zero."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.pos += 1
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


# ------------------------------------------------------------------------------- packets

PACKET_LIMITS = [64 * 1024 * 1024, 0, 1, 12, 300]
LINE_LIMITS = [64 * 1024, 0, 1, 8, 100]


def _decode(stream: bytes, chunks: list[int], flags: int) -> tuple[list[object], str | None]:
    """The events of ``stream`` fed in pieces of the given sizes, and the error's class."""
    dec = Decoder(PACKET_LIMITS[flags % 5], LINE_LIMITS[(flags >> 3) % 5],
                  text=not flags & 0x40, unknown_types=bool(flags & 0x80))
    events: list[object] = []
    pos = 0
    try:
        for size in chunks:
            events.extend(dec.feed(stream[pos:pos + size]))
            pos += size
    except ProtocolError as exc:
        try:
            dec.feed_all(b"more")
        except ProtocolError:
            pass
        else:
            raise AssertionError("a failed decoder took more input") from exc
        return events, type(exc).__name__
    assert pos >= len(stream)
    return events, None


def packets(data: bytes) -> None:
    inp = Input(data)
    flags, seed = inp.byte(), inp.byte()
    stream = inp.rest()
    whole, whole_err = _decode(stream, [len(stream)], flags)
    rnd = random.Random(seed)
    sizes = []
    left = len(stream)
    while left > 0:
        sizes.append(min(left, rnd.choice([1, 1, 2, 3, 5, 12, 13, 100])))
        left -= sizes[-1]
    pieces, pieces_err = _decode(stream, sizes or [0], flags)
    assert pieces == whole, "the chunking changed the events"
    assert pieces_err == whole_err, "the chunking changed the error"
    pos = 0
    for event in whole:
        if isinstance(event, Frame):
            wire = event.encode()
            assert stream[pos:pos + len(wire)] == wire
            pos += len(wire)
            if event.ptype not in FIELD_COUNTS:
                assert flags & 0x80, "an unknown type framed without unknown_types"
                continue
            assert len(event.body) <= PACKET_LIMITS[flags % 5]
            try:
                fields = event.args()
            except InvalidDataError:
                continue
            if FIELD_COUNTS[event.ptype]:
                assert encode(event.magic, event.ptype, fields) == wire
            else:
                assert fields == []
        else:
            assert isinstance(event, AdminLine) and not flags & 0x40
            line = event.line
            assert b"\n" not in line and line[:1] != b"\x00"
            if stream[pos:pos + len(line) + 2] == line + b"\r\n":
                pos += len(line) + 2
            else:
                assert stream[pos:pos + len(line) + 1] == line + b"\n"
                pos += len(line) + 1
    assert pos <= len(stream)


# --------------------------------------------------------------------------------- admin

def _client_side(lines: list[bytes]) -> None:
    """The readers of admin replies never fail on any text, and classify consistently."""
    for i, line in enumerate(lines):
        reply = padmin.AdminReply(line)
        assert reply.multiline == padmin.is_multiline(line.rstrip(b"\r\n"))
        for later in lines[i + 1:i + 6]:
            if reply.add(later):
                break
        _ = reply.error, reply.failure
        err = padmin.parse_admin_error(line)
        assert (err is not None) == line.startswith(b"ERR")
        try:
            value = padmin.parse_admin_ok(line)
        except InvalidDataError:
            assert not (line == b"OK" or line.startswith(b"OK "))
        else:
            assert line == b"OK" + (b" " + value if value or line != b"OK" else b"")
    padmin.parse_status(lines)
    padmin.parse_prioritystatus(lines)
    padmin.parse_workers(lines)
    padmin.parse_show_jobs(lines)
    padmin.parse_show_unique_jobs(lines)


def _populated(acl: bool) -> tuple[Net, str | None]:
    """A broker with functions, queued/running/background jobs, a sleeper (and an ACL)."""
    config: dict[str, object] = {}
    if acl:
        from gear.acl import ACL, ACLEntry

        rules = ACL()
        rules.add(ACLEntry("admin", register=".*", invoke=".*", grant=True))
        rules.add(ACLEntry("user", invoke="^a"))
        config["acl"] = rules
    net = Net(**config)
    subject = "admin" if acl else None
    w = net.connect(subject)
    for fn in (b"a", b"b"):
        net.send(w, c.CAN_DO, fn)
    client = net.connect(subject)
    for fn, unique, ptype in ((b"a", b"", c.SUBMIT_JOB), (b"a", b"u1", c.SUBMIT_JOB_BG),
                              (b"b", b"", c.SUBMIT_JOB_HIGH), (b"c", b"u2", c.SUBMIT_JOB_LOW_BG)):
        net.send(client, ptype, fn, unique, b"data")
    net.send(w, c.GRAB_JOB_UNIQ)
    sleeper = net.connect(subject)
    net.send(sleeper, c.CAN_DO, b"c")
    net.send(sleeper, c.PRE_SLEEP)
    for p in (w, client, sleeper):
        net.take(p)
    return net, subject


ADMIN_WORDS = [b"status", b"prioritystatus", b"workers", b"version", b"getpid", b"verbose",
               b"show jobs", b"show unique jobs", b"cancel job", b"create function",
               b"drop function", b"maxqueue", b"shutdown", b"shutdown graceful", b"acl list",
               b"acl grant invoke", b"acl grant register", b"acl grant grant", b"acl revoke",
               b"acl self-revoke", b"SHOW", b"show", b""]


def admin(data: bytes) -> None:
    inp = Input(data)
    flags = inp.byte()
    text = inp.rest()
    lines = text.split(b"\n")
    _client_side(lines)
    net, subject = _populated(acl=bool(flags & 1))
    if not flags & 2:
        subject = None  # an admin connection without a certificate
    adm = net.connect(subject)
    ending = b"\r\n" if flags & 4 else b"\n"
    for line in lines[:64]:
        line = line.rstrip(b"\r")
        if flags & 8 and line[:1] != b"\x00":
            # a vocabulary word in front of the fuzzed rest, so that commands are reached
            line = ADMIN_WORDS[line[0] % len(ADMIN_WORDS)] + line[1:] if line else line
        if line[:1] == b"\x00":
            continue  # a binary packet, not an admin line: the broker target's business
        net.raw(adm, line + ending)
        out = net.take(adm)
        assert not out or out.endswith(b"\n"), out
        check(net)
        net.broker.shutdown_requested = None  # the engine's business; keep serving
        if adm.closing:
            net.broker.disconnect(adm)  # what the network layer does after the flush
            adm = net.connect(subject)


# -------------------------------------------------------------------------------- broker

FUNCTIONS = [b"a", b"b", b"c"]
UNIQUES = [b"", b"", b"u1", b"u2", b"-", b"x" * 70]
SUBMITS = (c.SUBMIT_JOB, c.SUBMIT_JOB_BG, c.SUBMIT_JOB_HIGH, c.SUBMIT_JOB_HIGH_BG,
           c.SUBMIT_JOB_LOW, c.SUBMIT_JOB_LOW_BG)
RESULTS = (c.WORK_COMPLETE, c.WORK_FAIL, c.WORK_EXCEPTION, c.WORK_DATA, c.WORK_WARNING,
           c.WORK_STATUS)
GRABS = (c.GRAB_JOB, c.GRAB_JOB_UNIQ, c.GRAB_JOB_ALL)
OTHER = (c.ECHO_REQ, c.SET_CLIENT_ID, c.OPTION_REQ, c.GET_STATUS, c.GET_STATUS_UNIQUE,
         c.ALL_YOURS, c.NOOP, 5, c.JOB_CREATED, c.SUBMIT_REDUCE_JOB)
OPTIONS = [b"exceptions", b"bogus", b""]


class Books(JobEvents):
    """Every job the broker created and how it finished (the lifecycle seam)."""

    def __init__(self) -> None:
        self.born: dict[int, Job] = {}
        self.ended: dict[int, Outcome] = {}

    def created(self, job: Job) -> None:
        assert id(job) not in self.born, "created twice"
        self.born[id(job)] = job

    def finished(self, job: Job, outcome: Outcome) -> None:
        key = id(job)
        assert self.born.get(key) is job, "a job finished that was never created"
        assert key not in self.ended, f"finished twice ({outcome})"
        if job.background:
            assert outcome is not Outcome.ORPHANED, "a background job was orphaned"
        self.ended[key] = outcome


def _handle(inp: Input, net: Net) -> bytes:
    jobs = list(net.broker.jobs)
    if jobs and inp.byte() % 4:
        return jobs[inp.byte() % len(jobs)]
    return b"H:t:%d" % inp.byte()


def _packet(inp: Input, net: Net) -> bytes:
    """One request packet built from the vocabularies (or a mangled one)."""
    kind = inp.byte() % 8
    fn = inp.pick(FUNCTIONS)
    if kind in (0, 1):
        args = [fn, inp.pick(UNIQUES), inp.pick([b"x", b"y", b""])]
        data = request(inp.pick(SUBMITS), *args)
    elif kind == 2:
        data = request(c.CAN_DO, fn)
    elif kind == 3:
        ptype = inp.pick((c.CANT_DO, c.CAN_DO_TIMEOUT, c.RESET_ABILITIES, c.PRE_SLEEP))
        if ptype == c.CANT_DO:
            data = request(ptype, fn)
        elif ptype == c.CAN_DO_TIMEOUT:
            data = request(ptype, fn, b"%d" % (inp.byte() % 4))
        else:
            data = request(ptype)
    elif kind == 4:
        data = request(inp.pick(GRABS))
    elif kind == 5:
        ptype = inp.pick(RESULTS)
        handle = _handle(inp, net)
        if ptype == c.WORK_FAIL:
            data = request(ptype, handle)
        elif ptype == c.WORK_STATUS:
            data = request(ptype, handle, b"%d" % inp.byte(), b"%d" % inp.byte())
        else:
            data = request(ptype, handle, b"r")
    elif kind == 6:
        when = b"%d" % (int(net.now) + (inp.byte() % 16) - 4)
        unique = inp.pick(UNIQUES)
        if inp.byte() % 2:
            data = request(c.SUBMIT_JOB_EPOCH, fn, unique, when, b"e")
        else:  # minute, hour, day of month, month, day of week (docs/protocol.md)
            data = request(c.SUBMIT_JOB_SCHED, fn, unique,
                           *(b"%d" % (inp.byte() % 3) for _ in range(5)), b"e")
    else:
        ptype = inp.pick(OTHER)
        n = FIELD_COUNTS.get(ptype, 1)
        fields = [inp.pick(OPTIONS) if ptype == c.OPTION_REQ else _handle(inp, net)
                  for _ in range(n)]
        data = request(ptype, *fields) if n else request(ptype)
    if inp.byte() % 16 == 0:  # mangle: cut it, or change one byte
        cut = inp.byte()
        data = data[:cut] if cut < len(data) else data[:-1] + bytes([inp.byte()])
    return data


def broker(data: bytes) -> None:
    transcript = _program(data, None)
    if data[:1] and data[0] & 16:
        # The same program with every feed cut into small pieces: the broker's own framing
        # (pipeline.py's fast path, then the Decoder) must not change a byte of the output.
        assert _program(data, random.Random(len(data))) == transcript, (
            "the chunking changed what the peers got")


def _program(data: bytes, pieces: random.Random | None) -> list[bytes]:
    """Run one broker program; what every peer got after each step (and who was closed)."""
    inp = Input(data)
    flags = inp.byte()
    saved = Store(batched=bool(flags & 2))
    config: dict[str, object] = {"job_retries": flags >> 6, "worker_wakeup": (flags >> 2) % 3}
    if flags & 1:
        config.update(saved.config())
    net = Net(**config)
    saved.broker = net.broker
    books = Books()
    if flags & 32:  # the lifecycle seam takes functions off the fast path: half the runs
        net.broker.add_observer(books)

    def feed(peer: Peer, chunk: bytes) -> None:
        while pieces is not None and len(chunk) > 1:
            cut = pieces.randint(1, 13)
            net.raw(peer, chunk[:cut])
            chunk = chunk[cut:]
        net.raw(peer, chunk)

    peers = [net.connect() for _ in range(4)]
    adm = net.connect()
    transcript = []
    steps = 0
    while not inp.done and steps < 300:
        steps += 1
        op = inp.byte() % 12
        i = inp.byte() % len(peers)
        peer = peers[i]
        if op == 0:
            net.broker.disconnect(peer)
            peers[i] = net.connect()
        elif op == 1:  # raw bytes (the seeds' recorded traffic), up to 511 at a time
            n = inp.byte()
            feed(peer, inp.take(n + 256 * (inp.byte() % 2)))
        elif op == 2 and saved.pending:
            saved.finish(inp.byte() % len(saved.pending),
                         None if inp.byte() % 5 else OSError("disk full"))
        elif op == 3:
            net.now += inp.byte() % 5
            net.broker.run_timers()
        elif op == 4 and net.broker.jobs:
            transcript.append(net.admin(adm, b"cancel job " + _handle(inp, net) + b"\r\n"))
        else:  # a few packets back to back, split at one random place
            wire = b"".join(_packet(inp, net) for _ in range(1 + inp.byte() % 4))
            cut = inp.byte() % (len(wire) + 1)
            feed(peer, wire[:cut])
            feed(peer, wire[cut:])
        net.broker.shutdown_requested = None
        check(net)
        for j, p in enumerate(peers):
            transcript.append(b"%d:%d:" % (j, p.closing) + net.take(p))
            if p.closing:  # flushed, then closed, as the network layer does
                net.broker.disconnect(p)
                peers[j] = net.connect()
        net.take(adm)
    _drain(net, saved, peers, books if flags & 32 else None)
    return transcript


def _drain(net: Net, saved: Store, peers: list[Peer], books: Books | None) -> None:
    """Everyone leaves, stores answer, one worker runs the rest: nothing may be left over."""
    while saved.pending:
        saved.finish()
    # Past every timer: CAN_DO_TIMEOUTs, and epoch jobs however far ahead a fuzzed packet
    # put them (a SUBMIT_JOB_EPOCH's time is the client's to choose).
    net.now = max([net.now + 1000.0] + [j.when + 1.0 for j in net.broker.jobs.values()
                                         if j.when])
    net.broker.run_timers()
    for p in peers:
        net.broker.disconnect(p)
    worker = net.worker(*net.broker.functions)  # fuzzed names too
    for _ in range(2000):
        net.send(worker, c.GRAB_JOB)
        (reply,) = net.recv(worker)
        if reply[0] == c.NO_JOB:
            break
        assert reply[0] == c.JOB_ASSIGN, reply
        net.send(worker, c.WORK_COMPLETE, reply[1].split(b"\x00")[0], b"")
    check(net)
    assert net.broker.jobs == {}, "jobs left after the drain"
    assert all(f.total == f.running == f.waiting == 0 for f in net.broker.functions.values())
    assert sorted(saved.removed) == sorted(saved.stored), "a stored job not removed once"
    if books is not None:
        assert set(books.born) == set(books.ended), "a created job never finished"


TARGETS = {"packets": packets, "admin": admin, "broker": broker}
