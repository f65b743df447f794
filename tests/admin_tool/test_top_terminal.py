"""``gear-admin top`` on a real pseudo-terminal, read back through a terminal emulator (pyte).

Against geard and gearmand: submitted jobs show up as queue counts, the sort keys reorder the
rows, a resize redraws at the new width, a server going away is shown and picked up again when
it is back, and ``q`` exits 0. Every wait is on the screen's content, with a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.admin_tool.conftest import GEAR_ADMIN, submit_background
from tests.admin_tool.terminal import Terminal
from tests.support.peers import GeardProcess, ServerProcess

pytestmark = pytest.mark.interop


def start_top(server: ServerProcess, columns: int = 100, lines: int = 24) -> Terminal:
    return Terminal([GEAR_ADMIN, "top", "-h", server.host, "-p", str(server.port),
                     "--interval", "0.2"], columns, lines)


@pytest.fixture
def top(any_server: ServerProcess) -> Iterator[Terminal]:
    terminal = start_top(any_server)
    try:
        yield terminal
    finally:
        terminal.close()


def rows(lines: list[str]) -> list[list[str]]:
    """The function rows: the lines under the heading, split into cells."""
    heading = next((i for i, line in enumerate(lines) if line.startswith("FUNCTION")), None)
    if heading is None:  # not drawn yet
        return []
    out = []
    for line in lines[heading + 1:]:
        if not line or line.startswith("q quit"):
            break
        out.append(line.split())
    return out


def order(lines: list[str]) -> list[str]:
    return [r[0] for r in rows(lines) if r[0] in ("alpha", "zeta")]


def test_queues_sorting_and_quit(any_server: ServerProcess, top: Terminal) -> None:
    top.wait_for_text("q quit  s next sort column")
    keep = [submit_background(any_server.port, b"zeta")[0] for _ in range(3)]
    keep.append(submit_background(any_server.port, b"alpha")[0])
    # queued, largest first: zeta (3) above alpha (1)
    top.wait_for(lambda lines: order(lines) == ["zeta", "alpha"] and
                 rows(lines)[0][:4] == ["zeta", "3", "0", "0"] and "queued 4" in lines[1],
                 what="zeta 3 above alpha 1")
    top.type("1")  # by name: alpha first
    top.wait_for(lambda lines: order(lines) == ["alpha", "zeta"] and "FUNCTION^" in lines[3],
                 what="sorted by name")
    top.type("r")
    top.wait_for(lambda lines: order(lines) == ["zeta", "alpha"] and "FUNCTIONv" in lines[3],
                 what="reversed")
    keep += [submit_background(any_server.port, b"alpha")[0] for _ in range(4)]
    top.type("rs")  # back to A-Z, then the next column: queued; alpha (5) now leads
    top.wait_for(lambda lines: order(lines) == ["alpha", "zeta"] and "QUEUEDv" in lines[3] and
                 rows(lines)[0][:2] == ["alpha", "5"], what="alpha 5 above zeta 3")
    top.type("q")
    assert top.wait_exit() == 0
    for sock in keep:
        sock.close()


def test_a_resize_redraws_at_the_new_size(top: Terminal) -> None:
    def jobs_s_ends_before(column: int) -> object:
        return lambda lines: any(
            "JOBS/S" in line and line.index("JOBS/S") + 6 <= column for line in lines)

    top.wait_for(jobs_s_ends_before(100), what="the heading")
    assert not any("JOBS/S" in line and line.index("JOBS/S") < 80 for line in top.lines())
    top.resize(64, 10)
    top.wait_for(lambda lines: jobs_s_ends_before(64)(lines) and lines[-1].startswith("q quit"),
                 what="the heading redrawn at 64 columns")
    top.type("q")
    assert top.wait_exit() == 0


def test_the_server_going_away_is_shown_and_it_comes_back() -> None:
    server = GeardProcess("--queue", "memory", "-l", "none")
    terminal = start_top(server)
    try:
        terminal.wait_for_text("server 0.")
        server.stop()
        terminal.wait_for_text("NOT CONNECTED")
        server.start()  # the same port
        keep = submit_background(server.port, b"back")[0]
        terminal.wait_for(lambda lines: "NOT CONNECTED" not in lines[0] and
                          any(r[:2] == ["back", "1"] for r in rows(lines)),
                          what="the server back, with its job")
        terminal.type("q")
        assert terminal.wait_exit() == 0
        keep.close()
    finally:
        terminal.close()
        server.stop()
