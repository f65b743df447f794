"""TLS in the transport: mutual TLS (gear's model), server-only TLS, refusals, the CN.

Certificates are generated once per test session by tests/support/pki.py (a throwaway CA, a
server certificate for 127.0.0.1/localhost, client certificates from that CA and from another
CA).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from gear.errors import ConfigurationError
from gear.server.transport import build_ssl_context
from tests.server.test_network import LOOPS, open_conn, run, serving
from tests.support.pki import PKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: PKI, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def whoami(reader: Any, writer: Any) -> bytes:
    writer.write(b"whoami\n")
    return bytes(await asyncio.wait_for(reader.readline(), 5))


async def refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True if a TLS client with ``ctx`` cannot get an answer (handshake or first read fails)."""
    try:
        reader, writer = await open_conn(port, ssl=ctx)
        reply = await whoami(reader, writer)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    writer.close()
    return reply == b""


@LOOPS
def test_mutual_tls_passes_the_client_cn_to_the_broker(pki: PKI, loop_kind: str) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_mutual_tls_refuses_clients_without_a_certificate_or_from_another_ca(
    pki: PKI, loop_kind: str
) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            assert await refused(srv.port, client_context(pki))
            assert await refused(srv.port, client_context(pki, pki.rogue_cert, pki.rogue_key))
            # Nobody got a peer in the broker with a subject, and a good client still works.
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_server_only_tls_needs_no_client_certificate(pki: PKI, loop_kind: str) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert) as srv:
            reader, writer = await open_conn(srv.port, ssl=client_context(pki))
            assert await whoami(reader, writer) == b"127.0.0.1 None\n"
            writer.close()
            # Plaintext on a TLS port gets nothing back and does not hurt the server.
            r2, w2 = await open_conn(srv.port)
            w2.write(b"whoami\n")
            assert await asyncio.wait_for(r2.read(), 15) == b""
            reader, writer = await open_conn(srv.port, ssl=client_context(pki))
            assert await whoami(reader, writer) == b"127.0.0.1 None\n"
            writer.close()

    run(main(), loop_kind)


def test_a_silent_client_does_not_block_other_handshakes(pki: PKI) -> None:
    async def main() -> None:
        async with serving(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca) as srv:
            _silent_r, silent_w = await open_conn(srv.port)  # TCP only, never says hello
            reader, writer = await open_conn(
                srv.port, ssl=client_context(pki, pki.client_cert, pki.client_key)
            )
            assert await whoami(reader, writer) == b"127.0.0.1 worker1\n"
            writer.close()
            silent_w.close()

    run(main())


def test_tls_configuration_errors_are_reported(pki: PKI, tmp_path: Path) -> None:
    assert build_ssl_context(None, None, None) is None
    with pytest.raises(ConfigurationError, match="key and a certificate"):
        build_ssl_context(None, None, pki.ca)
    with pytest.raises(ConfigurationError, match="key and a certificate"):
        build_ssl_context(pki.server_key, None, None)
    with pytest.raises(ConfigurationError, match="cannot load"):
        build_ssl_context(str(tmp_path / "missing.key"), pki.server_cert, None)
    ctx = build_ssl_context(pki.server_key, pki.server_cert, pki.ca)
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
