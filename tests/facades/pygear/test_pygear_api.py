"""pygear's API without a job server: what pygear's own unit tests (tests/test_client.py,
test_worker.py, test_task.py, test_job.py of Yelp/pygear) check, and the shapes of its C source."""

from __future__ import annotations

import socket

import pytest

from gear.compat import pygear
from gear.errors import GearmanError
from tests.facades.pygear.conftest import Noop


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_names() -> None:
    for name in ("Client", "Worker", "Job", "Task", "Admin", "describe_returncode", "ERROR",
                 "TIMEOUT", "NO_SERVERS", "WORK_FAIL", "WORK_EXCEPTION", "GETADDRINFO",
                 "COULD_NOT_CONNECT", "LOST_CONNECTION", "NO_REGISTERED_FUNCTIONS",
                 "PYGEAR_VERBOSE_INFO", "PYGEAR_VERBOSE_MAX"):
        assert hasattr(pygear, name), name
    assert pygear.PYGEAR_VERBOSE_NEVER == 0 and pygear.PYGEAR_VERBOSE_MAX == 6


def test_exceptions_keep_their_names_and_codes() -> None:
    assert pygear.describe_returncode(pygear.TIMEOUT().code) == "TIMEOUT"
    assert pygear.TIMEOUT().code == 47 and pygear.NO_SERVERS().code == 13
    assert str(pygear.TIMEOUT()) == "TIMEOUT"
    assert issubclass(pygear.TIMEOUT, GearmanError)
    # ERROR is a sibling, as in pygear: catching it does not catch a timeout.
    assert not issubclass(pygear.TIMEOUT, pygear.ERROR)
    assert pygear.describe_returncode(0) == "SUCCESS"
    assert pygear.describe_returncode(12345) == "GEARMAN_UNKNOWN"


def test_bare_task_answers_nothing() -> None:
    t = pygear.Task(None, None)
    assert t.data_size() == 0 and t.numerator() == 0 and t.denominator() == 0
    assert t.error() is None and t.function_name() is None and t.job_handle() is None
    assert not t.is_known() and not t.is_running()
    assert t.result() is None and t.strstate() is None and t.unique() is None
    assert pygear.describe_returncode(t.returncode()) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("cls", [pygear.Client, pygear.Worker, pygear.Task, pygear.Job])
def test_set_serializer_needs_loads_and_dumps(cls) -> None:
    obj = cls()
    obj.set_serializer(Noop())
    with pytest.raises(AttributeError):
        obj.set_serializer("a string doesn't implement loads.")


def test_client_defaults_and_timeout() -> None:
    c = pygear.Client()
    assert c.timeout() == -1
    c.set_timeout(30)
    assert c.timeout() == 30
    assert c.get_options() == {"non_blocking": False, "unbuffered_result": False,
                               "free_tasks": False, "generate_unique": False}
    c.set_options(free_tasks=True)
    assert c.get_options()["free_tasks"] and not c.get_options()["non_blocking"]
    clone = c.clone()
    assert clone.timeout() == 30 and clone.get_options() == c.get_options()
    c.errno(), c.error(), c.error_code()


def test_worker_defaults_and_timeout() -> None:
    w = pygear.Worker()
    assert w.timeout() == 10000
    assert not w.get_options()["timeout_return"]
    w.set_timeout(30)
    assert w.timeout() == 30 and w.get_options()["timeout_return"]
    assert w.clone().timeout() == 30
    w.id(), w.error(), w.errno()
    w.set_identifier("cool")


def test_add_server_resolves_when_added() -> None:
    c = pygear.Client()
    c.add_server("localhost", 4730)
    c.add_servers(["localhost:4730", "127.0.0.1", "[::1]:1234"])
    with pytest.raises(pygear.GETADDRINFO):
        c.add_server("invalidhosturi.invalid", 4730)
    with pytest.raises(pygear.GETADDRINFO):
        c.add_server("localhost", -1)
    with pytest.raises(pygear.GETADDRINFO):
        c.add_servers(["invalidhosturi.invalid"])
    with pytest.raises(TypeError):
        c.add_servers("localhost:4730")  # type: ignore[arg-type]
    w = pygear.Worker()
    w.add_servers(["localhost:4730"])
    with pytest.raises(pygear.GETADDRINFO):
        w.add_server("invalid host name", -1)


