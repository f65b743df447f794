"""open_storage(): the --queue URL forms, their options, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from gear.errors import ConfigurationError
from gear.server.storage import open_storage, parse_size
from gear.server.storage.sqlite import SqliteStorage


@pytest.mark.parametrize("url", ["memory", "MEMORY", "memory:", "memory://", " memory "])
def test_memory_means_no_persistence(url: str) -> None:
    assert open_storage(url) is None


def test_sqlite_absolute_relative_and_options(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_storage(f"sqlite://{tmp_path}/my%20queue.db")
    assert isinstance(store, SqliteStorage)
    assert store.path == f"{tmp_path}/my queue.db" and store.max_size is None
    store = open_storage(f"sqlite:///{tmp_path}/q.db")  # what `--data-dir` builds: 4 slashes
    assert isinstance(store, SqliteStorage) and store.path == f"{tmp_path}/q.db"
    monkeypatch.chdir(tmp_path)
    store = open_storage("sqlite:data/queue.db?max_size=64M")
    assert isinstance(store, SqliteStorage)
    assert store.path == "data/queue.db" and store.max_size == 64 << 20
    assert store.load() == []  # relative to the working directory, parent created
    store.close()
    assert (tmp_path / "data" / "queue.db").exists()


@pytest.mark.parametrize("url, message", [
    ("sqlite://host/queue.db", "no host part"),
    ("sqlite:///", "no database file name"),
    ("sqlite:", "no database file name"),
    ("sqlite:///q.db?journal=off", "unknown sqlite queue option 'journal'"),
    ("sqlite:///q.db?max_size=lots", "invalid size"),
    ("redis://localhost", "schemes: memory, sqlite, postgres, postgresql"),
    ("/var/lib/geard/queue.db", "unknown queue"),
    ("libsqlite3", "unknown queue"),
    ("memory:/x", "use 'memory'"),
])
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        open_storage(url)


def test_postgres_urls_keep_libpq_options_and_take_our_table() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (the test extra has it)")
    from gear.server.storage.postgres import PostgresStorage

    store = open_storage("postgresql:///jobs?host=/run/postgresql&table=queues.gear&sslmode=disable")
    assert isinstance(store, PostgresStorage)
    assert store.table == "queues.gear"
    assert store.conninfo == "postgresql:///jobs?host=%2Frun%2Fpostgresql&sslmode=disable"
    store = open_storage("postgres://u:pw@db.example:5433/jobs")
    assert isinstance(store, PostgresStorage)
    assert store.table == "gear_queue" and store.conninfo == "postgres://u:pw@db.example:5433/jobs"
    assert "pw" not in repr(store)
    with pytest.raises(ConfigurationError, match="table name"):
        open_storage("postgresql:///jobs?table=a.b.c")
    with pytest.raises(ConfigurationError, match="table name"):
        open_storage("postgresql:///jobs?table=")


@pytest.mark.parametrize("text, value", [
    ("512", 512), ("64K", 65536), ("64kb", 65536), ("1.5M", 1572864), ("2GiB", 2 << 30),
])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "0", "-1K", "12Q", "M"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_size(text)
