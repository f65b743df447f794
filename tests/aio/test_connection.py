"""PacketProtocol's receive path over a real loopback socket (no job server needed): frames
split across reads, a frame larger than the receive buffer, and one buffer reused for every read.
"""

from __future__ import annotations

import asyncio

from gear import constants as c
from gear.aio.connection import RECV_BUFFER_SIZE, Endpoint, Event, PacketProtocol
from gear.protocol.packets import Frame, response
from tests.aio.helpers import run


def test_frames_split_across_reads_and_bigger_than_the_buffer() -> None:
    big = bytes(range(256)) * (RECV_BUFFER_SIZE // 256 * 3 + 1)  # several reads' worth
    small = response(c.NOOP)
    assign = response(c.JOB_ASSIGN, b"H:1", b"fn", b"args")
    chunks = [small + assign[:5], assign[5:], response(c.WORK_DATA, b"H:1", big), small]

    async def main() -> None:
        go_on = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                # Each chunk completes exactly one frame: wait for it, so the client reads
                # every chunk on its own and the JOB_ASSIGN spans two reads.
                await go_on.wait()
                go_on.clear()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        events: list[Event] = []
        views: set[int] = set()

        def on_event(event: Event) -> None:
            events.append(event)
            go_on.set()

        loop = asyncio.get_running_loop()

        class Recording(PacketProtocol):
            def get_buffer(self, sizehint: int) -> memoryview:
                view = super().get_buffer(sizehint)
                views.add(id(view.obj))
                return view

        _, protocol = await loop.create_connection(
            lambda: Recording(Endpoint("127.0.0.1", port), on_event), "127.0.0.1", port
        )
        await protocol.closed
        server.close()
        await server.wait_closed()

        assert protocol.closed.result() is None
        frames = [e for e in events if isinstance(e, Frame)]
        assert [f.ptype for f in frames] == [c.NOOP, c.JOB_ASSIGN, c.WORK_DATA, c.NOOP]
        assert frames[1].args() == [b"H:1", b"fn", b"args"]
        assert frames[2].args() == [b"H:1", big]
        assert len(views) == 1  # every read went into the same per-connection buffer

    run(main())
