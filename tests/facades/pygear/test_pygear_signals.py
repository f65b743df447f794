"""Ctrl-C reaches a pygear-API program at any time (the README's complaint about libgearman):
SIGINT to a process blocked in ``do()``, in ``work()`` and inside a job's function raises
KeyboardInterrupt there, and an interrupted job goes back to the server for another worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from gear.compat import pygear
from tests.facades.pygear.conftest import client
from tests.support.peers import wait_for

REPO = Path(__file__).resolve().parents[3]

BLOCKED_CLIENT = """
from gear.compat import pygear
c = pygear.Client()
c.add_server('127.0.0.1', PORT)
c.do('nobody_serves_this', 'x')   # no timeout: waits for ever
"""

IDLE_WORKER = """
from gear.compat import pygear
w = pygear.Worker()
w.add_server('127.0.0.1', PORT)
w.add_function('idle', 0, lambda job: None)
w.work()                           # default timeout: waits for a job for ever
"""

BUSY_WORKER = """
import sys, threading
from gear.compat import pygear
def stuck(job):
    print('running', flush=True)
    threading.Event().wait()
w = pygear.Worker()
w.add_server('127.0.0.1', PORT)
w.add_function('stuck', 0, stuck)
w.work()
"""


def start(code: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code.replace("PORT", str(port))], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupted(proc: subprocess.Popen[str]) -> str:
    """SIGINT, then the exit must follow (the wait is bounded so a hang fails the test)."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    return err


def status(endpoint: Any, name: str) -> dict[str, Any] | None:
    for s in pygear.Admin(endpoint.host, endpoint.port, 5).status():
        if s["function"] == name:
            return s
    return None


def test_ctrl_c_while_blocked_in_do(server) -> None:
    proc = start(BLOCKED_CLIENT, server.port)
    wait_for(lambda: (status(server, "nobody_serves_this") or {}).get("total"),
             what="the client's job to be queued")
    err = interrupted(proc)
    assert "in do" in err


def test_ctrl_c_while_blocked_in_work(server) -> None:
    proc = start(IDLE_WORKER, server.port)
    wait_for(lambda: (status(server, "idle") or {}).get("available_workers"),
             what="the worker to register")
    err = interrupted(proc)
    assert "in work" in err


def test_ctrl_c_inside_a_job_gives_the_job_back(server, start_worker) -> None:
    proc = start(BUSY_WORKER, server.port)
    wait_for(lambda: (status(server, "stuck") or {}).get("available_workers"),
             what="the worker to register")
    c = client(server)
    c.do_background("stuck", "x")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "running\n"
    interrupted(proc)
    served = threading.Event()
    start_worker(server, {"stuck": lambda job: served.set()})
    assert served.wait(30)  # the server gave the interrupted job to the next worker
