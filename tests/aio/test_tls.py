"""Mutual TLS like gear (key/cert/ca files) and a caller-built ssl.SSLContext.

Debian's gearmand 1.1.20 accepts ``--ssl`` but reads the TLS handshake as protocol bytes
(INVALID_MAGIC), so these run against our own server, which gear's TLS clients also use.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gear import aio
from gear.errors import ConfigurationError
from tests.aio.certs import TLSFiles, make_tls_files
from tests.aio.helpers import run


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path)


@pytest.fixture
def tls_server(tls: TLSFiles) -> Iterator[Any]:
    import gear

    srv = gear.Server(0, host="127.0.0.1", ssl_key=tls.server_key, ssl_cert=tls.server_cert,
                      ssl_ca=tls.ca)
    try:
        yield srv
    finally:
        srv.shutdown()


def test_mutual_tls_client_worker_admin(tls: TLSFiles, tls_server: Any) -> None:
    files = {"ssl_key": tls.client_key, "ssl_cert": tls.client_cert, "ssl_ca": tls.ca}
    worker = aio.Worker()

    @worker.function("secure")
    async def secure(job: aio.WorkerJob) -> bytes:
        return b"secret " + job.arguments

    async def main() -> None:
        worker.add_server("127.0.0.1", tls_server.port, **files)
        await worker.start(2)
        context = ssl.create_default_context(cafile=tls.ca)
        context.check_hostname = False
        context.load_cert_chain(tls.client_cert, tls.client_key)
        async with aio.Client() as client, aio.Admin("127.0.0.1", tls_server.port,
                                                     ssl_context=context) as admin:
            client.add_server("127.0.0.1", tls_server.port, **files)
            await client.wait_for_server(5)
            protocol = client._connections[0].link.protocol
            assert protocol is not None and protocol.transport is not None
            assert protocol.transport.get_extra_info("ssl_object") is not None
            assert await client.run("secure", b"x", timeout=5) == b"secret x"
            assert await admin.version()
        await worker.stop()

    run(main())


def test_half_configured_tls_is_refused(tls: TLSFiles) -> None:
    client = aio.Client()
    with pytest.raises(ConfigurationError):
        client.add_server("127.0.0.1", 4730, ssl_key=tls.client_key, ssl_cert=tls.client_cert)
    with pytest.raises(ConfigurationError):
        client.add_server("127.0.0.1", 4730, ssl_ca=tls.ca,
                          ssl_context=ssl.create_default_context())
    asyncio.run(client.close())


class _Handler:
    """A LinkHandler that records the first loss."""

    def __init__(self) -> None:
        self.down = asyncio.Event()
        self.error: BaseException | None = None

    def link_up(self, link: Any) -> None:
        pass

    def link_event(self, link: Any, event: Any) -> None:
        pass

    def link_down(self, link: Any, error: BaseException) -> None:
        self.error = self.error or error
        self.down.set()


def test_a_client_without_a_certificate_is_told_why(tls: TLSFiles, tls_server: Any) -> None:
    # Issue 15 (c): the server (mutual TLS 1.3) closes right after the handshake; the loss
    # names the certificate problem, and so does the link's last error.
    from gear.aio.connection import Endpoint, Link

    async def main() -> None:
        context = aio.make_ssl_context(ssl_ca=tls.ca)  # no certificate of ours
        handler = _Handler()
        link = Link(Endpoint("127.0.0.1", tls_server.port, context), handler)
        link.start()
        try:
            await asyncio.wait_for(handler.down.wait(), 10)
            assert "refused this client's TLS certificate" in str(handler.error)
            assert "ssl_cert" in str(handler.error)
            assert "certificate" in str(link.last_error)
        finally:
            await link.close()

    run(main())


def test_a_refusal_during_a_tls12_handshake_is_named(tls: TLSFiles, tls_server: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from gear.aio.connection import Endpoint, Link
    from gear.protocol.backoff import Backoff

    async def main() -> None:
        failed = asyncio.Event()

        def next_delay(self: Backoff) -> float:
            failed.set()
            return 0.05

        monkeypatch.setattr(Backoff, "next_delay", next_delay)
        context = aio.make_ssl_context(ssl_ca=tls.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # the server checks us mid-handshake
        link = Link(Endpoint("127.0.0.1", tls_server.port, context), _Handler())
        link.start()
        try:
            await asyncio.wait_for(failed.wait(), 10)
            assert "refused this client's TLS certificate" in str(link.last_error)
            assert "during the handshake" in str(link.last_error)
        finally:
            await link.close()

    run(main())
