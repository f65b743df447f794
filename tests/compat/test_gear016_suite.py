"""gear 0.16.0's own unit tests, run unchanged against our ``gear`` in a subprocess.

The tests come from the gear 0.16.0 wheel: ``/tmp/gearwhl`` when present, else a per-user
cache filled with ``pip download gear==0.16.0 --no-deps`` on first use. Their code is extracted
to a temporary directory at test time and never committed. They need testtools, fixtures,
testscenarios and testresources (the ``test`` extra).

Nothing is excluded: every one of gear's 43 tests must run and pass, so that a regression in
gear compatibility shows here (run_upstream.py's ``--exclude`` is for investigating only).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.peers import missing_peer

pytestmark = pytest.mark.interop

RUNNER = Path(__file__).with_name("run_upstream.py")
REPO = Path(__file__).resolve().parents[2]
WHEEL_NAME = "gear-0.16.0-py2.py3-none-any.whl"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geartrain" / "gear016"

#: Every test of gear 0.16.0's suite runs: 31 unit tests (test_gear) + 12 functional ones.
UNIT_TESTS = 31
FUNCTIONAL_TESTS = 12
TOTAL_TESTS = UNIT_TESTS + FUNCTIONAL_TESTS
#: module -> how many of its tests passed (the run's summary prints "43 of 43", conftest.py).
UPSTREAM_PASSED: dict[str, int] = {}


def _wheel() -> Path:
    for candidate in (Path("/tmp/gearwhl") / WHEEL_NAME, CACHE / WHEEL_NAME):
        if candidate.exists():
            return candidate
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "gear==0.16.0", "--no-deps",
         "-d", str(CACHE)],
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0 or not (CACHE / WHEEL_NAME).exists():
        missing_peer(f"cannot download gear 0.16.0: {proc.stderr.decode()[-500:]}")
    return CACHE / WHEEL_NAME


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("testtools", "fixtures", "testscenarios", "testresources"):
        if importlib.util.find_spec(module) is None:
            missing_peer(f"{module} is not installed (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("gear016")
    with zipfile.ZipFile(_wheel()) as wheel:
        for name in wheel.namelist():
            if name.startswith("gear/tests/"):
                wheel.extract(name, root)
    return root


def _passed(module: str, output: str) -> None:
    match = re.search(r"^upstream: (\d+) of (\d+) passed$", output, re.M)
    UPSTREAM_PASSED[module] = int(match.group(1)) if match else 0


def _run(root: Path, *modules: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    return subprocess.run(
        [sys.executable, str(RUNNER), str(root), *modules],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_gear016_unit_tests_pass(upstream: Path) -> None:
    proc = _run(upstream, "test_gear")
    output = proc.stdout + proc.stderr
    _passed("test_gear", output)
    assert proc.returncode == 0, output[-4000:]
    assert f"running {UNIT_TESTS} upstream tests" in output
    assert f"upstream: {UNIT_TESTS} of {UNIT_TESTS} passed" in output


def test_gear016_functional_tests_pass(upstream: Path) -> None:
    if importlib.util.find_spec("OpenSSL") is None:
        missing_peer("pyOpenSSL is not installed (pip install -e '.[test]')")
    proc = _run(upstream, "test_functional")
    output = proc.stdout + proc.stderr
    _passed("test_functional", output)
    assert proc.returncode == 0, output[-4000:]
    assert f"running {FUNCTIONAL_TESTS} upstream tests" in output
    assert f"Ran {FUNCTIONAL_TESTS} tests" in output
    assert f"upstream: {FUNCTIONAL_TESTS} of {FUNCTIONAL_TESTS} passed" in output
