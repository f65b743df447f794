"""A program on a pseudo-terminal, its screen read through the pyte terminal emulator.

:class:`Terminal` starts a command with a pty as its controlling terminal (``TERM=xterm``, a
given size), feeds everything it draws into a :class:`pyte.Screen`, and lets a test wait for
the screen to show something (with a deadline, never a sleep), type keys and resize the window
(``TIOCSWINSZ`` and ``SIGWINCH``, as a terminal emulator does).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable

import pyte


class Terminal:
    """``command`` running on a ``columns`` x ``lines`` pty."""

    def __init__(self, command: list[str], columns: int = 100, lines: int = 24,
                 env: dict[str, str] | None = None) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.master, slave = os.openpty()
        self._set_size(slave, columns, lines)
        self.proc = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={**(env or os.environ), "TERM": "xterm", "LC_ALL": "C.UTF-8"},
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)

    @staticmethod
    def _set_size(fd: int, columns: int, lines: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def _pump(self, timeout: float) -> None:
        readable, _, _ = select.select([self.master], [], [], timeout)
        if readable:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the child closed the pty (it exited)
                data = b""
            if data:
                self.stream.feed(data)

    def wait_for(self, predicate: Callable[[list[str]], object], timeout: float = 15.0,
                 what: str = "the screen") -> None:
        """Read the program's output until ``predicate(lines)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{self.text()}")
            self._pump(min(left, 0.1))

    def wait_for_text(self, text: str, timeout: float = 15.0) -> None:
        self.wait_for(lambda lines: any(text in line for line in lines), timeout, repr(text))

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def resize(self, columns: int, lines: int) -> None:
        self._set_size(self.master, columns, lines)
        self.screen.resize(lines, columns)
        self.proc.send_signal(signal.SIGWINCH)

    def wait_exit(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; screen:\n{self.text()}")
            self._pump(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
