"""GearmanAdminClient of gear.compat.gearman: every command and its reply shape (str), the
timeout, and server down, against geard and gearmand."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from gear.compat import gearman
from gear.compat.gearman import errors
from gear.compat.gearman.admin_client import GearmanAdminClient
from tests.facades.gearman.helpers import FakeServer, silent
from tests.support.peers import GeardProcess, GearmandProcess


def test_status_workers_version_pid(hosts: list[str], server: Any) -> None:
    task = f"adm-{uuid.uuid4().hex[:8]}"
    admin = GearmanAdminClient(hosts)
    gearman.GearmanClient(hosts).submit_job(task, b"x", background=True, poll_timeout=10)
    assert [s for s in admin.get_status() if s["task"] == task] == [
        {"task": task, "queued": 1, "running": 0, "workers": 0}]
    workers = admin.get_workers()
    assert workers and all(set(w) == {"file_descriptor", "ip", "client_id", "tasks"}
                           and isinstance(w["ip"], str) for w in workers)
    assert admin.get_version().startswith("OK ")
    assert admin.get_pid() == f"OK {server.pid}" or admin.get_pid() == str(server.pid)
    assert isinstance(admin.ping_server(), float)


def test_maxqueue_ok_is_ok_not_a_protocol_error(hosts: list[str]) -> None:
    """python-gearman compared gearmand's ``OK\\r\\n`` with 'OK\\r' and raised; not here."""
    task = f"mq-{uuid.uuid4().hex[:8]}"
    gearman.GearmanClient(hosts).submit_job(task, b"x", background=True, poll_timeout=10)
    assert GearmanAdminClient(hosts).send_maxqueue(task, 5) == "OK"


def test_show_jobs_unique_jobs_and_cancel(hosts: list[str]) -> None:
    task = f"show-{uuid.uuid4().hex[:8]}"
    unique = f"u-{uuid.uuid4().hex[:8]}"
    request = gearman.GearmanClient(hosts).submit_job(task, b"x", unique=unique,
                                                      background=True, poll_timeout=10)
    handle = request.job.handle.decode()
    admin = GearmanAdminClient(hosts)
    jobs = [j for j in admin.get_jobs() if j["handle"] == handle]
    assert len(jobs) == 1 and set(jobs[0]) == {"handle", "queued", "canceled", "enabled"}
    assert {"unique": unique} in admin.get_unique_jobs()
    assert admin.show_unique_jobs() == admin.get_unique_jobs()
    assert [j for j in admin.show_jobs() if j["handle"] == handle] == jobs
    reply = admin.cancel_job(handle)
    assert isinstance(reply, str) and reply


def test_shutdown_stops_geard() -> None:
    server = GeardProcess()
    try:
        admin = GearmanAdminClient([f"{server.host}:{server.port}"])
        assert admin.send_shutdown(graceful=False) is None
        assert server.proc is not None and server.proc.wait(10) is not None
    finally:
        server.stop()


@pytest.mark.interop
def test_shutdown_on_gearmand_returns_none_as_python_gearman(gearmand: GearmandProcess) -> None:
    """gearmand dropped ``shutdown`` in 1.1.15 (docs/protocol.md §2.2): it answers ERR and keeps
    running; python-gearman's send_shutdown returns None whatever the reply."""
    admin = GearmanAdminClient([f"{gearmand.host}:{gearmand.port}"])
    assert admin.send_shutdown() is None
    assert admin.get_version().startswith("OK")


def test_a_silent_server_times_out_after_poll_timeout() -> None:
    fake = FakeServer(silent)
    admin = GearmanAdminClient([fake.host], poll_timeout=0.2)
    with pytest.raises(errors.InvalidAdminClientState):
        admin.get_status()
    admin.shutdown()
    fake.close_listener()


def test_server_down_is_server_unavailable() -> None:
    fake = FakeServer(silent)
    fake.close_listener()
    with pytest.raises(errors.ServerUnavailable):
        GearmanAdminClient([fake.host]).get_version()


def test_one_server_only() -> None:
    with pytest.raises(ValueError):
        GearmanAdminClient(["127.0.0.1:1", "127.0.0.1:2"])


def test_pid_is_this_servers(hosts: list[str], server: Any) -> None:
    assert str(server.pid) in GearmanAdminClient(hosts).get_pid()
    assert os.getpid() != server.pid
