"""TopModel, what ``gear-admin top`` draws: rates between polls, sorting, keys, the layout."""

from __future__ import annotations

from gear.admin_tool.top_model import KEYS_HELP, TopModel
from gear.protocol.admin import FunctionStatus


def status(name: str, total: int, running: int = 0, workers: int = 0) -> FunctionStatus:
    return FunctionStatus(name.encode(), total, running, workers)


def names(model: TopModel) -> list[str]:
    return [r.name for r in model.sorted_rows()]


def test_rates_are_the_change_of_the_total_per_second() -> None:
    model = TopModel("h:1", 1.0)
    model.update([status("a", 10, 2, 1)], now=100.0)
    assert model.rows[0].rate is None  # one poll: no rate yet
    assert (model.rows[0].queued, model.rows[0].running, model.rows[0].workers) == (8, 2, 1)
    model.update([status("a", 4, 1, 1), status("b", 6)], now=102.0)
    rates = {r.name: r.rate for r in model.rows}
    assert rates == {"a": -3.0, "b": 3.0}  # b was not there: it grew from 0


def test_a_lost_server_keeps_the_rows_and_restarts_the_rates() -> None:
    model = TopModel("h:1", 1.0)
    model.update([status("a", 5)], now=1.0)
    model.lost("Error connecting to h.")
    screen = model.render(80, 10)
    assert screen[0].startswith("gear-admin top  h:1  NOT CONNECTED: Error connecting to h.")
    assert any(line.startswith("a ") for line in screen)
    model.update([status("a", 7)], now=9.0)
    assert model.error is None and model.rows[0].rate is None


def test_sorting_keys() -> None:
    model = TopModel("h:1", 1.0)
    model.update([status("b", 1, 0, 3), status("a", 5, 5, 1), status("c", 3, 0, 2)], now=0.0)
    assert names(model) == ["c", "b", "a"]  # queued, largest first (a has 0 queued)
    assert model.key("3")
    assert names(model) == ["a", "b", "c"]  # running
    model.key("s")
    assert names(model) == ["b", "c", "a"]  # workers
    model.key("1")
    assert names(model) == ["a", "b", "c"]  # function name, A to Z
    model.key("r")
    assert names(model) == ["c", "b", "a"]
    model.key("s")
    model.key("s")
    model.key("x")  # unknown keys change nothing
    assert model.sort_column == 2
    assert model.key("q") is False


def test_the_sorted_column_is_marked_and_the_keys_shown() -> None:
    model = TopModel("h:1", 1.0)
    model.update([status("resize", 3, 1, 2)], now=0.0)
    screen = model.render(80, 8)
    assert len(screen) == 8 and all(len(line) <= 79 for line in screen)
    assert "QUEUEDv" in screen[3] and screen[-1] == KEYS_HELP
    assert screen[4].split() == ["resize", "2", "1", "2", "-"]
    model.key("1")
    assert model.render(80, 8)[3].startswith("FUNCTION^")
    model.key("r")
    assert model.render(80, 8)[3].startswith("FUNCTION^") is False


def test_a_small_screen_shows_how_many_rows_are_hidden() -> None:
    model = TopModel("h:1", 1.0)
    model.update([status(f"f{i:02}", i) for i in range(20)], now=0.0)
    screen = model.render(60, 10)
    assert len(screen) == 10
    # 4 header lines, 3 rows, this line, a blank line, the keys
    assert screen[-3:] == ["... 17 more functions", "", KEYS_HELP]
    assert screen[6].split() == ["f17", "17", "0", "0", "-"]
    long = TopModel("h:1", 1.0)
    long.update([status("x" * 200, 1)], now=0.0)
    row = long.render(60, 10)[4]
    assert len(row) == 59 and "~" in row
    assert TopModel("h:1", 1.0).render(20, 3) == [line[:19] for line in [
        "gear-admin top  h:1  server, every 1s", "functions 0  queued 0  running 0", KEYS_HELP]]
