"""gear-admin's reading of a command line, Boost's rules as gearadmin 1.1 applies them
(test_side_by_side.py holds every message to gearadmin's own; these pin the rules)."""

from __future__ import annotations

import pytest

from gear.admin_tool.options import OptionError, parse


@pytest.mark.parametrize(("argv", "values"), [
    (["-h", "x", "-p", "5", "--status"], {"host": "x", "port": "5", "status": None}),
    (["-hx", "-p5"], {"host": "x", "port": "5"}),
    (["--host=x", "--port", "5"], {"host": "x", "port": "5"}),
    (["-Sp5"], {"ssl": None, "port": "5"}),
    (["-Sp", "5"], {"ssl": None, "port": "5"}),
    (["-p", "--status"], {"port": "--status"}),  # a value is the next word, whatever it is
    (["--stat", "--work", "--cancel", "H:1"], {"status": None, "workers": None,
                                               "cancel-job": "H:1"}),
    (["word", "-", "--status", "--", "--workers"], {"status": None}),
    (["--=x"], {}),
    (["--shut", "--grace"], {"shutdown": None, "graceful": None}),
    (["--ssl", "--ssl-ca", "ca.pem"], {"ssl": None, "ssl-ca": "ca.pem"}),
])
def test_accepted(argv: list[str], values: dict[str, str | None]) -> None:
    assert parse(argv) == values


@pytest.mark.parametrize(("argv", "message"), [
    (["--foo=1"], "unrecognised option '--foo=1'"),
    (["-S5"], "unrecognised option '-S5'"),
    (["--p"], "option '--p' is ambiguous and matches '--port', and '--priority-status'"),
    # "--ssl" is gearadmin's, so "--ssl-c" is looked up among our additions only
    (["--ssl-c"], "option '--ssl-c' is ambiguous and matches '--ssl-ca', and '--ssl-cert'"),
    (["-p"], "the required argument for option '--port' is missing"),
    (["--port="], "the argument for option '--port' should follow immediately after the "
                  "equal sign"),
    (["--="], "the argument for option should follow immediately after the equal sign"),
    (["--ssl=1"], "option '--ssl' does not take any arguments"),
    (["-p1", "--port", "2"], "option '--port' cannot be specified more than once"),
    (["--status", "--status", "--x"], "unrecognised option '--x'"),  # the scan comes first
])
def test_refused(argv: list[str], message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse(argv)
    assert str(info.value) == message
