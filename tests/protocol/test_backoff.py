"""The one reconnect policy: jittered exponential back-off, reset on success."""

from __future__ import annotations

import pytest

from gear.protocol.backoff import RECONNECT_MAX, RECONNECT_MIN, Backoff


def test_steps_double_up_to_the_maximum_and_reset() -> None:
    backoff = Backoff(0.1, 1.0, random=lambda: 1.0)  # the top of the jitter range: the step
    assert [backoff.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1, 1])
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_each_delay_is_drawn_from_half_to_all_of_its_step() -> None:
    low = Backoff(0.1, 1.0, random=lambda: 0.0)
    assert [low.next_delay() for _ in range(3)] == pytest.approx([0.05, 0.1, 0.2])
    jittered = Backoff()
    for _ in range(200):
        step = jittered.step()
        assert step / 2 <= jittered.next_delay() <= step


def test_defaults_and_a_long_outage() -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.maximum) == (RECONNECT_MIN, RECONNECT_MAX) == (0.05, 5.0)
    for _ in range(1000):  # the attempt counter stops growing: no overflow after hours down
        assert backoff.next_delay() <= RECONNECT_MAX
    assert backoff.step() == RECONNECT_MAX
