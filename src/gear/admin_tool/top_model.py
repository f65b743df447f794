"""What ``gear-admin top`` shows, as plain text lines: rows, rates, sorting, keys, errors.

Owns :class:`TopModel`, fed with the ``status`` replies of successive polls and the keys the
user presses, and rendering the screen as a list of strings for a given size. Keeping it free of
curses lets the tests check every rule without a terminal (docs/gear-admin.md §5):

* a function's row: queued (the ``status`` total minus running), running, workers, and
  ``JOBS/S``, the net change of its total (queued + running) per second between the last two
  polls: positive while its backlog grows, negative while it drains, ``-`` before a second poll;
* sorting: one column at a time, numbers largest first and names A to Z; ``s`` moves to the
  next column, ``1``-``5`` pick one, ``r`` reverses; the sorted column's heading is marked;
* a lost server keeps the last rows on screen under a line saying it is gone and retried.

Pure: no I/O, no clock (times are passed in). Imports only ``gear.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gear.protocol.admin import FunctionStatus

__all__ = ["COLUMNS", "Row", "TopModel"]

#: Column headings, in screen order; each is a sort key.
COLUMNS = ("FUNCTION", "QUEUED", "RUNNING", "WORKERS", "JOBS/S")
#: Width of each number column.
NUMBER_WIDTH = 10
#: The key help on the last line.
KEYS_HELP = "q quit  s next sort column  1-5 sort by column  r reverse"


@dataclass(frozen=True)
class Row:
    """One function on screen."""

    name: str
    queued: int
    running: int
    workers: int
    rate: float | None

    def value(self, column: int) -> object:
        return (self.name, self.queued, self.running, self.workers, self.rate)[column]


class TopModel:
    """The state of the view: the last poll, the one before (for rates), sorting, the error."""

    def __init__(self, address: str, interval: float) -> None:
        self.address = address
        self.interval = interval
        self.rows: list[Row] = []
        self.sort_column = 1
        self.reverse = False
        self.error: str | None = None
        self.version = ""
        self.polls = 0
        self._last: dict[str, int] = {}
        self._last_time: float | None = None

    def update(self, statuses: list[FunctionStatus], now: float) -> None:
        """A ``status`` reply taken at ``now`` (seconds, any monotonic clock)."""
        elapsed = None if self._last_time is None else now - self._last_time
        totals: dict[str, int] = {}
        rows = []
        for s in statuses:
            name = s.name.decode("utf-8", "replace")
            totals[name] = s.total
            rate = None
            if elapsed is not None and elapsed > 0:
                rate = (s.total - self._last.get(name, 0)) / elapsed
            rows.append(Row(name, s.queued, s.running, s.workers, rate))
        self.rows = rows
        self._last, self._last_time = totals, now
        self.error = None
        self.polls += 1

    def lost(self, reason: str) -> None:
        """The server could not be polled; rates start again after it is back."""
        self.error = reason
        self._last_time = None

    def key(self, key: str) -> bool:
        """Handle a key press; False when the view should end."""
        if key in ("q", "Q"):
            return False
        if key == "s":
            self.sort_column = (self.sort_column + 1) % len(COLUMNS)
        elif key in "12345" and len(key) == 1:
            self.sort_column = int(key) - 1
        elif key == "r":
            self.reverse = not self.reverse
        return True

    def sorted_rows(self) -> list[Row]:
        column = self.sort_column

        def order(row: Row) -> tuple[object, ...]:
            value = row.value(column)
            if column == 0:
                return (value, )
            number = float("-inf") if value is None else value
            return (-number, row.name)  # type: ignore[operator]

        rows = sorted(self.rows, key=order)
        return rows[::-1] if self.reverse else rows

    def render(self, width: int, height: int) -> list[str]:
        """The screen as ``height`` lines (at most), none longer than ``width - 1``."""
        width = max(width - 1, 1)  # curses cannot write the bottom-right cell
        if self.error is not None:
            state = f"NOT CONNECTED: {self.error}; retrying every {self.interval:g}s"
        else:
            state = f"server {self.version}".rstrip() + f", every {self.interval:g}s"
        queued = sum(r.queued for r in self.rows)
        running = sum(r.running for r in self.rows)
        lines = [
            f"gear-admin top  {self.address}  {state}",
            f"functions {len(self.rows)}  queued {queued}  running {running}",
            "",
            self._heading(width),
        ]
        body = max(height - len(lines) - 2, 0)
        rows = self.sorted_rows()
        lines += [self._row(r, width) for r in rows[:body]]
        if body and len(rows) > body:
            lines[-1] = f"... {len(rows) - body + 1} more functions"
        # The keys stay on the last line however small the terminal is.
        lines = lines[: height - 1] + [""] * (height - 1 - len(lines)) + [KEYS_HELP]
        return [line[:width] for line in lines[-height:]] if height > 0 else []

    def _name_width(self, width: int) -> int:
        return max(width - NUMBER_WIDTH * (len(COLUMNS) - 1), 8)

    def _heading(self, width: int) -> str:
        cells = []
        for i, title in enumerate(COLUMNS):
            if i == self.sort_column:
                title += "^" if self.reverse != (i == 0) else "v"
            cells.append(title.ljust(self._name_width(width)) if i == 0
                         else title.rjust(NUMBER_WIDTH))
        return "".join(cells)

    def _row(self, row: Row, width: int) -> str:
        name_width = self._name_width(width)
        name = row.name if len(row.name) < name_width else row.name[: name_width - 2] + "~"
        rate = "-" if row.rate is None else f"{row.rate:+.1f}"
        numbers = (row.queued, row.running, row.workers)
        return name.ljust(name_width) + "".join(f"{n:>{NUMBER_WIDTH}}" for n in numbers) + \
            rate.rjust(NUMBER_WIDTH)
