"""/metrics: every gauge and counter has its exact value, typed as Prometheus reads it.

The broker is driven by hand (:mod:`tests.server.observe.scene`) on a fake clock, so the
histograms' counts and sums are exact too; the exposition is read back with
``prometheus_client.parser``, the parser Prometheus' own Python tooling uses.
"""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gear import constants as c
from gear.protocol.packets import request
from gear.server.observe.metrics import OTHER, JobMetrics
from gear.server.observe.prometheus import Exposition
from tests.server.observe.scene import FINISHED, SUBMITTED, observed, scene

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: bytes) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, sorted labels) -> value)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def exposition(net: object, metrics: JobMetrics) -> Exposition:
    return Exposition(net.broker, metrics, time.monotonic(), "9.9.9")  # type: ignore[attr-defined]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_gauge_and_counter_of_a_known_state() -> None:
    sc = scene()
    types, samples = parse(exposition(sc.net, sc.metrics).render())

    assert value(samples, "gearman_up") == 1
    assert value(samples, "gearman_version_info", version="9.9.9") == 1
    gauges = {  # function: jobs, running, waiting, workers
        "work": (4, 1, 3, 1),
        "other": (0, 0, 0, 1),
        "slow": (0, 0, 0, 1),
    }
    for fn, (jobs, running, waiting, workers) in gauges.items():
        assert value(samples, "gearman_jobs", function=fn) == jobs
        assert value(samples, "gearman_jobs_running", function=fn) == running
        assert value(samples, "gearman_jobs_waiting", function=fn) == waiting
        assert value(samples, "gearman_workers", function=fn) == workers
    assert value(samples, "geard_jobs_queued", function="work", priority="high") == 1
    assert value(samples, "geard_jobs_queued", function="work", priority="normal") == 2
    assert value(samples, "geard_jobs_queued", function="work", priority="low") == 0

    submitted = {dict(k[1])["function"]: v for k, v in samples.items()
                 if k[0] == "geard_jobs_submitted_total"}
    assert submitted == SUBMITTED
    completed = {(dict(k[1])["function"], dict(k[1])["outcome"]): v
                 for k, v in samples.items() if k[0] == "geard_jobs_completed_total"}
    assert completed == FINISHED

    # Queue wait: work's running job 1 s; other's three 0.5 s each; slow's none (0 s).
    assert value(samples, "geard_job_queue_wait_seconds_count", function="work") == 1
    assert value(samples, "geard_job_queue_wait_seconds_sum", function="work") == 1.0
    assert value(samples, "geard_job_queue_wait_seconds_count", function="other") == 3
    assert value(samples, "geard_job_queue_wait_seconds_sum", function="other") == 1.5
    assert value(samples, "geard_job_queue_wait_seconds_bucket", function="other",
                 le="0.1") == 0
    assert value(samples, "geard_job_queue_wait_seconds_bucket", function="other",
                 le="0.5") == 3
    assert value(samples, "geard_job_queue_wait_seconds_count", function="slow") == 1
    assert value(samples, "geard_job_queue_wait_seconds_sum", function="slow") == 0.0
    # Run time: complete 0.25 + fail 2 + exception 4; the timeout 1 s; the held job none yet.
    assert value(samples, "geard_job_run_seconds_count", function="other") == 3
    assert value(samples, "geard_job_run_seconds_sum", function="other") == 6.25
    assert value(samples, "geard_job_run_seconds_bucket", function="other", le="1.0") == 1
    assert value(samples, "geard_job_run_seconds_bucket", function="other", le="5.0") == 3
    assert value(samples, "geard_job_run_seconds_bucket", function="other", le="+Inf") == 3
    assert value(samples, "geard_job_run_seconds_sum", function="slow") == 1.0
    assert ("geard_job_run_seconds_count", (("function", "work"),)) not in samples

    # Connections: the three workers, the client and the admin connection.
    assert value(samples, "geard_connections", role="worker") == 3
    assert value(samples, "geard_connections", role="client") == 2
    assert value(samples, "geard_store_batch_seconds_count") == 0
    assert value(samples, "geard_functions_folded") == 0
    assert value(samples, "process_resident_memory_bytes") > 0

    assert types["geard_jobs_submitted"] == "counter"
    assert types["geard_jobs_completed"] == "counter"
    assert types["geard_store_jobs"] == "counter"
    assert types["process_cpu_seconds"] == "counter"
    assert types["geard_job_queue_wait_seconds"] == "histogram"
    assert types["geard_job_run_seconds"] == "histogram"
    assert types["geard_store_batch_seconds"] == "histogram"
    for gauge in ("gearman_up", "gearman_jobs", "gearman_jobs_running", "gearman_jobs_waiting",
                  "gearman_workers", "geard_connections", "geard_jobs_queued"):
        assert types[gauge] == "gauge", gauge


