"""gear.harp over TLS: geard's harp port with the ``--ssl-*`` context of its Gearman port.

With key, certificate and CA geard wants mutual TLS on both ports (docs/harp.md, "Options"):
the harp client presents a certificate of the CA and verifies the server's against it; a
client that trusts another CA, or presents no certificate, gets a CommunicationError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import gear
import gear.harp as harp
from gear import aio
from gear.net import client_tls_context
from gear.threaded.harp_worker import HarpWorker
from tests.harp.conftest import WAIT, Procedures, serve
from tests.server.harp.conftest import LiveServer
from tests.support.pki import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(Path(tmp_path_factory.mktemp("harp-pki")))


@pytest.fixture
def tls_live(pki: PKI) -> Iterator[LiveServer]:
    server = LiveServer(ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_worker(tls_live: LiveServer, pki: PKI) -> Iterator[None]:
    procs = Procedures()
    w = gear.Worker("harp-tls")
    w.addServer("127.0.0.1", tls_live.port, ssl_key=pki.client_key, ssl_cert=pki.client_cert,
                ssl_ca=pki.ca)
    w.waitForServer(WAIT)
    hw = HarpWorker(w, "localhost")
    serve(hw, procs)
    hw.start(threads=2)
    try:
        yield
    finally:
        procs.release_all()
        hw.stop()
        w.shutdown()


@pytest.mark.usefixtures("tls_worker")
def test_calls_over_tls(tls_live: LiveServer, pki: PKI) -> None:
    rpc = harp.HarpCaller("127.0.0.1", tls_live.harp_port, ca_file=pki.ca,
                          ssl_key=pki.client_key, ssl_cert=pki.client_cert, timeout=WAIT)
    call = rpc.localhost.count(3)
    assert call.follow(since=0).all() == [0, 1, 2]
    assert call.get() == "done"
    with harp.JSONSSLConnection("127.0.0.1", tls_live.harp_port, pki.ca, ssl_key=pki.client_key,
                                ssl_cert=pki.client_cert, timeout=WAIT) as conn:
        conn.send({"harpcaller": 1, "get_result": call.id(), "wait": True})
        assert conn.receive() == {"result": "done"}

    async def aio_call() -> object:
        context = client_tls_context(pki.client_key, pki.client_cert, pki.ca)
        client = aio.HarpClient("127.0.0.1", tls_live.harp_port, ssl_context=context,
                                timeout=WAIT)
        return await client.get(await client.submit("localhost", "echo", "tls"))

    assert asyncio.run(aio_call()) == ["tls"]


def test_wrong_ca_or_no_certificate_is_communication_error(tls_live: LiveServer,
                                                           pki: PKI) -> None:
    untrusting = harp.HarpCaller("127.0.0.1", tls_live.harp_port, ca_file=pki.other_ca,
                                 ssl_key=pki.client_key, ssl_cert=pki.client_cert,
                                 timeout=WAIT)
    with pytest.raises(harp.CommunicationError):
        untrusting.localhost.echo(1)
    anonymous = harp.HarpCaller("127.0.0.1", tls_live.harp_port, ca_file=pki.ca, timeout=WAIT)
    with pytest.raises(harp.CommunicationError):
        anonymous.localhost.echo(1)
    plain = harp.HarpCaller("127.0.0.1", tls_live.harp_port, timeout=WAIT)
    with pytest.raises(harp.CommunicationError):
        plain.localhost.echo(1)
