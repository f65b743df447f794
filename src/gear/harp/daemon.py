"""``gear-harpd``: a harp worker daemon (console script ``gear-harpd = gear.harp.daemon:main``).

Loads procedures from a Python module (``--procedures MODULE`` or ``path/to/file.py``; the
module marks them with :func:`gear.harp.procedure` or lists them in a ``PROCEDURES`` dict),
serves them as Gearman functions ``HOST/NAME`` to every ``--server`` with the threaded harp
worker helper (:class:`gear.threaded.harp_worker.HarpWorker`), and with ``--listen`` also
takes direct calls in harpd's protocol (:class:`gear.harp.listener.DirectListener`, TLS with a
user and password). SIGTERM and SIGINT stop it: no new calls, running ones finish (up to
``--shutdown-timeout``). docs/harp.md, "gear-harpd".

An application, like geard's cli: it may import the threaded worker; never the server or
``gear.aio``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from gear.harp.harpd import DEFAULT_PORT, marked_procedures

log = logging.getLogger("gear.harp.daemon")

DESCRIPTION = """\
Serve Python procedures to HarpCaller clients: as Gearman functions HOST/NAME on one or more
job servers (geard --harp-port dispatches HarpCaller calls to them), and optionally directly,
in harpd's protocol (JSON lines over TLS with a user and password)."""

EPILOG = """\
A procedures module marks each procedure with the decorator gear.harp.procedure (name=,
pass_call=) or lists them in a dict PROCEDURES = {"name": function}. A generator's yields are
the stream and its return value the result; an exception is the exception reply.
SIGTERM and SIGINT stop the daemon once running calls finish (--shutdown-timeout)."""

Procedures = dict[str, tuple[Callable[..., Any], bool]]


def host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT``; the port may be left out when there is a default)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
        host, port = text, str(default_port)
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: bad port {port!r}") from None
    if not host or not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gear-harpd", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--procedures", required=True, metavar="MODULE",
                        help="module name (importable) or path of a .py file with the procedures")
    parser.add_argument("--host", default=socket.gethostname(),
                        help="the HarpCaller host name served (default: this machine's, "
                             "%(default)s)")
    parser.add_argument("--server", action="append", default=[], metavar="HOST:PORT",
                        type=lambda text: host_port(text, 4730),
                        help="a Gearman job server to register with (repeatable; port 4730 "
                             "if left out)")
    parser.add_argument("--ssl-key", help="client key for the job servers' TLS")
    parser.add_argument("--ssl-cert", help="client certificate for the job servers' TLS")
    parser.add_argument("--ssl-ca", help="CA certificates to verify the job servers against")
    parser.add_argument("--threads", type=int, default=4,
                        help="calls run at once from the job servers (default %(default)s)")
    parser.add_argument("--listen", metavar="ADDR:PORT",
                        type=lambda text: host_port(text, DEFAULT_PORT),
                        help=f"also take direct calls here (harpd's protocol, port {DEFAULT_PORT} "
                             "if left out; 0 picks a free one)")
    parser.add_argument("--listen-cert",
                        help="certificate of the direct-call port (required with --listen)")
    parser.add_argument("--listen-key", help="key of the direct-call port (required with --listen)")
    parser.add_argument("--user", help="user of direct calls (with --password)")
    parser.add_argument("--password",
                        help="password of --user (visible to ps: prefer --password-file)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="users of direct calls, one 'user:password' a line ('#' comments)")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0,
                        help="seconds running calls get to finish on SIGTERM/SIGINT "
                             "(default %(default)s)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="default %(default)s; logs go to stderr")
    return parser


def load_module(spec: str) -> ModuleType:
    """The procedures module: a path (``.py`` or containing a slash) or an importable name."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        module_spec = importlib.util.spec_from_file_location(f"gear_harpd_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def load_procedures(spec: str) -> Procedures:
    procedures = marked_procedures(vars(load_module(spec)))
    if not procedures:
        raise ValueError(f"{spec}: no procedures (mark them with gear.harp.procedure "
                         "or list them in PROCEDURES)")
    return procedures


def read_users(options: argparse.Namespace) -> dict[str, str]:
    users: dict[str, str] = {}
    if options.password_file:
        for number, raw in enumerate(Path(options.password_file).read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, password = line.partition(":")
            if not sep or not user:
                raise ValueError(f"{options.password_file}:{number}: expected user:password")
            users[user] = password
    if options.user is not None or options.password is not None:
        if options.user is None or options.password is None:
            raise ValueError("--user and --password go together")
        users[options.user] = options.password
    return users


class Daemon:
    """The running daemon: the worker and its helper, the listener; :meth:`stop` ends both."""

    def __init__(self, options: argparse.Namespace, procedures: Procedures) -> None:
        self.options = options
        self.procedures = procedures
        self.worker: Any = None
        self.helper: Any = None
        self.listener: Any = None
        self.stopping = threading.Event()

    def start(self) -> None:
        options = self.options
        if options.server:
            from gear.threaded.harp_worker import HarpWorker
            from gear.threaded.worker import Worker

            self.worker = Worker(f"gear-harpd-{options.host}")
            for host, port in options.server:
                self.worker.addServer(host, port, ssl_key=options.ssl_key,
                                      ssl_cert=options.ssl_cert, ssl_ca=options.ssl_ca)
            self.helper = HarpWorker(self.worker, options.host)
            for name, (fn, pass_call) in self.procedures.items():
                self.helper.register(name, fn, pass_call=pass_call)
            self.helper.start(threads=options.threads)
            log.info("serving %d procedures of host %s to %s", len(self.procedures),
                     options.host, ", ".join(f"{h}:{p}" for h, p in options.server))
        if options.listen:
            from gear.harp.listener import DirectListener
            from gear.net import tls_context

            context = tls_context(server_side=True)
            context.load_cert_chain(options.listen_cert, options.listen_key)
            address, port = options.listen
            self.listener = DirectListener(self.procedures, read_users(options), context,
                                           address, port, host=options.host)
            self.listener.start()
            log.info("listening for direct calls on %s:%d", self.listener.address,
                     self.listener.port)

    def stop(self) -> None:
        timeout = self.options.shutdown_timeout
        if self.listener is not None and not self.listener.stop(timeout):
            log.warning("direct calls still running after %ss", timeout)
        if self.helper is not None:
            self.helper.stop(timeout)
            self.worker.shutdown()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    logging.basicConfig(level=options.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not options.server and not options.listen:
        parser.error("nothing to do: give --server and/or --listen")
    if options.listen and not (options.listen_cert and options.listen_key):
        parser.error("--listen needs --listen-cert and --listen-key (direct calls are TLS)")
    if options.threads < 1:
        parser.error("--threads must be at least 1")
    try:
        procedures = load_procedures(options.procedures)
        if options.listen and not read_users(options):
            parser.error("--listen needs --user/--password or --password-file")
    except (ImportError, OSError, ValueError, TypeError, SyntaxError) as exc:
        print(f"gear-harpd: {exc}", file=sys.stderr)
        return 2
    daemon = Daemon(options, procedures)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("got %s, stopping", signal.Signals(signum).name)
        daemon.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start()
    except (OSError, ValueError) as exc:
        print(f"gear-harpd: {exc}", file=sys.stderr)
        daemon.stop()
        return 1
    while not daemon.stopping.wait(3600):
        pass
    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