def test_finishing_the_held_job_moves_the_gauges_and_counters() -> None:
    sc = scene()
    net = sc.net
    net.now += 3.0
    net.send(sc.workers[0], c.WORK_COMPLETE, sc.held, b"r")
    _, samples = parse(exposition(net, sc.metrics).render())
    assert value(samples, "gearman_jobs", function="work") == 3
    assert value(samples, "gearman_jobs_running", function="work") == 0
    assert value(samples, "geard_jobs_submitted_total", function="work") == 5
    assert value(samples, "geard_jobs_completed_total", function="work", outcome="complete") == 1
    # Assigned before the scene's other jobs ran (8.75 s of fake time), then 3 s more.
    assert value(samples, "geard_job_run_seconds_sum", function="work") == 11.75


def test_a_job_cancelled_while_running_is_submitted_once_and_finished_once() -> None:
    net, metrics = observed()
    cl, adm = net.connect(), net.connect()
    w = net.worker(b"f")
    h = net.submit(cl, b"f")
    net.grab(w)
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert metrics.submitted(net.broker.functions.values()) == {"f": 1}
    net.send(w, c.WORK_COMPLETE, h, b"late")  # reaches nobody: no second finish
    assert metrics.submitted(net.broker.functions.values()) == {"f": 1}
    assert metrics.finished_jobs == {("f", "cancelled"): 1}


def test_a_job_cancelled_while_running_whose_worker_leaves_is_finished_once() -> None:
    net, metrics = observed()
    cl, adm = net.connect(), net.connect()
    w = net.worker(b"f")
    h = net.submit(cl, b"f")
    net.grab(w)
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert metrics.queue_wait["f"].count == 1
    net.broker.disconnect(w)  # the requeue forgets it: no requeue, no second finish
    assert metrics.finished_jobs == {("f", "cancelled"): 1}
    assert metrics.submitted(net.broker.functions.values()) == {"f": 1}
    assert metrics.queue_wait["f"].count == 1
    assert "f" not in metrics.run_time


def test_a_job_cancelled_while_running_before_the_metrics_is_not_counted() -> None:
    from tests.server.helpers import Net

    net = Net()
    cl, adm, w = net.connect(), net.connect(), net.worker(b"f")
    h = net.submit(cl, b"f")
    net.grab(w)
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    metrics = JobMetrics(clock=lambda: net.now)
    metrics.bind(net.broker)
    net.send(w, c.WORK_COMPLETE, h, b"late")
    assert metrics.finished_jobs == {}
    assert metrics.run_time == {}


def test_requeued_jobs_wait_again_from_their_requeue() -> None:
    net, metrics = observed()
    cl = net.connect()
    w1 = net.worker(b"f")
    net.submit(cl, b"f")
    net.now += 2.0
    net.grab(w1)
    net.now += 1.0
    net.broker.disconnect(w1)  # back to the front of the queue
    net.now += 0.5
    w2 = net.worker(b"f")
    net.grab(w2)
    h = metrics.queue_wait["f"]
    assert (h.count, h.sum) == (2, 2.5)
    assert metrics.submitted(net.broker.functions.values()) == {"f": 1}


