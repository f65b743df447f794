"""The pygear README's examples (the seed document), run as written against geard and gearmand.

Each example is the README's code with ``import pygear`` changed to ``from gear.compat import
pygear`` and Python 2's ``print x`` written ``print(x)``: nothing else. They run as separate
processes (the worker examples loop for ever, as in the README, and are stopped with SIGTERM);
``4730`` is replaced by the test server's port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.peers import wait_for

REPO = Path(__file__).resolve().parents[3]

WORKER = '''
from gear.compat import pygear

def reverse(job):
    workload = job.workload()
    return workload[::-1]

w = pygear.Worker()
w.add_server('localhost', 4730)
w.add_function("reverse", 0, reverse)

while True:
    try:
        w.set_timeout(1000)  # yield
        w.work()
    except pygear.TIMEOUT:
        pass
'''

BLOCKING_CLIENT = '''
from gear.compat import pygear

c = pygear.Client()
c.add_server('localhost', 4730)

# submit foreground job to server and wait for the result
try:
    c.set_timeout(5000)  # wait at most 5 seconds
    result = c.do('reverse', 'Hello pygear!')
    print(result)
except pygear.TIMEOUT:
    print('Wait for too long!')
'''

NON_BLOCKING_CLIENT = '''
from gear.compat import pygear

c = pygear.Client()
c.add_server('localhost', 4730)

# submit background job to server and return immediately
res = c.do_background('reverse', 'Hello pygear!')
result = res['result']  # NULL if submission fails; None if success
job_handle = res['job_handle']

# check job status if needed
print(c.job_status(job_handle))
'''

ASYNC_CLIENT = '''
from gear.compat import pygear

def oncomplete_callback(task):
    print(task.result())

c = pygear.Client()
c.add_server('localhost', 4730)
c.set_complete_fn(oncomplete_callback)

# add tasks to local queue
c.add_task('reverse', 'Hello pygear task 1!')
c.add_task('reverse', 'Hello pygear task 2!')

# background jobs will not trigger oncomplete_callback function
c.add_task_background('reverse', 'Hello pygear task 3!')
...

# submit to server and run tasks
c.run_tasks()
'''

FAILING_WORKER = '''
from gear.compat import pygear

def reverse(job):
   raise Exception("I can't spell backwards!")

w = pygear.Worker()
w.add_server('localhost', 4730)
w.add_function("reverse", 0, reverse)
w.work()
'''

FAILING_CLIENT = '''
from gear.compat import pygear

def onexn_callback(task):
    print(task.result())

c = pygear.Client()
c.add_server('localhost', 4730)
c.set_exception_fn(onexn_callback)
c.add_task('reverse', 'Hello python!')
c.run_tasks()
'''


def start(code: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code.replace("4730", str(port))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run(code: str, port: int, timeout: float = 30) -> str:
    proc = start(code, port)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


def registered(port: int, name: str) -> bool:
    from gear.compat import pygear

    status = pygear.Admin("127.0.0.1", port, 5).status()
    return any(s["function"] == name and s["available_workers"] for s in status)


@pytest.fixture
def reverse_worker(server):
    proc = start(WORKER, server.port)
    try:
        wait_for(lambda: registered(server.port, "reverse"), what="the README worker")
        yield proc
    finally:
        err = stop(proc)
        assert "Traceback" not in err.replace("KeyboardInterrupt", "")


def test_blocking_client(server, reverse_worker) -> None:
    assert run(BLOCKING_CLIENT, server.port) == "!raegyp olleH\n"


def test_blocking_client_without_a_worker_times_out(server) -> None:
    assert run(BLOCKING_CLIENT, server.port) == "Wait for too long!\n"


def test_non_blocking_client(server, reverse_worker) -> None:
    out = run(NON_BLOCKING_CLIENT, server.port)
    status = eval(out)  # the printed dict
    assert set(status) == {"is_known", "is_running", "numerator", "denominator"}


def test_asynchronous_client(server, reverse_worker) -> None:
    out = run(ASYNC_CLIENT, server.port)
    assert sorted(out.splitlines()) == ["!1 ksat raegyp olleH", "!2 ksat raegyp olleH"]


def test_failure_handling(server) -> None:
    worker = start(FAILING_WORKER, server.port)
    try:
        wait_for(lambda: registered(server.port, "reverse"), what="the failing worker")
        out = run(FAILING_CLIENT, server.port)
        _, werr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0  # one work() call, the exception printed, not raised
    assert "I can't spell backwards!" in werr
    kind, args, tb = eval(out)
    assert "Exception" in kind and args == ["I can't spell backwards!"]
    assert any("in reverse" in line for line in tb)
    json.dumps([kind, args, tb])
