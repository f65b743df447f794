"""Poison jobs on a live server: real worker connections that GRAB the job and close.

The asyncio ``JobServer`` runs in process on port 0. A dying worker is a raw connection that
registers, grabs (sleeping for a NOOP when the job is not back yet, as a real worker does) and
closes without a result; after ``--job-retries`` of them the foreground client gets WORK_FAIL,
a background job is in ``show dead jobs``, an admin retry runs it, and with a sqlite queue the
dead-letter list survives a restart.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from gear import constants as c
from gear.protocol.packets import request
from gear.server.broker import BrokerConfig
from gear.server.config import ServerConfig
from gear.server.engine import JobServer

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def read(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    _magic, ptype, size = struct.unpack("!4sII", await reader.readexactly(12))
    return ptype, (await reader.readexactly(size)).split(b"\x00")


async def start(queue: str = "memory", retries: int | None = None) -> JobServer:
    bconfig = BrokerConfig(handle_prefix=b"H:t")
    if retries is not None:
        bconfig.job_retries = retries
    server = JobServer(ServerConfig(host="127.0.0.1", port=0, queue=queue), bconfig)
    await server.start()
    return server


async def grab(server: JobServer, function: bytes) -> tuple[Conn, list[bytes]]:
    """A new worker of ``function`` with the job it was handed (it waits for one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request(c.CAN_DO, function) + request(c.GRAB_JOB_UNIQ))
    while True:
        ptype, args = await asyncio.wait_for(read(reader), 10)
        if ptype == c.JOB_ASSIGN_UNIQ:
            return (reader, writer), args
        if ptype == c.NO_JOB:
            writer.write(request(c.PRE_SLEEP))
        else:
            assert ptype == c.NOOP, ptype
            writer.write(request(c.GRAB_JOB_UNIQ))


async def die(server: JobServer, function: bytes, times: int) -> None:
    for _ in range(times):
        (_reader, writer), _args = await grab(server, function)
        writer.close()
        await writer.wait_closed()