def test_fast_path_jobs_are_timed_from_their_run() -> None:
    """Pipelined submits past the broker's first 999 jobs take the fast path, which the
    metrics leave on; every job's queue wait is still observed, from its run's one clock
    reading."""
    net, metrics = observed()
    cl = net.connect()
    w = net.worker(b"f")
    assert net.broker.functions[b"f"].plain  # the metrics keep the fast path on
    net.raw(cl, b"".join(request(c.SUBMIT_JOB_BG, b"f", b"", b"%d" % i) for i in range(1500)))
    net.take(cl)
    jobs = list(net.broker.jobs.by_number.values())
    assert len(jobs) == 1500 and jobs[-1].born is jobs[1000].born  # one reading for the run
    assert {job.born for job in jobs} == {net.now}
    net.now += 2.0
    for _ in range(1500):
        net.grab(w)
    h = metrics.queue_wait["f"]
    assert (h.count, h.sum) == (1500, 3000.0)
    assert metrics.submitted(net.broker.functions.values()) == {"f": 1500}


def test_the_log_is_only_appended_to_and_counted_on_every_read() -> None:
    """The broker only appends to its log (one entry per job that leaves); the metrics empty it
    when they count it (every COUNT_INTERVAL on the server's loop, tests/server/observe/
    test_http.py) and before every read."""
    net, metrics = observed()
    cl = net.connect()
    w = net.worker(b"f")
    for i in range(50):
        h = net.submit(cl, b"f", unique=b"%d" % i)
        net.grab(w)
        net.now += 0.25
        net.send(w, c.WORK_COMPLETE, h, b"")
        net.take(cl)
        assert len(net.broker.functions[b"f"].log_ended) == i + 1  # a completed job's times
        assert net.broker.job_log == []  # (the tuples are for every other ending)
    assert metrics.finished_jobs == {("f", "complete"): 50}
    assert net.broker.functions[b"f"].log_ended == [] and net.broker.log_functions == []
    metrics.count()  # nothing new: nothing moves
    run = metrics.run_time["f"]
    assert (run.count, run.sum) == (50, 0.25 * 50)


def test_a_log_entry_that_cannot_be_counted_does_not_stay() -> None:
    net, metrics = observed()
    net.broker.job_log.append(("not a function", "complete", 1.0, 2.0, 3.0))
    with pytest.raises(AttributeError):
        metrics.count()
    assert net.broker.job_log == []
    net.submit(net.connect(), b"f")
    f = net.broker.functions[b"f"]
    f.log_born.append(1.0)
    f.log_assigned.append(2.0)
    f.log_ended.append("not a time")
    net.broker.log_functions.append(f)
    with pytest.raises(TypeError):
        metrics.count()
    assert (f.log_born, f.log_assigned, f.log_ended, net.broker.log_functions) == ([], [], [], [])


def test_a_job_made_before_the_metrics_has_no_queue_wait() -> None:
    from tests.server.helpers import Net

    net = Net()
    cl, w = net.connect(), net.worker(b"f")
    h = net.submit(cl, b"f")
    job = net.broker.jobs.by_number[1]
    assert not hasattr(job, "born")  # no reader: nothing stamped
    metrics = JobMetrics(clock=lambda: net.now)
    metrics.bind(net.broker)
    assert job.born is None
    net.grab(w)
    net.now += 1.0
    net.send(w, c.WORK_COMPLETE, h, b"")
    assert metrics.finished_jobs == {("f", "complete"): 1}
    assert metrics.queue_wait == {}
    assert metrics.run_time["f"].count == 1


def test_functions_past_the_limit_are_folded_into_one_label() -> None:
    net, metrics = observed(max_functions=2)
    cl = net.connect()
    for name in (b"a", b"b", b"c", b"d"):
        net.submit(cl, name)
        net.submit(cl, name)
    net.worker(b"d")
    _, samples = parse(exposition(net, metrics).render())
    assert {dict(k[1])["function"] for k in samples if k[0] == "gearman_jobs"} == {"a", "b", OTHER}
    assert value(samples, "gearman_jobs", function=OTHER) == 4
    assert value(samples, "gearman_workers", function=OTHER) == 1
    assert value(samples, "geard_jobs_submitted_total", function=OTHER) == 4
    assert value(samples, "geard_functions_folded") == 2


