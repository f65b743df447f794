"""``gear-admin top``: a live full-screen view of a Gearman server's functions (curses).

Owns the view's command line, the poller and the curses loop (docs/gear-admin.md §5):

* :class:`StatusPoller` keeps one admin connection, sends ``status`` (and ``version`` once per
  connection) and parses the replies with :mod:`gear.protocol.admin`; any failure closes the
  connection, and the next poll connects again, so a server that restarts is picked up again;
* the loop polls every ``--interval`` seconds (1 by default), waits for keys in between, and
  redraws after every poll, key and terminal resize (curses reports a resize as a key);
* what is drawn comes from :class:`~gear.admin_tool.top_model.TopModel`.

It works against any Gearman server: only ``status`` and ``version`` are used, which gearmand
and geard both answer. Must not import the server, the threaded API or asyncio.
"""

from __future__ import annotations

import argparse
import curses
import socket
import sys
import time

from gear.admin_tool.connection import AdminError, Framed, TlsFiles, connect
from gear.admin_tool.top_model import TopModel
from gear.errors import InvalidDataError
from gear.protocol.admin import FunctionStatus, parse_status

__all__ = ["StatusPoller", "main"]


class StatusPoller:
    """``status`` over one reconnecting admin connection."""

    def __init__(self, host: str, port: str, timeout: float, tls: TlsFiles | None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.tls = tls
        self.sock: socket.socket | None = None
        self.version = ""
        self._framed: Framed | None = None

    def poll(self) -> list[FunctionStatus]:
        """The functions now; :class:`AdminError` (connection closed) when that fails."""
        try:
            if self._framed is None:
                context = self.tls.context() if self.tls is not None else None
                self.sock = connect(self.host, self.port, self.timeout, context)
                self._framed = Framed(self.sock)
                version = self._framed.ask(b"version").lines
                self.version = version[0].removeprefix(b"OK ").decode("utf-8", "replace")
            return parse_status(self._framed.ask(b"status").lines)
        except (OSError, AdminError, InvalidDataError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise AdminError(f"no reply within {self.timeout:g}s")
            raise AdminError(str(exc).strip() or type(exc).__name__)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._framed = None


def _arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gear-admin top", add_help=False,
                                description="A live view of a Gearman server's functions.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-h", "--host", default="localhost", help="server host (default localhost)")
    p.add_argument("-p", "--port", default="4730", help="server port (default 4730)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between polls (default 1)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for a reply (default: the interval, at least 2)")
    p.add_argument("-S", "--ssl", action="store_true",
                   help="TLS with gearadmin's files (GEARMAND_CA_CERTIFICATE, ...)")
    p.add_argument("--ssl-ca", default=None, help="TLS: CA file for the server's certificate")
    p.add_argument("--ssl-cert", default=None, help="TLS: client certificate (mutual TLS)")
    p.add_argument("--ssl-key", default=None, help="TLS: client key (mutual TLS)")
    args = p.parse_args(argv)
    if not args.interval > 0:
        p.error("--interval must be more than 0")
    return args


def main(argv: list[str]) -> int:
    """Run the view until ``q``; the exit status."""
    args = _arguments(argv)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("gear-admin top: needs a terminal (for a one-off reading: "
                         "gear-admin --status)\n")
        return 2
    tls = None
    if args.ssl_ca or args.ssl_cert or args.ssl_key:
        tls = TlsFiles(args.ssl_ca, args.ssl_cert, args.ssl_key)
    elif args.ssl:
        tls = TlsFiles.gearadmin_defaults()
    timeout = args.timeout if args.timeout else max(args.interval, 2.0)
    poller = StatusPoller(args.host, args.port, timeout, tls)
    model = TopModel(f"{args.host}:{args.port}", args.interval)
    try:
        curses.wrapper(_loop, poller, model)
    except KeyboardInterrupt:
        pass
    finally:
        poller.close()
    return 0


def _loop(screen: curses.window, poller: StatusPoller, model: TopModel) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass  # a terminal without an invisible cursor
    next_poll = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_poll:
            try:
                statuses = poller.poll()
            except AdminError as exc:
                model.lost(str(exc))
            else:
                model.version = poller.version
                model.update(statuses, time.monotonic())
            # Keep the rhythm, but never try to catch up on polls missed while blocked.
            next_poll = max(next_poll + model.interval, time.monotonic())
        _draw(screen, model)
        screen.timeout(max(int((next_poll - time.monotonic()) * 1000), 0))
        key = screen.getch()
        if key == -1 or key == curses.KEY_RESIZE:
            continue
        if 0 <= key < 256 and not model.key(chr(key)):
            return


def _draw(screen: curses.window, model: TopModel) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    for y, line in enumerate(model.render(width, height)):
        attr = curses.A_REVERSE if y == 3 or (y == 0 and model.error) else curses.A_NORMAL
        try:
            screen.addstr(y, 0, line, attr)
        except curses.error:
            pass  # a terminal resized smaller between getmaxyx and here
    screen.refresh()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
