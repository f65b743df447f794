"""Server options, duplicate servers, ``async with`` and Link settings: the set-up code Client,
Worker and Admin share through gear.aio.connection (no job server needed)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from gear import aio
from gear.aio.connection import Endpoint, Link, new_endpoint
from gear.errors import ConfigurationError
from tests.aio.helpers import run


def _add(kind: str, host: str, port: int, **options: Any) -> Endpoint:
    """Configure one server the way each front-end takes it; return the resulting Endpoint."""
    if kind == "admin":
        return aio.Admin(host, port, **options).endpoint
    owner = aio.Client() if kind == "client" else aio.Worker()
    owner.add_server(host, port, **options)
    (conn,) = owner._connections
    return conn.endpoint


@pytest.mark.parametrize("kind", ["client", "worker", "admin"])
def test_options_reach_the_endpoint(kind: str) -> None:
    context = ssl.create_default_context()
    endpoint = _add(
        kind,
        "gm.example",
        4731,
        ssl_context=context,
        keepalive=True,
        tcp_keepidle=30,
        tcp_keepintvl=5,
        tcp_keepcnt=3,
    )
    assert endpoint == Endpoint("gm.example", 4731, context, True, 30, 5, 3)
    assert _add(kind, "gm.example", 4730) == Endpoint("gm.example")


@pytest.mark.parametrize("kind", ["client", "worker", "admin"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ssl_key": "k.pem"}, "needs all of ssl_key, ssl_cert and ssl_ca"),
        (
            {
                "ssl_key": "k",
                "ssl_cert": "c",
                "ssl_ca": "a",
                "ssl_context": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
            },
            "either ssl_context or",
        ),
    ],
)
def test_bad_tls_options_are_refused_by_every_front_end(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _add(kind, "127.0.0.1", 4730, **options)


@pytest.mark.parametrize("kind", ["client", "worker", "admin"])
def test_unknown_option_is_a_type_error(kind: str) -> None:
    with pytest.raises(TypeError):
        _add(kind, "127.0.0.1", 4730, ssl_keyfile="k.pem")


@pytest.mark.parametrize("owner", [aio.Client, aio.Worker])
def test_a_server_is_added_once(owner: type[aio.Client] | type[aio.Worker]) -> None:
    front = owner()
    front.add_server("127.0.0.1", 4730)
    front.add_server("127.0.0.1", 4731)
    with pytest.raises(ConfigurationError, match=r"server 127\.0\.0\.1:4730 is already added"):
        front.add_server("127.0.0.1", "4730")  # type: ignore[arg-type]
    assert len(front._connections) == 2


def test_new_endpoint_compares_host_and_port() -> None:
    taken = [Endpoint("a", 1), Endpoint("b", 2)]
    assert new_endpoint(taken, "a", 2) == Endpoint("a", 2)
    with pytest.raises(ConfigurationError):
        new_endpoint(taken, "b", 2)


def test_links_use_the_owners_reconnect_settings() -> None:
    async def main() -> None:
        client = aio.Client(connect_timeout=1.5, reconnect_min=0.2, reconnect_max=3.0)
        client.add_server("127.0.0.1", 4730)
        link = client._connections[0].link
        assert (link.connect_timeout, link.backoff_min, link.backoff_max) == (1.5, 0.2, 3.0)
        assert not link.text
        worker = aio.Worker(connect_timeout=2.5, reconnect_min=0.1, reconnect_max=1.0)
        other = Link.for_owner(Endpoint("127.0.0.1"), client._connections[0], worker)
        assert (other.connect_timeout, other.backoff_min, other.backoff_max) == (2.5, 0.1, 1.0)
        await client.close()

    run(main())


def test_async_with_closes_client_and_admin_and_stops_worker() -> None:
    async def main() -> None:
        async with aio.Client() as client:
            assert isinstance(client, aio.Client) and client._started
        with pytest.raises(ConfigurationError, match="closed"):
            client.add_server("127.0.0.1", 4730)
        async with aio.Admin("127.0.0.1", 4730) as admin:
            assert isinstance(admin, aio.Admin)
        with pytest.raises(ConfigurationError, match="closed"):
            await admin.command("status")
        async with aio.Worker() as worker:
            worker.add_server("127.0.0.1", 1)
            await worker.start()
        assert worker._stopped is not None and worker._stopped.is_set()

    run(main())
