"""A pygear-API client with other workers, and other clients with a pygear-API worker, on geard
and gearmand: libgearman's own tools (``gearman -w`` and ``gearman`` from gearman-tools) and our
threaded gear API."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pytest

import gear
from gear.compat import pygear
from tests.facades.pygear.conftest import Noop, client
from tests.support.peers import require_tool, wait_for


def registered(endpoint: Any, name: str) -> bool:
    status = pygear.Admin(endpoint.host, endpoint.port, 5).status()
    return any(s["function"] == name and s["available_workers"] for s in status)


@pytest.mark.interop
def test_pygear_client_with_a_libgearman_worker(server) -> None:
    tool = require_tool("gearman")
    worker = subprocess.Popen(
        [tool, "-w", "-c", "2", "-h", server.host, "-p", str(server.port), "-f", "upper",
         "--", "tr", "a-z", "A-Z"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: registered(server, "upper"), what="gearman -w")
        c = client(server)
        assert c.do("upper", "hello pygear") == "HELLO PYGEAR"  # JSON text, upper-cased
        c.set_serializer(Noop())
        assert c.do("upper", b"raw bytes") == b"RAW BYTES"
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.interop
def test_libgearman_client_with_a_pygear_worker(server, start_worker) -> None:
    tool = require_tool("gearman")
    start_worker(server, {"upper": lambda job: job.workload().upper()}, serializer=Noop())
    wait_for(lambda: registered(server, "upper"), what="the pygear worker")
    out = subprocess.run(
        [tool, "-h", server.host, "-p", str(server.port), "-f", "upper", "hello libgearman"],
        capture_output=True, timeout=30, check=True,
    )
    assert out.stdout.strip() == b"HELLO LIBGEARMAN"


@pytest.mark.interop
def test_libgearman_background_job_for_a_pygear_worker(server, start_worker) -> None:
    tool = require_tool("gearman")
    done = threading.Event()
    got = []

    def record(job: Any) -> bytes:
        got.append(job.workload())
        done.set()
        return b""

    start_worker(server, {"bg": record}, serializer=Noop())
    subprocess.run([tool, "-b", "-h", server.host, "-p", str(server.port), "-f", "bg",
                    "in the background"], capture_output=True, timeout=30, check=True)
    assert done.wait(30)
    assert got == [b"in the background"]


def test_pygear_client_with_a_gear_worker(server) -> None:
    worker = gear.Worker("gear-worker")
    worker.addServer(server.host, server.port)
    worker.registerFunction("reverse")
    worker.waitForServer()

    def serve() -> None:
        job = worker.getJob()
        job.sendWorkData(b'"chunk"')
        job.sendWorkComplete(job.arguments[::-1])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        c = client(server)
        # JSON '"abc"' reversed is '"cba"': still JSON.
        assert c.do("reverse", "abc") == "cba"
        thread.join(10)
    finally:
        worker.shutdown()


def test_gear_client_with_a_pygear_worker(server, start_worker) -> None:
    def reverse(job: Any) -> bytes:
        job.send_status(1, 2)
        return job.workload()[::-1]

    start_worker(server, {"reverse": reverse}, serializer=Noop())
    c = gear.Client("gear-client")
    c.addServer(server.host, server.port)
    c.waitForServer()
    try:
        job = gear.Job("reverse", b"gear to pygear", unique=b"u-1")
        c.submitJob(job)
        assert job.wait(30)
        assert job.data == [b"raegyp ot raeg"] and not job.failure
        assert (job.numerator, job.denominator) == (b"1", b"2")
    finally:
        c.shutdown()
