"""/status: the JSON snapshot says what admin ``status``, ``prioritystatus`` and ``workers``
say at the same instant, plus the job counters."""

from __future__ import annotations

import time

from gear.server.observe.status import snapshot
from tests.server.observe.scene import FINISHED, SUBMITTED, scene


def test_status_equals_the_admin_commands_at_the_same_instant() -> None:
    sc = scene()
    net = sc.net
    admin = net.connect()
    doc = snapshot(net.broker, sc.metrics, time.monotonic() - 5.0, "9.9.9")
    status = net.admin(admin, b"status\n")
    priorities = net.admin(admin, b"prioritystatus\n")
    workers = net.admin(admin, b"workers\n")
    assert status.endswith(b".\n") and workers.endswith(b".\n")

    assert doc["version"] == "9.9.9"
    assert 5.0 <= doc["uptime_seconds"] < 60
    rows = [line.split(b"\t") for line in status.splitlines()[:-1]]
    assert [(f["name"], f["total"], f["running"], f["workers"]) for f in doc["functions"]] == [
        (name.decode(), int(total), int(running), int(n)) for name, total, running, n in rows]
    assert [f["waiting"] for f in doc["functions"]] == [
        int(total) - int(running) for _, total, running, _ in rows]
    prows = [line.split(b"\t") for line in priorities.splitlines()[:-1]]
    assert [(f["name"], *f["waiting_by_priority"].values()) for f in doc["functions"]] == [
        (name.decode(), int(h), int(n), int(lo)) for name, h, n, lo, _ in prows]
    assert doc["functions"][0] == {
        "name": "work", "total": 4, "running": 1, "waiting": 3, "workers": 1,
        "waiting_by_priority": {"high": 1, "normal": 2, "low": 0}}

    lines = workers.splitlines()[:-1]
    assert lines[0].startswith(b"%d " % admin.fd)  # the asking connection, newest first
    listed = []
    for line in lines:
        head, _, functions = line.partition(b" :")
        fd, address, client_id = head.split(b" ")
        listed.append({"fd": int(fd), "address": address.decode(), "id": client_id.decode(),
                       "functions": functions.decode().split()})
    assert [{k: w[k] for k in ("fd", "address", "id", "functions")}
            for w in doc["workers"]] == listed
    running = {w["fd"]: w["running"] for w in doc["workers"]}
    assert running[sc.workers[0].fd] == [sc.held.decode()]
    assert running[sc.workers[1].fd] == running[sc.workers[2].fd] == []

    assert doc["totals"] == {
        "total": 4, "running": 1, "waiting": 3, "workers": 3,
        "connections": len(lines),
        "jobs_submitted": sum(SUBMITTED.values()),
        "jobs_completed": sum(FINISHED.values()),
    }
