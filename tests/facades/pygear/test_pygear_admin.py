"""pygear.Admin against geard and gearmand: the seed's full command set with pygear's reply
shapes (admin.c, tests/test_admin.py of Yelp/pygear), and pygear's admin bugs fixed."""

from __future__ import annotations

import pytest

from gear.compat import pygear
from tests.facades.pygear.conftest import client
from tests.support.peers import wait_for


def admin_of(endpoint) -> pygear.Admin:
    return pygear.Admin(endpoint.host, endpoint.port, 10)


def test_status_create_and_drop_function(server) -> None:
    admin = admin_of(server)
    assert admin.status() == []
    admin.create_function("foo")
    assert admin.status() == [
        {"function": "foo", "available_workers": 0, "running": 0, "total": 0}
    ]
    admin.maxqueue("foo", 100)
    admin.maxqueue("foo")  # the seed's "maxqueue [function_name] [max_queue_size]"
    admin.drop_function("foo")
    assert admin.status() == []


def test_status_counts_queued_jobs(server) -> None:
    client(server).do_background("queued", "x")
    assert admin_of(server).status() == [
        {"function": "queued", "available_workers": 0, "running": 0, "total": 1}
    ]


def test_workers_lists_every_function(server) -> None:
    w = pygear.Worker()
    w.add_server(server.host, server.port)
    w.set_identifier("cool")
    w.add_function("first", 0, lambda job: None)
    w.add_function("second", 0, lambda job: None)
    w.set_timeout(10)
    with pytest.raises(pygear.TIMEOUT):
        w.work()  # connects and registers
    admin = admin_of(server)
    mine = [x for x in admin.workers() if x["client_id"] == "cool"]
    assert len(mine) == 1
    assert set(mine[0]) == {"fd", "ip_address", "client_id", "functions"}
    assert sorted(mine[0]["functions"]) == ["first", "second"]  # pygear dropped the first
    assert isinstance(mine[0]["fd"], str) and mine[0]["ip_address"] == "127.0.0.1"


def test_version_getpid_verbose(server) -> None:
    admin = admin_of(server)
    version = admin.version()
    assert isinstance(version, str) and version[0].isdigit()
    assert admin.getpid() == server.pid
    assert admin.verbose() in ["FATAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]


def test_show_jobs_and_show_unique_jobs(server) -> None:
    res = client(server).do_background("shown", "x", "a-unique")
    admin = admin_of(server)
    jobs = admin.show_jobs()
    assert [j["handle"] for j in jobs] == [res["job_handle"]]
    assert set(jobs[0]) == {"handle", "retries", "ignore_job", "job_queued"}
    assert all(isinstance(v, int) for k, v in jobs[0].items() if k != "handle")
    assert admin.show_unique_jobs() == ["a-unique"]


def test_cancel_job(server) -> None:
    res = client(server).do_background("cancelled", "x")
    admin = admin_of(server)
    assert admin.cancel_job(res["job_handle"]) is None
    if server.kind == "geard":
        assert admin.show_jobs() == []
    # (gearmand keeps a cancelled job listed until a GRAB skips it: docs/protocol.md §2.2)
    with pytest.raises(pygear.ERROR):
        admin.cancel_job("H:nowhere:1")


def test_an_err_reply_raises_error(server) -> None:
    with pytest.raises(pygear.ERROR):
        admin_of(server).drop_function("never-created")


@pytest.mark.interop
def test_shutdown_is_refused_by_gearmand(gearmand) -> None:
    # gearmand 1.1.15 removed "shutdown" (docs/protocol.md §2.2): its ERR reply raises ERROR.
    admin = pygear.Admin(gearmand.host, gearmand.port, 10)
    for graceful in (False, True):
        with pytest.raises(pygear.ERROR, match="UNKNOWN_COMMAND"):
            admin.shutdown(graceful)


@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_geard(graceful: bool) -> None:
    from gear.server.gear_server import Server

    server = Server(0, host="127.0.0.1")
    try:
        pygear.Admin("127.0.0.1", server.port, 10).shutdown(graceful)
        c = pygear.Client()
        c.add_server("127.0.0.1", server.port)
        c.set_timeout(2000)
        wait_for(lambda: _refused(c), what="geard to stop listening")
    finally:
        server.shutdown()


def _refused(c: pygear.Client) -> bool:
    try:
        c.do_background("f", "x")
    except (pygear.COULD_NOT_CONNECT, pygear.LOST_CONNECTION):
        return True
    return False


def test_timeout_raises_timeout() -> None:
    import socket

    with socket.socket() as listener:  # accepts, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        admin = pygear.Admin("127.0.0.1", listener.getsockname()[1], 0.2)
        with pytest.raises(pygear.TIMEOUT):
            admin.status()
