# ruff: noqa: UP010, UP031, UP004, E501
"""pygear behaviour scenarios, runnable against the real pygear (Python 2.7) and our facade.

Not a test (CI has no libgearman-dev to build pygear): a by-hand reference. It prints one line
per scenario, ``name: value``, with values normalised so the two runs can be diffed::

    gearmand --port=0 ... (or geard)  # note the port
    PYTHONPATH=/path/to/built/pygear python2.7 tests/facades/pygear/reference_scenarios.py \\
        real PORT > real.txt
    .venv/bin/python tests/facades/pygear/reference_scenarios.py ours PORT > ours.txt
    diff real.txt ours.txt

Building the real pygear (Yelp/pygear 0.9.2) against Debian's libgearman 1.1: its setup.py links
``-l:libgearman.so.7``; change that to ``-lgearman`` and run ``python2.7 setup.py build_ext
--inplace``. The file is written in the subset of Python that both 2.7 and 3 run.
"""

from __future__ import print_function

import json
import multiprocessing
import sys
import time

if sys.argv[1:2] == ["real"]:
    import pygear
else:
    from gear.compat import pygear

PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 4730
HOST = "127.0.0.1"
try:
    TEXT = (str, unicode)  # type: ignore[name-defined]
except NameError:
    TEXT = (str,)


