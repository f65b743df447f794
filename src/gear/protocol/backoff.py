"""The one reconnect policy of the client-side front-ends: jittered exponential back-off.

Owns :class:`Backoff`: the delay before each further connection attempt to one server, starting
at ``initial`` seconds and doubling up to ``maximum``; each delay is drawn between 50% and 100%
of its step, so many clients and workers do not reconnect in lock-step after a server restart.
A successful connection calls :meth:`Backoff.reset`. The threaded ``BaseClientServer`` and
``gear.aio``'s ``Link`` both use it, so both front-ends wait the same way.

The defaults (:data:`RECONNECT_MIN`, :data:`RECONNECT_MAX`) are ``gear.aio``'s documented ones:
50 ms (a server restarting under us is usually back within a few hundred milliseconds) doubling
up to 5 s (a server that stays down costs each client one attempt every 2.5 to 5 s).

Pure: no I/O, no clock. Must not import anything of the package outside ``gear.protocol``,
``gear.errors`` and ``gear.constants``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["RECONNECT_MAX", "RECONNECT_MIN", "Backoff"]

#: Seconds before the first reconnect attempt.
RECONNECT_MIN = 0.05
#: The longest step, in seconds, between two attempts.
RECONNECT_MAX = 5.0

#: Doublings after which the step cannot grow any further (2**30 * 50 ms is 1.7 years).
_MAX_ATTEMPT = 30


class Backoff:
    """Delays between connection attempts to one server.

    ``random`` returns a float in [0, 1); tests pass a fixed one.
    """

    __slots__ = ("attempt", "initial", "maximum", "random")

    def __init__(
        self,
        initial: float = RECONNECT_MIN,
        maximum: float = RECONNECT_MAX,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.random = random
        #: Attempts failed since the last success.
        self.attempt = 0

    def __repr__(self) -> str:
        return f"<Backoff {self.initial}..{self.maximum}s attempt={self.attempt}>"

    def step(self) -> float:
        """The un-jittered step of the next delay: ``initial * 2**attempt``, at most ``maximum``."""
        return min(self.maximum, self.initial * (2**self.attempt))

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call moves one step further."""
        step = self.step()
        self.attempt = min(self.attempt + 1, _MAX_ATTEMPT)
        return step * (0.5 + self.random() / 2)

    def reset(self) -> None:
        """A connection succeeded: the next failure starts again from ``initial``."""
        self.attempt = 0
