"""python-gearman 2.0 behaviour scenarios, run against any implementation of its API.

Run as a script: ``python scenarios.py MODULE HOST PORT``, where MODULE is ``gearman`` (the
real ``gearman3`` in its own Python 3.8 venv) or ``gear.compat.gearman`` (ours). Every scenario
runs against the server at HOST:PORT and the results are printed as one JSON object
(scenario -> result); ``tests/facades/gearman/test_behaviour.py`` asserts on them, so the same
expectations hold both implementations to python-gearman's semantics. Bytes are shown as
``"b:<latin-1 text>"``; an exception a scenario raised is ``{"raised": name}``.

This file must run on Python 3.8 without gear installed: stdlib only, no newer syntax.
"""

from __future__ import annotations

import importlib
import json
import pickle
import socket
import sys
import threading
import time
import uuid

gearman = importlib.import_module(sys.argv[1]) if __name__ == "__main__" else None
HOSTS: list = []


def show(value):
    """A JSON-friendly view of a result (bytes marked, containers walked)."""
    if isinstance(value, bytes):
        return "b:" + value.decode("latin-1")
    if isinstance(value, dict):
        return {str(k): show(v) for k, v in value.items() if k != "time_received"}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "deque":
        return [show(v) for v in value]
    return value


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}".encode()


def sub(module):
    return importlib.import_module(f"{gearman.__name__}.{module}")


class Worker:
    """A GearmanWorker in a thread, stopped through after_poll."""

    def __init__(self, tasks, cls=None, client_id=None):
        self.worker = (cls or gearman.GearmanWorker)(HOSTS)
        if client_id is not None:
            self.worker.set_client_id(client_id)
        for task, fn in tasks.items():
            self.worker.register_task(task, fn)
        self.stop = threading.Event()
        self.polls = []
        self.error = None

        def after_poll(any_activity):
            self.polls.append(any_activity)
            return not self.stop.is_set()

        self.worker.after_poll = after_poll
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.worker.work(poll_timeout=0.1)
        except Exception as exc:  # recorded for the result
            self.error = type(exc).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def request_view(r):
    return {"state": r.state, "complete": r.complete, "timed_out": r.timed_out,
            "result": show(r.result), "exception": show(r.exception),
            "handle_type": type(r.job.handle).__name__,
            "data_updates": show(r.data_updates), "warning_updates": show(r.warning_updates),
            "status": show(r.status)}


def reverse(worker, job):
    return job.data[::-1]


# -- scenarios -----------------------------------------------------------------------------------


def s_foreground():
    task = name("rev")
    with Worker({task: reverse}):
        r = gearman.GearmanClient(HOSTS).submit_job(task, b"hello", poll_timeout=10)
    return dict(request_view(r), unique_type=type(r.job.unique).__name__,
                unique_len=len(r.job.unique))


def s_updates():
    task = name("upd")

    def work(worker, job):
        worker.send_job_data(job, b"d1")
        worker.send_job_warning(job, b"w1")
        worker.send_job_status(job, 1, 2)
        return b"done"

    with Worker({task: work}):
        r = gearman.GearmanClient(HOSTS).submit_job(task, b"x", poll_timeout=10)
    return request_view(r)


def s_task_raises():
    task = name("raise")

    def work(worker, job):
        raise RuntimeError("no")

    with Worker({task: work}):
        r = gearman.GearmanClient(HOSTS).submit_job(task, b"x", poll_timeout=10)
    return request_view(r)


def s_send_exception():
    task = name("exc")

    class ExceptionWorker(gearman.GearmanWorker):
        def on_job_exception(self, current_job, exc_info):
            self.send_job_exception(current_job, b"boom")
            return False

    def work(worker, job):
        raise RuntimeError("no")

    with Worker({task: work}, cls=ExceptionWorker):
        r = gearman.GearmanClient(HOSTS).submit_job(task, b"x", poll_timeout=3)
    return request_view(r)


def s_background():
    task = name("bg")
    client = gearman.GearmanClient(HOSTS)
    r = client.submit_job(task, b"x", background=True, poll_timeout=10)
    before = request_view(r)
    client.get_job_status(r, poll_timeout=10)
    return {"submitted": before, "status": show(r.status), "timed_out": r.timed_out}


def s_poll_timeout():
    client = gearman.GearmanClient(HOSTS)
    start = time.monotonic()
    r = client.submit_job(name("nobody"), b"x", poll_timeout=0.3)
    return dict(request_view(r), elapsed=time.monotonic() - start)


def s_not_waiting():
    task = name("later")
    client = gearman.GearmanClient(HOSTS)
    jobs = [dict(task=task, data=b"a"), dict(task=task, data=b"bc")]
    requests = client.submit_multiple_jobs(jobs, wait_until_complete=False, poll_timeout=10)
    accepted = [r.state for r in requests]
    with Worker({task: reverse}):
        done = client.wait_until_jobs_completed(requests, poll_timeout=10)
    return {"accepted": accepted, "done": [request_view(r) for r in done]}


