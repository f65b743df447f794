"""python-gearman's SSL host entries (``{'host', 'port', 'keyfile', 'certfile', 'ca_certs'}``)
connect with gear's mutual TLS: a client and a worker through geard's TLS listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gear.compat import gearman
from gear.compat.gearman import errors
from gear.server.gear_server import Server
from tests.facades.gearman.helpers import worker_running
from tests.support.pki import PKI, make_pki


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, PKI]]:
    pki = make_pki(tmp_path)
    server = Server(0, host="127.0.0.1", ssl_key=pki.server_key, ssl_cert=pki.server_cert,
                    ssl_ca=pki.ca)
    try:
        yield server, pki
    finally:
        server.shutdown()


def entry(server: Server, key: str, cert: str, ca: str) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "keyfile": key, "certfile": cert,
            "ca_certs": ca}


def test_client_and_worker_over_mutual_tls(tls_server: tuple[Server, PKI]) -> None:
    server, pki = tls_server
    hosts: list[Any] = [entry(server, pki.client_key, pki.client_cert, pki.ca)]
    big = b"x" * 200_000  # more than one TLS record each way
    with worker_running(hosts, {"rev": lambda w, job: job.data[::-1]}):
        client = gearman.GearmanClient(hosts)
        results = [client.submit_job("rev", data, poll_timeout=20).result
                   for data in (b"abc", big)]
    assert results == [b"cba", big[::-1]]


def test_an_untrusted_server_is_server_unavailable(tls_server: tuple[Server, PKI]) -> None:
    server, pki = tls_server
    hosts: list[Any] = [entry(server, pki.rogue_key, pki.rogue_cert, pki.other_ca)]
    with pytest.raises(errors.ServerUnavailable):
        gearman.GearmanClient(hosts).submit_job("rev", b"x", poll_timeout=5)


def test_an_incomplete_ssl_entry_is_refused() -> None:
    with pytest.raises(errors.GearmanError):
        gearman.GearmanClient([{"host": "127.0.0.1", "port": 1}])
