"""The benchmarks run as docs/benchmarks.md writes them, and report honest figures.

Only start-up and the load generator's accounting are checked here, on tiny loads: the
benchmarks themselves never gate the suite (the machine is shared).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.peers import GeardProcess

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import loadgen  # noqa: E402


def _programs() -> list[str]:
    # The scripts docs/benchmarks.md runs, not the modules they share (rounds.py): a program
    # is a file that runs when started.
    return sorted(p.name for p in (REPO / "bench").glob("*.py")
                  if 'if __name__ == "__main__":' in p.read_text())


def test_the_programs_are_found_and_the_shared_modules_are_not() -> None:
    assert {"bench_server.py", "bench_aio.py", "loadgen.py"} <= set(_programs())
    assert "rounds.py" not in _programs()


@pytest.mark.parametrize("script", _programs())
def test_a_benchmark_starts_with_a_python_that_has_no_gear(script: str) -> None:
    # -S: no site-packages, so neither the installed gear nor pytest is importable: the script
    # must find this checkout's src/ by itself ("python3 bench/bench_server.py").
    result = subprocess.run([sys.executable, "-S", f"bench/{script}", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_fg_refuses_a_server_that_bg_left_full_and_runs_keep_to_their_seconds(
    tmp_path: Path,
) -> None:
    server = GeardProcess("--queue", "memory", "-l", "none", log=tmp_path / "geard.err")
    try:
        bg = loadgen.load_bg(server.port, seconds=0.5, jobs=3000)
        assert bg.jobs > 0 and bg.seconds <= 0.6
        assert loadgen.queued_jobs(server.port) >= bg.jobs  # bg leaves its jobs queued
        with pytest.raises(SystemExit, match="queued jobs"):
            loadgen.load_fg(server.port, seconds=0.5, jobs=2000)
    finally:
        server.stop()
    fresh = GeardProcess("--queue", "memory", "-l", "none", log=tmp_path / "fresh.err")
    try:
        fg = loadgen.load_fg(fresh.port, seconds=0.5, jobs=1_000_000)
        assert fg.jobs > 0 and fg.seconds <= 0.6  # the time cap holds, whatever is in flight
    finally:
        fresh.stop()


def test_the_soak_runs_a_few_seconds_with_a_restart_and_loses_no_job(tmp_path: Path) -> None:
    # The shape of bench/soak.py at a tiny scale, so that it cannot rot: geard subprocess with
    # sqlite, client and worker processes with churn (20 jobs per worker), one restart.
    csv = tmp_path / "soak.csv"
    result = subprocess.run(
        [sys.executable, "-S", "bench/soak.py", "--minutes", "0.05", "--interval", "0.5",
         "--clients", "2", "--workers", "2", "--worker-jobs", "20", "--rate", "40",
         "--drain", "60", "--csv", str(csv)],
        cwd=REPO, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-- geard restarted at" in result.stdout
    assert "jobs lost: 0" in result.stdout
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("seconds,rss_kib,fds") and len(rows) >= 4
    assert all(int(row.split(",")[1]) > 0 for row in rows[1:])  # geard's RSS was read