def norm(value):
    """Text of either Python as a native str, containers recursively, H:host:N handles masked."""
    if isinstance(value, bytes) and not isinstance(value, str):
        value = "b:" + value.decode("utf-8", "replace")
    if isinstance(value, TEXT):
        if not isinstance(value, str):
            value = value.encode("utf-8")
        if value.startswith("H:"):
            return "<handle>"
        return value
    if isinstance(value, dict):
        return dict((norm(k), norm(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


def show(name, value):
    print("%s: %s" % (name, json.dumps(norm(value), sort_keys=True)))
    sys.stdout.flush()


def outcome(fn):
    try:
        return ["ok", fn()]
    except Exception as exc:
        return ["raised", type(exc).__name__]


class Noop(object):
    def dumps(self, value):
        return value

    def loads(self, value):
        return value


def reverse(job):
    return job.workload()[::-1]


def raiser(job):
    raise ValueError("no", 1)


def failer(job):
    job.send_fail()


def chatty(job):
    job.send_data("chunk")
    job.send_warning("careful")
    job.send_status(1, 2)
    return "done"


def empty(job):
    return ""


def introspect(job):
    return [job.function_name(), job.unique(), job.workload(), job.workload_size(),
            isinstance(job.handle(), TEXT)]


def completes_early(job):
    job.send_complete("early")
    return "late"


def worker_main(seconds, log_path):
    w = pygear.Worker()
    w.add_server(HOST, PORT)
    for name, fn in [("reverse", reverse), ("raiser", raiser), ("failer", failer),
                     ("chatty", chatty), ("empty", empty), ("introspect", introspect),
                     ("completes_early", completes_early)]:
        w.add_function(name, 0, fn)
    w.set_timeout(200)
    with open(log_path, "w") as log:
        stop = time.time() + seconds
        while time.time() < stop:
            try:
                w.work()
            except pygear.TIMEOUT:
                pass
            except Exception as exc:
                log.write("work() raised %s\n" % type(exc).__name__)
                log.flush()


def client():
    c = pygear.Client()
    c.add_server(HOST, PORT)
    c.set_timeout(3000)
    return c


def main():
    log_path = "/tmp/pygear-ref-worker-%s.log" % sys.argv[1]
    proc = multiprocessing.Process(target=worker_main, args=(6, log_path))
    proc.start()
    time.sleep(0.5)  # a by-hand script: give the worker process time to register
    c = client()
    show("defaults", [c.timeout(), pygear.Worker().timeout(), c.get_options()])
    show("do", outcome(lambda: c.do("reverse", "Hello pygear!")))
    show("do_high", outcome(lambda: c.do_high("reverse", "abc")))
    show("do_low", outcome(lambda: c.do_low("reverse", "abc")))
    show("do_empty", outcome(lambda: c.do("empty", "x")))
    show("do_chatty", outcome(lambda: c.do("chatty", "x")))
    show("do_status_after_chatty", c.do_status())
    show("do_raiser", outcome(lambda: c.do("raiser", "x")))
    show("do_failer", outcome(lambda: c.do("failer", "x")))
    show("do_completes_early", outcome(lambda: c.do("completes_early", "x")))
    show("do_introspect", outcome(lambda: c.do("introspect", "payload", "my-unique")))
    bg = c.do_background("reverse", "bg")
    show("do_background_type", type(bg).__name__)
    show("do_background", bg)
    show("job_status", outcome(lambda: c.job_status(bg if isinstance(bg, TEXT) else bg["job_handle"])))
    show("job_status_unknown", outcome(lambda: c.job_status("H:nowhere:1")))
    events = []

    def recorder(kind):
        def record(task):
            events.append([kind, task.function_name(), outcome(task.result),
                           isinstance(task.job_handle(), TEXT),
                           pygear.describe_returncode(task.returncode()), task.strstate(),
                           task.numerator(), task.denominator()])
        return record

    for kind in ["created", "data", "warning", "status", "complete", "exception", "fail"]:
        getattr(c, "set_%s_fn" % kind)(recorder(kind))
    t1 = c.add_task("chatty", "a")
    c.add_task("raiser", "b")
    c.add_task("failer", "c")
    c.add_task_background("reverse", "d")
    show("run_tasks", outcome(c.run_tasks))
    for e in events:
        show("event", e)
    show("task_after_run", [t1.job_handle(), outcome(t1.result),
                            pygear.describe_returncode(t1.returncode()), t1.strstate()])
    t = pygear.Task(None, None)
    show("bare_task", [t.data_size(), t.denominator(), t.error(), t.function_name(),
                       t.is_known(), t.is_running(), t.job_handle(), t.numerator(),
                       outcome(t.result), pygear.describe_returncode(t.returncode()),
                       t.strstate(), t.unique()])
    quick = pygear.Client()
    quick.add_server(HOST, PORT)
    quick.set_timeout(300)
    start = time.time()
    show("do_timeout", outcome(lambda: quick.do("nobody", "x")))
    show("do_timeout_seconds", round(time.time() - start, 1))
    show("no_servers_do", outcome(lambda: pygear.Client().do("reverse", "x")))
    w = pygear.Worker()
    show("no_functions_work", outcome(w.work))
    w.add_server(HOST, PORT)
    w.add_function("idle", 0, reverse)
    w.set_timeout(200)
    show("work_timeout", outcome(w.work))
    show("function_exists", [w.function_exists("idle"), w.function_exists("other")])
    show("echo", outcome(lambda: c.echo("ping")))
    a = pygear.Admin(HOST, PORT)
    show("admin_info", a.info())
    show("admin_version_type", type(a.version()).__name__)
    show("admin_getpid_type", type(a.getpid()).__name__)
    show("admin_verbose", a.verbose())
    show("admin_create", outcome(lambda: a.create_function("ref_fn")))
    show("admin_maxqueue", outcome(lambda: a.maxqueue("ref_fn", 5)))
    show("admin_status_ref_fn", [s for s in a.status() if s["function"] == "ref_fn"])
    show("admin_drop", outcome(lambda: a.drop_function("ref_fn")))
    show("admin_workers_keys", sorted(a.workers()[0].keys()) if a.workers() else [])
    show("admin_show_jobs", outcome(a.show_jobs))
    show("admin_show_unique_jobs", outcome(a.show_unique_jobs))
    show("admin_cancel_unknown", outcome(lambda: a.cancel_job("H:nowhere:1")))
    proc.join()
    with open(log_path) as log:
        show("worker_log", log.read().splitlines())


if __name__ == "__main__":
    main()
