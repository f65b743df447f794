"""geard's HTTP side, live: routes, Content-Type, errors, slow clients, keep-alive, TLS, the
command line, and /status equal to the admin commands over real sockets."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gear import constants as c
from gear.errors import ConfigurationError
from gear.protocol.packets import request
from tests.server.harp.conftest import LiveServer
from tests.support.peers import wait_for
from tests.support.raw import connect, read_packet


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer(http_port=0)
    try:
        yield server
    finally:
        server.stop()


def get(port: int, path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_metrics_content_type_and_parse(live: LiveServer) -> None:
    status, headers, body = get(live.server.http_port, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"gearman_up", "geard_jobs_submitted", "geard_connections",
            "process_cpu_seconds"} <= names
    status, headers, body = get(live.server.http_port, "/metrics?x=1", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_the_page_is_self_contained(live: LiveServer) -> None:
    status, headers, body = get(live.server.http_port, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert "<script>" in page and "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing external
    assert "@import" not in page and "url(" not in page


def test_unknown_path_is_404_and_other_methods_405(live: LiveServer) -> None:
    port = live.server.http_port
    assert get(port, "/nope")[0] == 404
    status, headers, _ = get(port, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert get(port, "/status", method="DELETE")[0] == 405


@pytest.mark.parametrize("head", [
    b"GARBAGE\r\n\r\n",
    b"GET /metrics HTTP/2.0\r\n\r\n",
    b"GET metrics HTTP/1.1\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n",
])
def test_a_bad_request_is_400_and_closes(live: LiveServer, head: bytes) -> None:
    reply = exchange(live.server.http_port, head)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in reply


def test_an_oversized_head_is_431(live: LiveServer) -> None:
    reply = exchange(live.server.http_port,
                     b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_slow_client_gets_408_and_holds_nobody_up(live: LiveServer) -> None:
    http_side = live.server.http
    live.call(lambda: setattr(http_side, "head_timeout", 0.5))
    try:
        with socket.create_connection(("127.0.0.1", live.server.http_port), timeout=5) as slow:
            slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            # Meanwhile everyone else is served, on HTTP and on the Gearman port.
            assert get(live.server.http_port, "/status")[0] == 200
            with connect(live.port) as gm:
                gm.sendall(request(c.ECHO_REQ, b"ping"))
                assert read_packet(gm) == (c.ECHO_RES, [b"ping"])
            reply = b""
            while chunk := slow.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    finally:
        live.call(lambda: setattr(http_side, "head_timeout", 10.0))


def test_keep_alive_and_connection_close(live: LiveServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live.server.http_port, timeout=5)
    try:
        for path in ("/status", "/metrics", "/nope", "/"):
            conn.request("GET", path)
            reply = conn.getresponse()
            reply.read()
            assert reply.getheader("connection") == "keep-alive"
    finally:
        conn.close()
    reply = exchange(live.server.http_port,
                     b"GET /status HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in reply
    reply = exchange(live.server.http_port, b"GET /status HTTP/1.0\r\n\r\n")  # 1.0: closes
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")


def test_live_status_equals_admin_status_and_workers(live: LiveServer) -> None:
    port = live.port
    client, worker, admin = connect(port), connect(port), connect(port)
    try:
        worker.sendall(request(c.SET_CLIENT_ID, b"w-1") + request(c.CAN_DO, b"live.f"))
        for i in range(4):
            client.sendall(request(c.SUBMIT_JOB, b"live.f", b"", b"%d" % i))
            assert read_packet(client)[0] == c.JOB_CREATED
        worker.sendall(request(c.GRAB_JOB_UNIQ))
        ptype, args = read_packet(worker)
        assert ptype == c.JOB_ASSIGN_UNIQ
        worker.sendall(request(c.WORK_COMPLETE, args[0], b"done"))
        assert read_packet(client)[0] == c.WORK_COMPLETE
        worker.sendall(request(c.GRAB_JOB_UNIQ))
        held = read_packet(worker)[1][0]  # running, never finished
        # Nothing changes between the snapshot and the admin replies.
        doc = json.loads(get(live.server.http_port, "/status")[2])
        admin.sendall(b"status\nworkers\n")
        data = b""
        while data.count(b".\n") < 2:
            data += admin.recv(65536)
    finally:
        for s in (client, worker, admin):
            s.close()
    status, workers = data.split(b".\n")[:2]
    rows = {line.split(b"\t")[0].decode(): [int(x) for x in line.split(b"\t")[1:]]
            for line in status.splitlines()}
    assert {f["name"]: [f["total"], f["running"], f["workers"]]
            for f in doc["functions"]} == rows
    assert rows["live.f"] == [3, 1, 1]
    listed = [line.split(b" :")[0].split(b" ") for line in workers.splitlines()]
    assert [[str(w["fd"]).encode(), w["address"].encode(), w["id"].encode()]
            for w in doc["workers"]] == listed
    (mine,) = [w for w in doc["workers"] if w["id"] == "w-1"]
    assert mine["functions"] == ["live.f"] and mine["running"] == [held.decode()]


def test_the_job_log_is_counted_on_the_loop_without_a_read(live: LiveServer) -> None:
    """The broker only appends to its job log; the HTTP side counts it every COUNT_INTERVAL
    on the server's loop, so it holds no more than that long's jobs when nobody scrapes."""
    port = live.port
    client, worker = connect(port), connect(port)
    try:
        worker.sendall(request(c.CAN_DO, b"count.f") + request(c.GRAB_JOB_UNIQ))
        client.sendall(request(c.SUBMIT_JOB, b"count.f", b"", b"x"))
        assert read_packet(client)[0] == c.JOB_CREATED
        while (packet := read_packet(worker))[0] != c.JOB_ASSIGN_UNIQ:
            worker.sendall(request(c.GRAB_JOB_UNIQ))  # (NO_JOB: it was not queued yet)
        worker.sendall(request(c.WORK_COMPLETE, packet[1][0], b"done"))
        assert read_packet(client)[0] == c.WORK_COMPLETE
    finally:
        client.close()
        worker.close()
    metrics = live.server.http.metrics

    def counted() -> bool:  # read the counters as they are: a read would count first
        series = metrics._by_name.get(b"count.f")
        return (series is not None and series.finished["complete"] == 1
                and not live.server.broker.job_log and not live.server.broker.log_functions)

    wait_for(lambda: live.call(counted), timeout=5, what="the log counted by the timer")


def test_tls_with_the_gearman_ports_options(tmp_path: Path) -> None:
    from tests.support.pki import make_pki

    pki = make_pki(tmp_path)
    server = LiveServer(http_port=0, ssl_key=pki.server_key, ssl_cert=pki.server_cert)
    try:
        context = ssl.create_default_context(cafile=pki.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", server.server.http_port, timeout=5,
                                           context=context)
        conn.request("GET", "/status")
        reply = conn.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["functions"] == []
        conn.close()
        with pytest.raises((ssl.SSLError, http.client.HTTPException, ConnectionError)):
            get(server.server.http_port, "/status")  # plain HTTP to a TLS port
    finally:
        server.stop()


def test_no_http_port_no_observer() -> None:
    server = LiveServer()
    try:
        assert server.server.http is None and server.server.http_port is None
        assert server.call(lambda: server.server.broker._observers) == ()
    finally:
        server.stop()


def test_missing_prometheus_client_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gear.server.observe.prometheus import require

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"geartrain\[metrics\]"):
        require()


def test_geard_http_port_0_logs_the_port(tmp_path: Path) -> None:
    log = tmp_path / "geard.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gear.server", "-d", "-p", "0",
                                 "--listen-address", "127.0.0.1", "--queue", "memory",
                                 "--http-port", "0", "--metrics-max-functions", "5"],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        def port() -> int | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"http port on 127\.0\.0\.1 port (\d+)", log.read_text())
            return int(found.group(1)) if found else None

        http_port = wait_for(port, timeout=20, what="geard's http port in its log")
        status, _, body = get(http_port, "/status")
        assert status == 200 and json.loads(body)["totals"]["jobs_submitted"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_concurrent_scrapes(live: LiveServer) -> None:
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            for _ in range(5):
                assert get(live.server.http_port, "/metrics")[0] == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_config_file_keys(tmp_path: Path) -> None:
    from gear.server import cli

    config = tmp_path / "geard.toml"
    config.write_text('http-port = 0\nhttp_address = "::1"\nmetrics-max-functions = 7\n')
    args = cli.parse_args(["--config", str(config)])
    assert (args.http_port, args.http_address, args.metrics_max_functions) == (0, "::1", 7)
    assert cli.parse_args([]).http_port is None  # off by default
