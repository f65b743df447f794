"""A scripted in-process Gearman server for packet-level tests of the aio client and worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gear import constants as c
from gear.protocol.packets import Decoder, Frame, response


class FakeServer:
    """Accepts one connection and lets the test read its packets and answer by hand."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[Frame] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.port = 0
        #: OPTION_REQ job_cancel packets the worker sent (docs/protocol.md §1.7). They are kept
        #: out of ``packets`` and not answered, as by a server that ignores the option, so
        #: scripts that do not care about it read the rest unchanged.
        self.job_cancel_requests = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connections += 1
        self.connected.set()
        decoder = Decoder(text=False)
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                assert isinstance(frame, Frame) and frame.is_request
                if frame.ptype == c.OPTION_REQ and frame.body == b"job_cancel":
                    self.job_cancel_requests += 1
                    continue
                self.packets.put_nowait(frame)

    async def expect(self, ptype: int) -> Frame:
        frame = await asyncio.wait_for(self.packets.get(), 5)
        assert frame.ptype == ptype, f"expected {c.types[ptype]}, got {frame!r}"
        return frame

    async def expect_unordered(self, *ptypes: int) -> dict[int, Frame]:
        """The next packets are ``ptypes`` in some order, by type. For a handler's packets and
        the worker's sleep probe, which share a write: which comes first depends on whether
        the handler starts eagerly (Python 3.12+)."""
        frames: dict[int, Frame] = {}
        for _ in ptypes:
            frame = await asyncio.wait_for(self.packets.get(), 5)
            assert frame.ptype in ptypes and frame.ptype not in frames, f"unexpected {frame!r}"
            frames[frame.ptype] = frame
        return frames

    async def assert_quiet(self) -> None:
        """Let the worker run many loop iterations (each loopback round trip takes a few) and
        check it sent nothing: a busy loop or an extra GRAB would show up here."""
        for _ in range(50):
            await asyncio.sleep(0)
        assert self.packets.empty(), f"unexpected {self.packets.get_nowait()!r}"

    def send(self, ptype: int, *args: bytes) -> None:
        assert self.writer is not None
        self.writer.write(response(ptype, *args))

    def drop(self) -> None:
        """Close the current connection (the peer sees a lost connection)."""
        assert self.writer is not None
        self.writer.close()


@asynccontextmanager
async def fake_server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    server = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        if fake.writer is not None:
            fake.writer.close()