def test_no_servers() -> None:
    c = pygear.Client()
    with pytest.raises(pygear.NO_SERVERS):
        c.do("reverse", "Jackdaws love my big sphynx of quartz")
    with pytest.raises(pygear.NO_SERVERS):
        c.do_background("reverse", "Jackdaws love my big sphynx of quartz")
    c.add_task("reverse", "Jackdaws love my big sphynx of quartz")
    with pytest.raises(pygear.NO_SERVERS):
        c.run_tasks()
    c.add_server("localhost", 4730)
    c.remove_servers()
    with pytest.raises(pygear.NO_SERVERS):
        c.run_tasks()
    with pytest.raises(pygear.NO_SERVERS):
        pygear.Worker().work()


def test_add_task_returns_a_task() -> None:
    t = pygear.Client().add_task("reverse", "A string to be reversed", unique="u1")
    assert type(t) is pygear.Task
    assert t.function_name() == "reverse" and t.unique() == "u1"
    assert t.strstate() == "GEARMAN_TASK_STATE_NEW"


def test_worker_functions() -> None:
    w = pygear.Worker()
    assert not w.function_exists("echo_function")
    w.add_function("echo_function", 10, lambda job: job.workload())
    assert w.function_exists("echo_function")
    w.register("test_method", 10)
    assert w.function_exists("test_method")
    w.unregister("test_method")
    assert not w.function_exists("test_method")
    w.unregister_all()
    assert not w.function_exists("echo_function")
    w.add_server("localhost", closed_port())
    with pytest.raises(pygear.NO_REGISTERED_FUNCTIONS):
        w.work()


def test_namespace_prefixes_function_names() -> None:
    w = pygear.Worker()
    assert w.namespace() is None
    w.set_namespace("ns-")
    w.add_function("f", 0, lambda job: None)
    assert w.namespace() == "ns-" and w.function_exists("f")


def test_could_not_connect() -> None:
    port = closed_port()
    c = pygear.Client()
    c.add_server("127.0.0.1", port)
    c.set_timeout(2000)
    with pytest.raises(pygear.COULD_NOT_CONNECT):
        c.do("reverse", "x")
    assert "COULD_NOT_CONNECT" in (c.error() or "")
    assert c.error_code() == pygear.COULD_NOT_CONNECT().code
    w = pygear.Worker()
    w.add_server("127.0.0.1", port)
    w.add_function("reverse", 0, lambda job: None)
    with pytest.raises(pygear.COULD_NOT_CONNECT):
        w.work()


def test_unique_longer_than_the_protocol_allows() -> None:
    c = pygear.Client()
    c.add_server("127.0.0.1", closed_port())
    with pytest.raises(pygear.ARGUMENT_TOO_LARGE):
        c.do("reverse", "x", "u" * 100)


def test_admin_defaults() -> None:
    admin = pygear.Admin.__new__(pygear.Admin)
    assert admin.info() == {"host": None, "port": 4730, "timeout": 60.0}
    admin = pygear.Admin("localhost", 1234)
    assert admin.info()["timeout"] == 60.0
    admin.set_timeout(10)
    admin.set_server("host", 4321)
    assert admin.info() == {"host": "host", "port": 4321, "timeout": 10.0}
    assert admin.clone().info() == admin.info()


def test_admin_cannot_connect() -> None:
    admin = pygear.Admin("127.0.0.1", closed_port(), 2)
    with pytest.raises(pygear.ERROR):
        admin.status()


def test_empty_job() -> None:
    j = pygear.Job()
    assert j.handle() is None and j.function_name() is None and j.unique() is None
    assert j.workload_size() == 0
    j.set_serializer(Noop())
    assert j.workload() == b""
