"""pygear's client and worker semantics against geard and gearmand, derived from pygear's C
source (client.c, worker.c, job.c, task.c) and its integration tests (tests/test_integration.py,
test_job.py), with the differences docs/migrating.md lists."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from gear.compat import pygear
from tests.facades.pygear.conftest import Cat, Noop, client


def reverse(job: Any) -> Any:
    return job.workload()[::-1]


def test_do_returns_the_loaded_result(server, start_worker) -> None:
    start_worker(server, {"reverse": reverse})
    c = client(server)
    assert c.do("reverse", "Hello pygear!") == "!raegyp olleH"
    assert c.do_high("reverse", "abc") == "cba"
    assert c.do_low("reverse", "abc", "some-unique") == "cba"
    assert c.do("reverse", ["a", 1]) == [1, "a"]  # JSON both ways
    assert c.do_job_handle().startswith("H:")


def test_do_of_an_empty_payload_is_none(server, start_worker) -> None:
    start_worker(server, {"nothing": lambda job: ""}, serializer=Noop())
    c = client(server)
    assert c.do("nothing", "x") is None


def test_do_background_and_job_status(server, start_worker) -> None:
    gate = threading.Event()

    def slow(job: Any) -> str:
        job.send_status(1, 4)
        gate.wait(10)
        return "ok"

    start_worker(server, {"slow": slow})
    c = client(server)
    res = c.do_background("slow", "x")
    assert set(res) == {"result", "job_handle"} and res["result"] is None
    handle = res["job_handle"]
    assert isinstance(handle, str) and handle.startswith("H:")
    deadline = time.monotonic() + 10
    while True:  # polling the server's view, as a pygear user does
        status = c.job_status(res)
        if status["numerator"] or time.monotonic() > deadline:
            break
    assert status == {"is_known": True, "is_running": True, "numerator": 1, "denominator": 4}
    assert c.job_status(handle) == status  # a bare handle works too
    gate.set()
    unknown = c.job_status("H:nowhere:1")
    assert unknown == {"is_known": False, "is_running": False, "numerator": 0, "denominator": 0}


def test_high_and_low_background(server, start_worker) -> None:
    c = client(server)
    for call in (c.do_high_background, c.do_low_background):
        assert call("queued", "x")["job_handle"].startswith("H:")


def test_work_exception_and_fail(server, start_worker) -> None:
    class Oops(Exception):
        pass

    def raiser(job: Any) -> None:
        raise Oops("no", 1)

    def failer(job: Any) -> None:
        job.send_fail()

    worker = start_worker(server, {"raiser": raiser, "failer": failer})
    c = client(server)
    with pytest.raises(pygear.WORK_EXCEPTION) as info:
        c.do("raiser", "x")
    kind, args, tb = info.value.args[1]
    assert "Oops" in kind and args == ["no", 1]
    assert "raise Oops" in "".join(tb) and "worker.py" not in tb[0]
    with pytest.raises(pygear.WORK_FAIL):
        c.do("failer", "x")
    assert worker.errors == []  # work() does not raise the function's exception


def test_job_methods_and_the_clients_unique(server, start_worker) -> None:
    seen: dict[str, Any] = {}

    def introspect(job: Any) -> str:
        seen.update(handle=job.handle(), function=job.function_name(), unique=job.unique(),
                    workload=job.workload(), size=job.workload_size(), error=job.error())
        return "done"

    start_worker(server, {"test_job_methods": introspect})
    c = client(server)
    c.add_task("test_job_methods", "this is a dummy workload", unique="test unique string")
    c.run_tasks()
    assert seen["handle"].startswith("H:") and seen["function"] == "test_job_methods"
    assert seen["unique"] == "test unique string"  # pygear's was always empty
    assert seen["workload"] == "this is a dummy workload"
    assert seen["size"] == len('"this is a dummy workload"') and seen["error"] is None


def test_no_unique_gets_a_fresh_one(server, start_worker) -> None:
    uniques = []
    start_worker(server, {"u": lambda job: uniques.append(job.unique()) or "x"})
    c = client(server)
    c.do("u", "x")
    c.do("u", "x")
    assert len(uniques) == 2 and uniques[0] != uniques[1] and len(uniques[0]) == 36


def test_run_tasks_callbacks(server, start_worker) -> None:
    def chatty(job: Any) -> str:
        job.send_data("chunk")
        job.send_warning("careful")
        job.send_status(1, 2)
        return "done"

    start_worker(server, {"chatty": chatty, "raiser": lambda job: 1 / 0,
                          "failer": lambda job: job.send_fail()})
    c = client(server)
    events: list[tuple[Any, ...]] = []
    for kind in ("created", "data", "warning", "status", "complete", "exception", "fail"):
        def record(task: Any, kind: str = kind) -> None:
            events.append((kind, task.function_name(), task.result(),
                           pygear.describe_returncode(task.returncode()), task.strstate(),
                           task.numerator(), task.denominator()))
        getattr(c, f"set_{kind}_fn")(record)
    t = c.add_task("chatty", "a")
    c.add_task("raiser", "b")
    c.add_task("failer", "c")
    bg = c.add_task_background("chatty", "d")
    assert c.run_tasks() is None
    work = "GEARMAN_TASK_STATE_WORK"
    chatty_events = [e for e in events if e[1] == "chatty" and e[0] != "created"]
    assert chatty_events == [
        ("data", "chatty", "chunk", "UNKNOWN_STATE", work, 0, 0),
        ("warning", "chatty", "careful", "UNKNOWN_STATE", work, 0, 0),
        ("status", "chatty", None, "UNKNOWN_STATE", work, 1, 2),
        ("complete", "chatty", "done", "SUCCESS", work, 1, 2),
    ]
    created = sorted(e[1] for e in events if e[0] == "created")
    assert created == ["chatty", "chatty", "failer", "raiser"]
    (exc,) = [e for e in events if e[0] == "exception"]
    assert "ZeroDivisionError" in exc[2][0] and exc[3] == "WORK_EXCEPTION"
    (fail,) = [e for e in events if e[0] == "fail"]
    assert fail[1] == "failer" and fail[3] == "WORK_FAIL"
    # Unlike pygear's, the Task add_task returned is live afterwards.
    assert t.result() == "done" and t.job_handle().startswith("H:")
    assert t.strstate() == "GEARMAN_TASK_STATE_FINISHED"
    assert pygear.describe_returncode(t.returncode()) == "SUCCESS"
    assert bg.job_handle().startswith("H:")


def test_clear_fn_and_failing_callbacks(server, start_worker, capsys) -> None:
    start_worker(server, {"reverse": reverse})
    c = client(server)
    called = []
    c.set_complete_fn(called.append)
    c.clear_fn()
    c.add_task("reverse", "Some string")
    c.run_tasks()
    assert called == []

    def broken(task: Any) -> None:
        raise RuntimeError("callback broke")

    c.set_complete_fn(broken)
    t = c.add_task("reverse", "abc")
    c.run_tasks()  # a failing callback is printed, not raised
    assert t.result() == "cba"
    assert "callback broke" in capsys.readouterr().err


def test_serializers(server, start_worker) -> None:
    got = []

    def meow(job: Any) -> None:
        got.append(job.workload())
        job.send_data("will be encoded to purr")

    start_worker(server, {"cat": meow}, serializer=Cat())
    c = client(server)
    c.set_serializer(Cat())
    results = []
    c.set_complete_fn(lambda task: results.append(task.result()))
    c.set_exception_fn(lambda task: results.append("exception"))
    c.add_task("cat", "Woof")
    c.run_tasks()
    assert got == ["meow"] and results == ["meow"]


def test_noop_serializer_is_bytes_both_ways(server, start_worker) -> None:
    start_worker(server, {"reverse": reverse}, serializer=Noop())
    c = client(server)
    c.set_serializer(Noop())
    assert c.do("reverse", b"\x00\xffab") == b"ba\xff\x00"
    assert c.do("reverse", "text") == b"txet"


def test_send_complete_then_return_sends_one_result(server, start_worker) -> None:
    def early(job: Any) -> str:
        job.send_complete("early")
        return "late"

    start_worker(server, {"early": early, "after": reverse})
    c = client(server)
    assert c.do("early", "x") == "early"
    assert c.do("after", "ab") == "ba"  # no stray late result on the connection


def test_do_ignores_work_data_in_the_result(server, start_worker) -> None:
    def chatty(job: Any) -> str:
        job.send_data("chunk")
        job.send_status(3, 7)
        return "done"

    start_worker(server, {"chatty": chatty})
    c = client(server)
    assert c.do("chatty", "x") == "done"  # libgearman folded "chunk" in
    assert c.do_status() == (3, 7)


def test_do_times_out_and_the_client_recovers(server, start_worker) -> None:
    c = client(server, timeout=200)
    start = time.monotonic()
    with pytest.raises(pygear.TIMEOUT):
        c.do("nobody_serves_this", "x")
    assert time.monotonic() - start >= 0.2
    assert "TIMEOUT" in (c.error() or "")
    start_worker(server, {"reverse": reverse})
    c.set_timeout(5000)
    assert c.do("reverse", "ab") == "ba"


def test_run_tasks_times_out(server) -> None:
    c = client(server, timeout=150)
    t = c.add_task("nobody_serves_this", "x")
    with pytest.raises(pygear.TIMEOUT):
        c.run_tasks()
    assert pygear.describe_returncode(t.returncode()) == "TIMEOUT"


def test_work_times_out_after_set_timeout(server) -> None:
    w = pygear.Worker()
    w.add_function("test_method", 60, reverse)
    w.add_server(server.host, server.port)
    w.set_timeout(30)
    with pytest.raises(pygear.TIMEOUT):
        w.work()
    with pytest.raises(pygear.TIMEOUT):  # and again: the connection is kept
        w.work()


def test_grab_job_leaves_the_reporting_to_the_caller(server) -> None:
    c = client(server)
    res = c.do_background("manual", "payload")
    w = pygear.Worker()
    w.add_server(server.host, server.port)
    w.register("manual", 0)
    w.set_timeout(5000)
    job = w.grab_job()
    assert job.function_name() == "manual" and job.workload() == "payload"
    assert job.handle() == res["job_handle"]
    job.send_complete("done")


def test_echo(server) -> None:
    c = client(server)
    assert c.echo("ping") is None
    w = pygear.Worker()
    w.add_server(server.host, server.port)
    w.set_timeout(5000)
    assert w.echo("ping") is None


def test_execute_is_raw(server, start_worker) -> None:
    start_worker(server, {"reverse": reverse}, serializer=Noop())
    c = client(server)
    assert c.execute("reverse", "Jackdaws") == b"swadkcaJ"


def test_add_task_status(server) -> None:
    c = client(server)
    res = c.do_background("queued_for_status", "x")
    statuses = []
    c.set_status_fn(lambda task: statuses.append((task.job_handle(), task.is_known())))
    t = c.add_task_status(res["job_handle"])
    c.run_tasks()
    assert statuses == [(res["job_handle"], True)] and t.is_known() and not t.is_running()


def test_unique_status(geard) -> None:
    c = client(geard)
    c.do_background("queued_by_unique", "x", "the-unique")
    status = c.unique_status("the-unique")
    assert status["is_known"] and not status["is_running"]


def test_reconnects_after_the_server_restarts(gearmand, start_worker) -> None:
    c = client(gearmand)
    assert c.do_background("f", "x")["job_handle"]
    gearmand.restart()
    assert c.do_background("f", "x")["job_handle"]  # the stale connection is noticed


def test_worker_serves_again_after_the_server_restarts(gearmand, start_worker) -> None:
    start_worker(gearmand, {"reverse": reverse})  # the only worker: it reconnected
    c = client(gearmand)
    assert c.do("reverse", "ab") == "ba"
    gearmand.restart()
    c2 = client(gearmand, timeout=15000)
    assert c2.do("reverse", "cd") == "dc"


def test_fail_over_to_the_next_server(server, start_worker) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    start_worker(server, {"reverse": reverse})
    c = pygear.Client()
    c.add_servers([f"127.0.0.1:{dead}", f"{server.host}:{server.port}"])
    c.set_timeout(5000)
    assert c.do("reverse", "ab") == "ba"


def test_coalesced_foreground_jobs_both_complete(server, start_worker) -> None:
    gate = threading.Event()

    def slow(job: Any) -> str:
        gate.wait(10)
        return job.workload()

    start_worker(server, {"slow": slow})
    c = client(server)
    created: list[Any] = []

    def on_created(task: Any) -> None:  # the job may finish once both submissions have a handle
        created.append(task)
        if len(created) == 2:
            gate.set()

    c.set_created_fn(on_created)
    a = c.add_task("slow", "same", unique="one")
    b = c.add_task("slow", "same", unique="one")
    c.run_tasks()
    assert a.result() == b.result() == "same"
    assert a.job_handle() == b.job_handle()


def test_function_timeout_is_sent_as_can_do_timeout(geard) -> None:
    # geard fails a job whose CAN_DO_TIMEOUT fired; gearmand re-queues it (docs/protocol.md §3.8)
    server = geard
    release = threading.Event()

    def stuck(job: Any) -> str:
        release.wait(10)
        return "too late"

    w = pygear.Worker()
    w.add_server(server.host, server.port)
    w.add_function("stuck", 1, stuck)  # seconds, as pygear's add_function takes them
    w.set_timeout(5000)
    thread = threading.Thread(target=w.work, daemon=True)
    thread.start()
    try:
        c = client(server, timeout=8000)
        with pytest.raises(pygear.WORK_FAIL):  # the server gave up on the job after 1 s
            c.do("stuck", "x")
    finally:
        release.set()
        thread.join(10)


def test_a_full_queue_raises_job_queue_full(server) -> None:
    admin = pygear.Admin(server.host, server.port, 10)
    admin.create_function("capped")  # maxqueue applies to a function that exists
    admin.maxqueue("capped", 1)
    c = client(server)
    c.do_background("capped", "first")
    with pytest.raises(pygear.JOB_QUEUE_FULL):
        c.do_background("capped", "second")


def test_a_server_that_hangs_up_mid_job_raises_lost_connection() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hang_up() -> None:
        for _ in range(2):  # do() and run_tasks()
            conn, _ = listener.accept()
            conn.recv(4096)  # OPTION_REQ and SUBMIT_JOB, then nothing but a close
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    c = pygear.Client()
    c.add_server("127.0.0.1", listener.getsockname()[1])
    c.set_timeout(5000)
    try:
        with pytest.raises(pygear.LOST_CONNECTION):
            c.do("reverse", "x")
        t = c.add_task("reverse", "y")
        with pytest.raises(pygear.LOST_CONNECTION):
            c.run_tasks()
        assert pygear.describe_returncode(t.returncode()) == "LOST_CONNECTION"
    finally:
        thread.join(10)
        listener.close()


def test_a_worker_serves_every_server_it_was_given() -> None:
    from gear.server.gear_server import Server

    servers = [Server(0, host="127.0.0.1"), Server(0, host="127.0.0.1")]
    try:
        w = pygear.Worker()
        w.add_servers([f"127.0.0.1:{s.port}" for s in servers])
        w.add_function("where", 0, lambda job: job.workload())
        w.set_timeout(5000)
        for n, s in enumerate(servers):
            c = pygear.Client()
            c.add_server("127.0.0.1", s.port)
            c.set_timeout(5000)
            c.do_background("where", f"server {n}")
        seen = []
        for _ in servers:
            job = w.grab_job()
            seen.append(job.workload())
            job.send_complete(None)
        assert sorted(seen) == ["server 0", "server 1"]
    finally:
        for s in servers:
            s.shutdown()