def s_priority():
    task = name("prio")
    client = gearman.GearmanClient(HOSTS)
    for data, priority in ((b"low", gearman.PRIORITY_LOW), (b"none", gearman.PRIORITY_NONE),
                           (b"high", gearman.PRIORITY_HIGH)):
        client.submit_job(task, data, priority=priority, background=True, poll_timeout=10)
    seen = []
    all_seen = threading.Event()

    def work(worker, job):
        seen.append(job.data)
        if len(seen) == 3:
            all_seen.set()
        return b""

    with Worker({task: work}):
        all_seen.wait(10)
    return show(seen)


def s_data_encoder():
    task = name("pickle")

    class PickleDataEncoder(gearman.DataEncoder):
        @classmethod
        def encode(cls, encodable_object):
            return pickle.dumps(encodable_object)

        @classmethod
        def decode(cls, decodable_string):
            return pickle.loads(decodable_string)

    class PickleClient(gearman.GearmanClient):
        data_encoder = PickleDataEncoder

    class PickleWorker(gearman.GearmanWorker):
        data_encoder = PickleDataEncoder

    def work(worker, job):
        return {"got": job.data, "n": len(job.data["hello"])}

    with Worker({task: work}, cls=PickleWorker):
        r = PickleClient(HOSTS).submit_job(task, {"hello": "there"}, poll_timeout=10)
    return {"state": r.state, "result": r.result}


def s_noop_encoder_refuses():
    try:
        gearman.GearmanClient(HOSTS).submit_job(name("enc"), 12345, poll_timeout=2)
    except Exception as exc:
        return {"raised": type(exc).__name__}
    return {"raised": None}


def s_worker_stops():
    w = Worker({name("idle"): reverse})
    w.thread.join(0.5)
    w.stop.set()
    w.thread.join(5)
    return {"stopped": not w.thread.is_alive(), "idle_poll_seen": False in w.polls,
            "error": w.error}


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return [f"127.0.0.1:{port}"]


def s_server_down():
    errors = sub("errors")
    out = {}
    dead = dead_port()
    try:
        gearman.GearmanClient(dead).submit_job(b"x", b"x", poll_timeout=2)
        out["client"] = None
    except errors.ServerUnavailable:
        out["client"] = "ServerUnavailable"
    try:
        w = gearman.GearmanWorker(dead)
        w.register_task(b"x", reverse)
        w.work(poll_timeout=0.2)
        out["worker"] = None
    except errors.ServerUnavailable:
        out["worker"] = "ServerUnavailable"
    try:
        sub("admin_client").GearmanAdminClient(dead).ping_server()
        out["admin"] = None
    except errors.ServerUnavailable:
        out["admin"] = "ServerUnavailable"
    return out


def s_admin():
    admin = sub("admin_client").GearmanAdminClient(HOSTS, poll_timeout=5)
    task = name("adm")
    client = gearman.GearmanClient(HOSTS)
    client.submit_job(task, b"x", unique="u-" + task.decode(), background=True,
                      poll_timeout=5)
    status = [s for s in admin.get_status() if s["task"] in (task, task.decode())]
    return {"ping": isinstance(admin.ping_server(), float), "status": show(status),
            "version": show(admin.get_version())[:2],
            "maxqueue": show(admin.send_maxqueue(task.decode(), 10))}


def s_coalesced():
    task = name("same")
    client = gearman.GearmanClient(HOSTS)
    jobs = [dict(task=task, data=b"abc", unique="same"), dict(task=task, data=b"abc",
                                                               unique="same")]
    requests = client.submit_multiple_jobs(jobs, wait_until_complete=False, poll_timeout=5)
    with Worker({task: reverse}):
        client.wait_until_jobs_completed(requests, poll_timeout=1.5)
    return [request_view(r) for r in requests]


def s_status_while_running():
    task = name("running")
    started, release = threading.Event(), threading.Event()

    def work(worker, job):
        started.set()
        release.wait(10)
        return b"finished"

    client = gearman.GearmanClient(HOSTS)
    with Worker({task: work}):
        request = client.submit_job(task, b"x", wait_until_complete=False, poll_timeout=10)
        started.wait(10)
        client.get_job_status(request, poll_timeout=10)
        status = show(request.status)
        release.set()
        client.wait_until_jobs_completed([request], poll_timeout=10)
    return {"status": status, "done": request_view(request)}


def s_lost_before_accepted():
    """A server that reads the submission and hangs up: with max_retries=0 the resend raises."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    errors = sub("errors")
    client = gearman.GearmanClient([f"127.0.0.1:{listener.getsockname()[1]}"])
    try:
        client.submit_job(b"t", b"x", poll_timeout=5)
        return {"raised": None}
    except errors.ExceededConnectionAttempts:
        return {"raised": "ExceededConnectionAttempts"}
    finally:
        listener.close()


SCENARIOS = {k[2:]: v for k, v in dict(globals()).items() if k.startswith("s_")}


def main():
    HOSTS.append(f"{sys.argv[2]}:{sys.argv[3]}")
    only = sys.argv[4:] or list(SCENARIOS)
    out = {}
    for key in only:
        try:
            out[key] = SCENARIOS[key]()
        except Exception as exc:
            out[key] = {"raised": type(exc).__name__, "message": str(exc)[:200]}
    print(json.dumps(out, default=repr))


if __name__ == "__main__":
    main()
