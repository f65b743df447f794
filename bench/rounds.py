"""What the client/worker pair benchmarks share: alternating rounds, their rates, the ratios.

Used by bench_aio.py, bench_facades.py and bench_facade_pygear.py (docs/benchmarks.md): each
run (a tuple naming the client, the worker and the window) is measured once per round, rounds
alternate over all runs, and the figures printed are the best and the median rate of each run
and the ratios of the medians. A run that fails once is reported FAILED with its error and not
tried again. Also :func:`end_process`, how a worker process is stopped.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

__all__ = ["Rates", "Sample", "end_process"]


class Sample:
    """What one measurement found: jobs done, in seconds."""

    jobs: int = 0
    seconds: float = 1.0


class Rates:
    """Rates (jobs/s) per run over the rounds, and the runs that failed."""

    def __init__(self) -> None:
        self.samples: dict[Hashable, list[float]] = {}
        self.failures: dict[Hashable, str] = {}

    def failed(self, run: Hashable) -> bool:
        """Whether ``run`` failed in an earlier round (it is not tried again)."""
        return run in self.failures

    @contextmanager
    def measuring(self, run: Hashable) -> Iterator[Sample]:
        """One measurement of ``run``: set the yielded sample's ``jobs`` and ``seconds``. An
        exception inside is kept as the run's failure (and not raised)."""
        sample = Sample()
        try:
            yield sample
        except Exception as exc:
            self.failures[run] = f"{type(exc).__name__}: {exc}"
            return
        self.samples.setdefault(run, []).append(sample.jobs / sample.seconds)

    def row(self, run: Hashable) -> str:
        """``best/s median/s`` as the tables print them (9 wide each), or FAILED and why."""
        if run in self.failures:
            return f" FAILED {self.failures[run]}"
        rates = self.samples.get(run)
        if not rates:
            return " (not measured)"
        return f"{max(rates):>9.0f} {statistics.median(rates):>9.0f}"

    def ratio(self, a: Hashable, b: Hashable, label: str, width: int = 62) -> None:
        """Print ``label`` and the ratio of the median rates of ``a`` and ``b`` (when both
        were measured)."""
        if self.samples.get(a) and self.samples.get(b):
            value = statistics.median(self.samples[a]) / statistics.median(self.samples[b])
            print(f"  {label:<{width}} {value:6.2f}x")


def end_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, 5 s to go, then SIGKILL; close its stderr pipe."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()