def test_store_batches_are_timed() -> None:
    net, metrics = observed()
    metrics.store_batch(0.002, 10)
    metrics.store_batch(0.3, 5)
    _, samples = parse(exposition(net, metrics).render())
    assert value(samples, "geard_store_batch_seconds_count") == 2
    assert value(samples, "geard_store_batch_seconds_sum") == pytest.approx(0.302)
    assert value(samples, "geard_store_batch_seconds_bucket", le="0.0025") == 1
    assert value(samples, "geard_store_jobs_total") == 15


def test_label_values_are_escaped() -> None:
    net, metrics = observed()
    cl = net.connect()
    net.submit(cl, b'we"ird\\name\xff')
    _, samples = parse(exposition(net, metrics).render())
    assert value(samples, "gearman_jobs", function='we"ird\\name\ufffd') == 1


def test_any_observer_not_told_in_bulk_turns_the_fast_path_off() -> None:
    from gear.server.broker import JobEvents

    net, _ = observed()
    net.worker(b"f")
    assert net.broker.functions[b"f"].plain
    net.broker.add_observer(JobEvents())  # per-job created events wanted
    assert not net.broker.functions[b"f"].plain


def test_events_are_timed_when_they_happen() -> None:
    """The broker reads the metrics' clock when a job is made, assigned and ended: a wait and
    a run are the differences of those readings, whenever the log is counted."""
    from tests.server.helpers import Net

    net = Net()
    metrics = JobMetrics(clock=lambda: net.now)
    metrics.bind(net.broker)
    cl, w = net.connect(), net.worker(b"f")
    h = net.submit(cl, b"f")
    net.now += 2.0
    net.grab(w)
    net.now += 0.5
    net.send(w, c.WORK_COMPLETE, h, b"")
    net.now += 7.0  # counted later: nothing moves
    assert (metrics.queue_wait["f"].count, metrics.queue_wait["f"].sum) == (1, 2.0)
    assert (metrics.run_time["f"].count, metrics.run_time["f"].sum) == (1, 0.5)


def test_interleaved_and_folded_functions_are_counted_apart_in_one_count() -> None:
    """One count of a log whose entries alternate between functions, two of them folded into
    one label: every sum and bucket lands in its own series."""
    net, metrics = observed(max_functions=1)
    cl = net.connect()
    workers = {name: net.worker(name) for name in (b"a", b"b", b"c")}
    handles = []
    for i, name in enumerate([b"a", b"b", b"a", b"c", b"b", b"a"]):
        handles.append((name, net.submit(cl, name, unique=b"%d" % i)))
        net.grab(workers[name])
    for i, (name, h) in enumerate(handles):
        net.now += 1.0 + i  # runs of 1, 2, 3... seconds
        net.send(workers[name], c.WORK_COMPLETE, h, b"")
        net.take(cl)
    assert [len(f.log_ended) for f in net.broker.log_functions] == [3, 2, 1]  # a, b, c
    run = metrics.run_time
    elapsed = {i: sum(1.0 + k for k in range(i + 1)) for i in range(6)}
    assert run["a"].count == 3 and run["a"].sum == elapsed[0] + elapsed[2] + elapsed[5]
    assert run[OTHER].count == 3 and run[OTHER].sum == elapsed[1] + elapsed[3] + elapsed[4]
    assert metrics.finished_jobs == {("a", "complete"): 3, (OTHER, "complete"): 3}