async def admin(server: JobServer, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    reply = await admin_on((reader, writer), line)
    writer.close()
    return reply


async def admin_on(conn: Conn, line: bytes) -> bytes:
    """An admin line on an open connection (answered after what it sent before)."""
    reader, writer = conn
    writer.write(line + b"\n")
    reply = await asyncio.wait_for(reader.readline(), 10)
    if line.startswith(b"show"):
        while not reply.endswith(b".\n"):
            reply += await asyncio.wait_for(reader.readline(), 10)
    return reply


def test_poison_job_fails_foreground_and_dead_letters_background() -> None:
    async def main() -> None:
        server = await start()  # the default --job-retries: 5
        try:
            cr, cw = await asyncio.open_connection("127.0.0.1", server.port)
            cw.write(request(c.SUBMIT_JOB, b"poison", b"fg", b"boom")
                     + request(c.SUBMIT_JOB_BG, b"poison", b"bg", b"boom!"))
            assert await read(cr) == (c.JOB_CREATED, [b"H:t:1"])
            assert await read(cr) == (c.JOB_CREATED, [b"H:t:2"])
            await die(server, b"poison", 10)  # five attempts each
            assert await asyncio.wait_for(read(cr), 10) == (c.WORK_FAIL, [b"H:t:1"])
            listing = await admin(server, b"show dead jobs")
            (line,) = listing[:-2].splitlines()
            handle, fn, unique, attempts, _died, size = line.split(b"\t")
            assert (handle, fn, unique, attempts, size) == (b"H:t:2", b"poison", b"bg", b"5",
                                                            b"5")
            assert await admin(server, b"show jobs") == b".\n"
            assert await admin(server, b"retry dead job H:t:2") == b"OK\r\n"
            worker, (new_handle, _fn, new_unique, data) = await grab(server, b"poison")
            assert (new_unique, data) == (b"bg", b"boom!") and new_handle != b"H:t:2"
            worker[1].write(request(c.WORK_COMPLETE, new_handle, b"fixed"))
            assert await admin_on(worker, b"show jobs") == b".\n"  # completed and forgotten
            assert await admin_on(worker, b"show dead jobs") == b".\n"
            worker[1].close()
            cw.close()
        finally:
            await server.shutdown(graceful=False)

    asyncio.run(main())


def test_dead_letter_list_survives_a_restart(tmp_path: Path) -> None:
    queue = f"sqlite://{tmp_path}/queue.db"

    async def main() -> None:
        server = await start(queue, retries=2)
        try:
            cr, cw = await asyncio.open_connection("127.0.0.1", server.port)
            cw.write(request(c.SUBMIT_JOB_BG, b"poison", b"u1", b"one")
                     + request(c.SUBMIT_JOB_BG, b"poison", b"u2", b"two")
                     + request(c.SUBMIT_JOB_BG, b"other", b"u3", b"live"))
            for _ in range(3):
                assert (await read(cr))[0] == c.JOB_CREATED
            await die(server, b"poison", 4)
            assert len((await admin(server, b"show dead jobs")).splitlines()) == 3
            cw.close()
        finally:
            await server.shutdown(graceful=False)

        server = await start(queue, retries=2)
        try:
            listing = (await admin(server, b"show dead jobs"))[:-2].splitlines()
            assert [line.split(b"\t")[2:4] for line in listing] == [[b"u1", b"2"],
                                                                   [b"u2", b"2"]]
            assert (await admin(server, b"status")).startswith(b"other\t1\t0\t0\n")
            first = listing[0].split(b"\t")[0]
            assert await admin(server, b"retry dead job " + first) == b"OK\r\n"
            assert await admin(server, b"drop dead jobs poison") == b"OK 1\n"
        finally:
            await server.shutdown(graceful=False)

        server = await start(queue, retries=2)
        try:
            assert await admin(server, b"show dead jobs") == b".\n"
            worker, (handle, _fn, unique, data) = await grab(server, b"poison")
            assert (unique, data) == (b"u1", b"one")  # the retried job, live again
            worker[1].write(request(c.WORK_COMPLETE, handle, b""))
            assert await admin_on(worker, b"show unique jobs") == b"u3\n.\n"  # other's job
            worker[1].close()
        finally:
            await server.shutdown(graceful=False)

    asyncio.run(main())


def test_geard_options_wire_the_retries_and_the_bound() -> None:
    from gear.server import cli
    from tests.support.peers import GeardProcess
    from tests.support.raw import connect, read_packet

    defaults = cli.parse_args([])
    assert (defaults.job_retries, defaults.dead_letter_max) == (5, 10000)
    assert cli.parse_args(["-j", "0"]).job_retries == 0

    geard = GeardProcess("--queue", "memory", "-j", "1", "--dead-letter-max", "1",
                         "--job-handle-prefix", "H:p")
    try:
        client = connect(geard.port)
        client.sendall(request(c.SUBMIT_JOB_BG, b"poison", b"a", b"1")
                       + request(c.SUBMIT_JOB_BG, b"poison", b"b", b"2"))
        assert [read_packet(client) for _ in range(2)] == [(c.JOB_CREATED, [b"H:p:1"]),
                                                           (c.JOB_CREATED, [b"H:p:2"])]
        for _ in range(2):  # a worker takes the next job and its connection closes
            worker = connect(geard.port)
            worker.sendall(request(c.CAN_DO, b"poison") + request(c.GRAB_JOB_UNIQ))
            while (packet := read_packet(worker))[0] != c.JOB_ASSIGN_UNIQ:
                worker.sendall(request(c.PRE_SLEEP if packet[0] == c.NO_JOB
                                       else c.GRAB_JOB_UNIQ))
            worker.close()
        client.sendall(b"show dead jobs\n")
        listing = b""
        while not listing.endswith(b".\n"):
            listing += client.recv(4096)
        (line,) = listing[:-2].splitlines()  # both died after one attempt; the bound kept one
        handle, function, _unique, attempts, _died, _size = line.split(b"\t")
        assert (handle in (b"H:p:1", b"H:p:2"), function, attempts) == (True, b"poison", b"1")
        client.close()
    finally:
        geard.stop()
