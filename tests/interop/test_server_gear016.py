"""Our server with PyPI gear 0.16.0's Client, Worker and admin requests (in its own venv).

gear 0.16 runs in a subprocess (it installs the same ``gear`` package name as ours). The scripts
print one JSON line that the test checks. Also: mutual TLS with gear's client, and the ACL
keyed on the client certificate's CN, which gear's own server cannot do on Python 3.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gear.acl import ACL, ACLEntry
from gear.server.gear_server import Server
from tests.support.pki import PKI, make_pki

pytestmark = pytest.mark.interop

PRELUDE = """
import json, sys, threading, time
import gear
host, port = "127.0.0.1", int(sys.argv[1])
tls = dict(zip(("ssl_key", "ssl_cert", "ssl_ca"), sys.argv[2:5])) if len(sys.argv) > 4 else {}
"""

WORKER = """
worker = gear.Worker("w1")
worker.addServer(host, port, **tls)
worker.waitForServer(10)
worker.registerFunction("rev")
worker.registerFunction("boom")
done = 0
while done < int(sys.argv[-1]):
    job = worker.getJob()
    if job.name == "boom":
        job.sendWorkException(b"it broke")
    else:
        job.sendWorkData(b"partial")
        job.sendWorkComplete(job.arguments[::-1])
    done += 1
worker.shutdown()
"""

CLIENT = """
client = gear.Client("c1")
client.addServer(host, port, **tls)
client.waitForServer(10)
client.setOption("exceptions")  # gear's own server never answers OPTION_REQ
jobs = [gear.Job(b"rev", b"job-%d" % i) for i in range(20)]
for job in jobs:
    client.submitJob(job)
bad = gear.Job(b"boom", b"x")
client.submitJob(bad)
deadline = time.time() + 20
while time.time() < deadline and not all(j.complete for j in jobs + [bad]):
    time.sleep(0.01)
status = gear.StatusAdminRequest()
conn = client.active_connections[0]
conn.sendAdminRequest(status, timeout=10)
workers = gear.WorkersAdminRequest()
conn.sendAdminRequest(workers, timeout=10)
print(json.dumps({
    "results": [j.data[-1].decode() if j.data else None for j in jobs],
    "partial": [j.data[0].decode() for j in jobs if j.data],
    "exception": bad.exception.decode() if bad.exception else None,
    "failure": bad.failure,
    "status": status.response.decode(),
    "workers": workers.response.decode(),
}))
client.shutdown()
"""

BACKGROUND = """
client = gear.Client("bg")
client.addServer(host, port, **tls)
client.waitForServer(10)
try:
    client.submitJob(gear.Job(b"secret", b"x"), background=True, timeout=5)
    print(json.dumps({"submitted": True}))
except gear.GearmanError as exc:
    print(json.dumps({"submitted": False, "error": str(exc)}))
client.shutdown()
"""


def run_script(python: str, body: str, *args: str, tmp: Path) -> subprocess.Popen[str]:
    script = tmp / f"script{abs(hash(body))}.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
    return subprocess.Popen(
        [python, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 40) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_gear016_client_and_worker(ours: Server, gear016: str, tmp_path: Path) -> None:
    worker = run_script(gear016, WORKER, str(ours.port), "21", tmp=tmp_path)
    client = run_script(gear016, CLIENT, str(ours.port), tmp=tmp_path)
    try:
        result = finish(client)
        worker.communicate(timeout=20)
        assert worker.returncode == 0
    finally:
        for proc in (worker, client):
            if proc.poll() is None:
                proc.kill()
    assert result["results"] == [f"job-{i}"[::-1] for i in range(20)]
    assert result["partial"] == ["partial"] * 20
    assert result["exception"] == "it broke"  # OPTION_REQ exceptions honoured
    # Nothing queued or running any more (the worker may already have left: last column).
    lines = [line.rsplit("\t", 1)[0] for line in result["status"].splitlines()]
    assert lines == ["rev\t0\t0", "boom\t0\t0", "."]
    assert result["workers"].endswith(" 127.0.0.1 - :\n.\n")  # the client's own connection


def test_gear016_over_mutual_tls_with_an_acl(gear016: str, tmp_path: Path) -> None:
    pki: PKI = make_pki(tmp_path)
    acl = ACL()
    acl.add(ACLEntry("worker1", register="rev|boom", invoke="rev|boom"))
    server = Server(0, ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca,
                    host="127.0.0.1", acl=acl)
    tls = [pki.client_key, pki.client_cert, pki.ca]
    try:
        worker = run_script(gear016, WORKER, str(server.port), *tls, "21", tmp=tmp_path)
        client = run_script(gear016, CLIENT, str(server.port), *tls, tmp=tmp_path)
        try:
            result = finish(client)
            worker.communicate(timeout=20)
        finally:
            for proc in (worker, client):
                if proc.poll() is None:
                    proc.kill()
        assert result["results"] == [f"job-{i}"[::-1] for i in range(20)]
        # The CN "worker1" may not invoke "secret": the server answers an ERROR.
        denied = finish(run_script(gear016, BACKGROUND, str(server.port), *tls, tmp=tmp_path))
        assert denied["submitted"] is False
        assert server.jobs == {}
    finally:
        server.shutdown()