def test_buckets_match_a_search_per_value_on_every_bound() -> None:
    """The count tries the last value's bucket first; every value still lands where a search
    of its own puts it, bounds included (a bucket holds the values up to its bound)."""
    import random

    from gear.server.observe.metrics import TIME_BUCKETS, Histogram

    net, metrics = observed()
    net.submit(net.connect(), b"f")
    f = net.broker.functions[b"f"]
    rng = random.Random(7)
    values = [rng.choice([*TIME_BUCKETS, 0.0, -1.0, 1e9]) for _ in range(300)]
    values += [rng.uniform(0, 4000) for _ in range(300)]
    values += [rng.expovariate(1e3) for _ in range(300)]
    rng.shuffle(values)
    waits, runs = Histogram(TIME_BUCKETS), Histogram(TIME_BUCKETS)
    net.broker.log_functions.append(f)
    for i, v in enumerate(values):  # as the broker logs completed jobs: in f's columns
        run = values[-1 - i]
        f.log_born.append(10.0)
        f.log_assigned.append(10.0 + v)
        f.log_ended.append(10.0 + v + run)
        waits.observe((10.0 + v) - 10.0)
        runs.observe((10.0 + v + run) - (10.0 + v))
    assert metrics.queue_wait["f"].counts == waits.counts
    assert metrics.run_time["f"].counts == runs.counts
    assert metrics.queue_wait["f"].sum == pytest.approx(waits.sum)


def test_columns_in_bulk_columns_one_by_one_and_tuples_in_one_count() -> None:
    """In one count: a function's columns of plain completed jobs in bulk (``g``), a
    function's columns holding a job made before the metrics or the late result of a job
    cancelled while running one by one (``f``), and the tuples of every other ending: every
    ending lands where a count of its own puts it."""
    import random

    from gear.server.broker.lifecycle import FORGOTTEN, Outcome
    from gear.server.observe.metrics import TIME_BUCKETS, Histogram

    net, metrics = observed()
    cl = net.connect()
    net.submit(cl, b"f")
    net.submit(cl, b"g")
    f, g = net.broker.functions[b"f"], net.broker.functions[b"g"]
    rng = random.Random(11)
    net.broker.log_functions.extend((f, g))
    g_waits, g_runs = Histogram(TIME_BUCKETS), Histogram(TIME_BUCKETS)
    for _ in range(500):
        assigned = 10.0 + rng.expovariate(1e3)
        ended = assigned + rng.expovariate(1e2)
        g.log_born.append(10.0)
        g.log_assigned.append(assigned)
        g.log_ended.append(ended)
        g_waits.observe(assigned - 10.0)
        g_runs.observe(ended - assigned)
    waits, runs = Histogram(TIME_BUCKETS), Histogram(TIME_BUCKETS)
    finished: dict[str, int] = {}
    kinds = ["complete"] * 6 + ["fail", "exception", "timeout", "requeue", "unborn", "forgotten"]
    for _ in range(2000):
        kind = rng.choice(kinds)
        born, assigned = 10.0, 10.0 + rng.expovariate(1e3)
        ended = assigned + rng.expovariate(1e2)
        value = None if kind == "requeue" else kind
        if kind in ("unborn", "forgotten"):
            value = Outcome.COMPLETE.value
            born = None if kind == "unborn" else FORGOTTEN
        if value == Outcome.COMPLETE.value:
            f.log_born.append(born)
            f.log_assigned.append(assigned)
            f.log_ended.append(ended)
        else:
            net.broker.job_log.append((f, value, born, assigned, ended))
        if kind == "forgotten":
            continue
        if born is not None:
            waits.observe(assigned - born)
        if value is not None:
            runs.observe(ended - assigned)
            finished[value] = finished.get(value, 0) + 1
    assert metrics.queue_wait["f"].counts == waits.counts
    assert metrics.run_time["f"].counts == runs.counts
    assert metrics.queue_wait["f"].sum == pytest.approx(waits.sum)
    assert metrics.run_time["f"].sum == pytest.approx(runs.sum)
    assert metrics.queue_wait["g"].counts == g_waits.counts
    assert metrics.run_time["g"].counts == g_runs.counts
    assert metrics.run_time["g"].sum == pytest.approx(g_runs.sum)
    assert metrics.finished_jobs == {**{("f", k): n for k, n in finished.items()},
                                     ("g", "complete"): 500}
    assert (f.log_ended, g.log_ended, net.broker.log_functions, net.broker.job_log) == (
        [], [], [], [])
