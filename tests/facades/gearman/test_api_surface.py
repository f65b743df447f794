"""gear.compat.gearman's names, values and small helpers, as python-gearman 2.0.2 has them (no
server needed)."""

from __future__ import annotations

import importlib

import pytest

from gear import constants as c
from gear.compat import gearman
from gear.compat.gearman import connection_manager, constants, job, protocol, util
from gear.compat.gearman.errors import GearmanError

SUBMODULES = ("admin_client", "client", "client_handler", "command_handler", "connection",
              "connection_manager", "constants", "errors", "job", "protocol", "util", "worker",
              "worker_handler")


def test_top_level_names_and_values() -> None:
    assert (gearman.PRIORITY_NONE, gearman.PRIORITY_LOW, gearman.PRIORITY_HIGH) == (
        None, "LOW", "HIGH")
    assert (gearman.JOB_UNKNOWN, gearman.JOB_PENDING, gearman.JOB_CREATED, gearman.JOB_FAILED,
            gearman.JOB_COMPLETE) == ("UNKNOWN", "PENDING", "CREATED", "FAILED", "COMPLETE")
    assert gearman.__version__ == "2.0.2"
    for name in ("GearmanClient", "GearmanWorker", "GearmanAdminClient", "DataEncoder"):
        assert hasattr(gearman, name)
    assert gearman.GearmanClient.data_encoder is connection_manager.NoopEncoder
    assert constants.DEFAULT_GEARMAN_PORT == 4730


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodules_import(name: str) -> None:
    assert importlib.import_module(f"gear.compat.gearman.{name}").__doc__


def test_error_names() -> None:
    from gear.compat.gearman import errors

    for name in ("ConnectionError", "ServerUnavailable", "ProtocolError", "UnknownCommandError",
                 "ExceededConnectionAttempts", "InvalidClientState", "InvalidWorkerState",
                 "InvalidAdminClientState"):
        assert issubclass(getattr(errors, name), errors.GearmanError)


def test_protocol_numbers_are_the_packet_types() -> None:
    assert protocol.GEARMAN_COMMAND_SUBMIT_JOB == c.SUBMIT_JOB == 7
    assert protocol.GEARMAN_COMMAND_JOB_ASSIGN_UNIQ == 31
    assert protocol.get_command_name(c.WORK_FAIL) == "GEARMAN_COMMAND_WORK_FAIL"
    assert protocol.get_command_name(9999) == "GEARMAN_COMMAND_TEXT_COMMAND"
    assert protocol.get_command_name(999) == 999


def test_host_parameters() -> None:
    assert util.disambiguate_server_parameter("gm.example:4731") == ("gm.example", 4731)
    assert util.disambiguate_server_parameter("gm.example") == ("gm.example", 4730)
    assert util.disambiguate_server_parameter(("10.0.0.1", "4732")) == ("10.0.0.1", 4732)
    assert util.disambiguate_server_parameter("[::1]:4733") == ("::1", 4733)
    client = gearman.GearmanClient(["a:1", ("b", 2)])
    assert [(x.gearman_host, x.gearman_port) for x in client.connection_list] == [
        ("a", 1), ("b", 2)]
    with pytest.raises(GearmanError):
        gearman.GearmanClient([42])


def test_unlist_and_stopwatch() -> None:
    assert util.unlist([]) is None
    assert util.unlist(["x"]) == "x"
    with pytest.raises(ValueError):
        util.unlist([1, 2])
    assert util.Stopwatch(None).get_time_remaining() is None
    assert util.Stopwatch(0).get_time_remaining() == 0.0
    left = util.Stopwatch(30).get_time_remaining()
    assert left is not None and 29 < left <= 30


def test_noop_encoder_takes_bytes_and_text_only() -> None:
    encoder = connection_manager.NoopEncoder
    assert encoder.encode(b"x") == b"x" and encoder.encode("é") == "é"
    assert encoder.decode(b"y") == b"y"
    with pytest.raises(TypeError):
        encoder.encode(3)
    with pytest.raises(NotImplementedError):
        gearman.DataEncoder.encode(b"x")


def test_request_complete_and_unique() -> None:
    gearman_job = job.GearmanJob(None, None, "t", "u1", b"d")
    foreground = job.GearmanJobRequest(gearman_job)
    background = job.GearmanJobRequest(gearman_job, background=True)
    assert foreground.state == gearman.JOB_UNKNOWN and not foreground.complete
    foreground.state = background.state = gearman.JOB_CREATED
    assert background.complete and not foreground.complete
    foreground.state = gearman.JOB_FAILED
    assert foreground.complete
    assert foreground.unique == "u1" and foreground.job is gearman_job
    assert gearman_job.to_dict() == dict(task="t", job_handle=None, unique="u1", data=b"d")
    foreground.status = {"numerator": 1, "denominator": 2}
    assert list(foreground.status_updates) == [(1, 2)]
    assert foreground.server_status is foreground.status
    foreground.reset()
    assert foreground.state == gearman.JOB_UNKNOWN and foreground.status == {}
