"""Reports at the end of the pytest run how many of gear 0.16.0's own tests ran and passed."""

from __future__ import annotations

import pytest

from tests.compat.test_gear016_suite import TOTAL_TESTS, UPSTREAM_PASSED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if UPSTREAM_PASSED:
        passed = sum(UPSTREAM_PASSED.values())
        terminalreporter.write_line(
            f"gear 0.16.0's own test suite: {passed} of {TOTAL_TESTS} passed"
        )
