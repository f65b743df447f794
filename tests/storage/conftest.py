"""Fixtures for the storage tests: every backend behind one factory, and a real PostgreSQL.

``backend`` is parametrized over memory, sqlite and postgres so that the contract suite is ONE
set of tests. The PostgreSQL server is session-scoped (initdb costs about a second); each test
gets its own table, so tests stay independent without a database per test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gear.server.storage import MemoryStorage, Storage, open_storage
from tests.support.peers import missing_peer
from tests.support.postgres import PostgresServer

_tables = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL listening only on a unix socket (skips when not installed)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing_peer("psycopg is not installed (pip install 'geartrain[postgres]')")
    server = PostgresServer()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A ``--queue`` URL naming a table no other test uses."""
    if not postgres_server.running():  # a failed restart test must not cascade
        postgres_server.start()
    return f"{postgres_server.url}&table=t{next(_tables)}"


@dataclass
class Backend:
    """How a test opens (and reopens) one store."""

    name: str
    open: Callable[[], Storage]   # a new handle on the same store, not loaded yet


@pytest.fixture(params=[
    "memory",
    "sqlite",
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.interop]),
])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        store = MemoryStorage()
        return Backend("memory", lambda: store)
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path}/queue.db"
    else:
        url = request.getfixturevalue("pg_url")

    def reopen() -> Storage:
        storage = open_storage(url)
        assert storage is not None
        return storage

    return Backend(request.param, reopen)


@pytest.fixture
def storage(backend: Backend) -> Iterator[Storage]:
    """An opened (loaded, empty) store of each backend, closed after the test."""
    store = backend.open()
    assert store.load() == []
    try:
        yield store
    finally:
        store.close()
