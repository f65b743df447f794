"""``geard``: the job server's command line (console script ``geard = gear.server.cli:main``).

Owns option parsing, logging setup, the ACL file, daemonizing (our own double fork and pidfile;
no python-daemon dependency) and turning the options into a ``ServerConfig`` + ``BrokerConfig``.

Options: every option of gear 0.16's ``geard`` (docs/gear-compat.md §4, same names, same
defaults except where noted) plus the gearmand options users reach for (docs/protocol.md §5.1):
``-j/--job-retries``, ``--job-handle-prefix``, ``-w/--worker-wakeup``, ``--exceptions``,
``-t/--threads`` (accepted for drop-in command lines; one event loop serves everything),
``--verbose``, ``-l/--log-file``, ``-L/--listen``, ``-P/--pid-file``, and our own ``--queue``,
``--data-dir``, ``--max-packet-size``, ``--uvloop/--no-uvloop``, ``--shutdown-timeout``,
``--dead-letter-max``, ``--output-limit-hard/-soft/-soft-seconds`` and ``--config FILE``
(TOML, config_file.py). The default queue, pidfile and log are per port (``queue.db`` for 4730,
``queue-<port>.db`` otherwise), so servers on different ports coexist.

Must not import the network layer at module level: ``geard --version`` and ``--help`` stay
instant, and import errors of optional extras surface as clear messages.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import logging.config
import logging.handlers
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gear.errors import ConfigurationError, GearmanError
from gear.server.config import (
    DEFAULT_OUTPUT_LIMIT_HARD,
    DEFAULT_OUTPUT_LIMIT_SOFT,
    DEFAULT_OUTPUT_LIMIT_SOFT_SECONDS,
    parse_size,
)

if TYPE_CHECKING:
    from gear.acl import ACL

log = logging.getLogger("gear.server.cli")

DESCRIPTION = """\
Gearman job server (gearmand-compatible protocol and admin output, gear-compatible options).
If the statsd python module is available, set STATSD_HOST, STATSD_PORT, and STATSD_PREFIX
environment variables for statsd support."""

EPILOG = """\
Signals: SIGTERM and SIGUSR1 shut down gracefully (stop accepting, let running jobs finish for up
to --shutdown-timeout seconds), SIGINT at once. The admin command "shutdown [graceful]" does the
same. Without -d, geard detaches (double fork) and writes --pidfile."""

#: gearmand's --verbose names mapped to logging levels.
VERBOSE_LEVELS = {
    "FATAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": logging.INFO,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_data_dir() -> Path:
    """``/var/lib/geard`` for root, else ``$XDG_STATE_HOME/geard`` (``~/.local/state/geard``)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/geard")
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "geard"


def _version() -> str:
    from gear._version import __version__

    return __version__


#: The port whose default queue, pidfile and log keep their historical names (queue.db...).
DEFAULT_PORT = 4730


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option whose help does not already give its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def per_port(name: str, port: int) -> str:
    """``name`` for the default port, else ``<stem>-<port><suffix>`` (queue-4731.db): two
    servers on one host with default settings and different ports share no file."""
    if port == DEFAULT_PORT:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{port}{dot}{suffix}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geard", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=_HelpFormatter)
    p.add_argument("--config", dest="config", metavar="FILE", default=None,
                   help="TOML file of options: one key per long option name (dashes or "
                   "underscores), e.g. port = 4731; the command line wins over the file")
    # -- gear 0.16 geard's options (same dests) --
    p.add_argument("-d", "--nodaemon", dest="nodaemon", action="store_true",
                   help="do not run as a daemon")
    p.add_argument("-p", "--port", dest="port", type=int, default=DEFAULT_PORT,
                   help="port on which to listen (0: any free port; default 4730)")
    p.add_argument("--listen-address", "-L", "--listen", dest="listen_address", default=None,
                   help="IP address or domain name to listen on (default: all, IPv4 and IPv6)")
    p.add_argument("--log-config", dest="log_config", default=None,
                   help="logging config file (logging.config.fileConfig format); wins over "
                   "--log-file/--verbose")
    p.add_argument("--pidfile", "-P", "--pid-file", dest="pidfile", default=None,
                   help="PID file (default when daemonized: <data-dir>/geard.pid, "
                   "geard-<port>.pid for a port other than 4730)")
    p.add_argument("--ssl-ca", dest="ssl_ca", metavar="PATH", default=None,
                   help="path to CA certificate: with --ssl-cert/--ssl-key, clients must present "
                   "a certificate signed by it (mutual TLS)")
    p.add_argument("--ssl-cert", dest="ssl_cert", metavar="PATH", default=None,
                   help="path to SSL public certificate")
    p.add_argument("--ssl-key", dest="ssl_key", metavar="PATH", default=None,
                   help="path to SSL private key")
    p.add_argument("--acl", dest="acl", metavar="PATH", default=None,
                   help="path to ACL file (INI: [<certificate CN>] register=, invoke=, grant=); "
                   "needs --ssl-key, --ssl-cert and --ssl-ca")
    p.add_argument("--harp-port", dest="harp_port", type=int, default=None, metavar="PORT",
                   help="also serve HarpCaller's JSON-lines protocol on PORT (docs/harp.md; "
                   "default off; TLS with the --ssl-* options when given)")
    p.add_argument("--harp-address", dest="harp_address", default="127.0.0.1",
                   help="address of the harp port (default 127.0.0.1)")
    p.add_argument("--harp-retention", dest="harp_retention", type=float,
                   default=604800, metavar="SECONDS",
                   help="keep an ended harp call's record this long (default 604800: 7 days)")
    p.add_argument("--http-port", dest="http_port", type=int, default=None, metavar="PORT",
                   help="serve /metrics (Prometheus), /status (JSON) and a live status page "
                   "on PORT (docs/operations.md; default off; 0 picks a free port; TLS with the "
                   "--ssl-* options when given; needs the 'metrics' extra)")
    p.add_argument("--http-address", dest="http_address", default="127.0.0.1",
                   help="address of the HTTP port (default 127.0.0.1)")
    p.add_argument("--metrics-max-functions", dest="metrics_max_functions", type=int,
                   default=100, metavar="N",
                   help="functions with their own metrics label; the rest are counted under "
                   "function=\"__other__\" (default 100)")
    p.add_argument("--harp-max-bytes", dest="harp_max_bytes", type=parse_size,
                   default=1 << 30, metavar="SIZE",
                   help="bound on the bytes the harp records take, e.g. 512M (default "
                   "1073741824: 1G); the oldest ended records go first (docs/harp.md)")
    p.add_argument("--harp-unknown-host-wait", dest="harp_unknown_host_wait", type=float,
                   default=10, metavar="SECONDS",
                   help="a harp call not started after SECONDS, to a host no worker serves, "
                   "ends with unknown_host (default 10; 0: it waits for a worker for ever)")
    p.add_argument("--keepalive", dest="keepalive", action="store_true",
                   help="apply the TCP keepalive tunables below to connections")
    p.add_argument("--keepalive-idle", dest="tcp_keepidle", type=int, default=7200,
                   help="TCP keepalive idle time")
    p.add_argument("--keepalive-interval", dest="tcp_keepintvl", type=int, default=75,
                   help="TCP keepalive probe interval")
    p.add_argument("--keepalive-count", dest="tcp_keepcnt", type=int, default=9,
                   help="TCP keepalive probes count")
    p.add_argument("--version", dest="version", action="store_true", help="show version")
    # -- gearmand's options --
    p.add_argument("-j", "--job-retries", dest="job_retries", type=int, default=5,
                   help="attempts before a job whose worker keeps dying fails (default 5; "
                   "gearmand's default is 0: no limit)")
    p.add_argument("--dead-letter-max", dest="dead_letter_max", type=int, default=10000,
                   help="background jobs whose retries ran out kept for 'show dead jobs' "
                   "(default 10000, the oldest dropped first; 0: keep none)")
    p.add_argument("--job-handle-prefix", dest="job_handle_prefix", default=None,
                   help="job handle prefix (default H:<hostname>)")
    p.add_argument("-w", "--worker-wakeup", dest="worker_wakeup", type=int, default=0,
                   help="sleeping workers woken per new job (0: all that can do it)")
    p.add_argument("--exceptions", dest="exceptions", action="store_true",
                   help="send WORK_EXCEPTION to every client by default")
    p.add_argument("-t", "--threads", dest="threads", type=int, default=None,
                   help="accepted for gearmand compatibility and ignored: one event loop serves "
                   "all connections (gearmand also runs every command on one thread)")
    p.add_argument("--verbose", dest="verbose", default=None, type=str.upper,
                   choices=sorted(VERBOSE_LEVELS),
                   help="log level (gearmand names; default INFO)")
    p.add_argument("-l", "--log-file", dest="log_file", default=None,
                   help="log file, 'stderr' or 'none' (default: stderr with -d, else "
                   "<data-dir>/geard.log, geard-<port>.log for a port other than 4730)")
    p.add_argument("--queue", dest="queue", default=None,
                   help="where background jobs are stored: memory, sqlite:///path.db, "
                   "postgres://... (default: sqlite:///<data-dir>/queue.db for port 4730, "
                   "queue-<port>.db for any other port)")
    p.add_argument("--data-dir", dest="data_dir", default=None,
                   help=f"directory for the default queue, pid and log files (default "
                   f"{default_data_dir()})")
    p.add_argument("--max-packet-size", dest="max_packet_size", type=int, default=None,
                   help="largest packet body accepted, in bytes (default 64 MiB)")
    p.add_argument("--uvloop", dest="uvloop", action="store_true", default=None,
                   help="require uvloop (default: use it when installed)")
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   help="use the standard asyncio event loop (default: uvloop when installed)")
    p.add_argument("--shutdown-timeout", dest="shutdown_timeout", type=float, default=30.0,
                   help="seconds a graceful shutdown (SIGTERM, SIGUSR1) waits for running jobs")
    # -- output limits (docs/semantics.md, "Output limits") --
    p.add_argument("--output-limit-hard", dest="output_limit_hard", type=parse_size,
                   default=f"{DEFAULT_OUTPUT_LIMIT_HARD >> 20}M", metavar="SIZE",
                   help="close a connection holding more unsent output than this (bytes, or "
                   "with K/M/G: 128M; 0: off)")
    p.add_argument("--output-limit-soft", dest="output_limit_soft", type=parse_size,
                   default=f"{DEFAULT_OUTPUT_LIMIT_SOFT >> 20}M", metavar="SIZE",
                   help="close a connection holding more unsent output than this for "
                   "--output-limit-soft-seconds (0: off)")
    p.add_argument("--output-limit-soft-seconds", dest="output_limit_soft_seconds", type=float,
                   default=DEFAULT_OUTPUT_LIMIT_SOFT_SECONDS, metavar="SECONDS",
                   help="how long a connection may stay over --output-limit-soft")
    return p


def load_acl(path: str) -> ACL:
    """Read gear's ACL INI file: one section per certificate CN with register/invoke/grant."""
    from gear.acl import ACL, ACLEntry

    parser = configparser.RawConfigParser()
    if not parser.read(path):
        raise ConfigurationError(f"Unable to read ACL file at {path}")
    acl = ACL()
    for subject in parser.sections():
        register = parser.get(subject, "register", fallback=None)
        invoke = parser.get(subject, "invoke", fallback=None)
        grant: bool | None = None
        if parser.has_option(subject, "grant"):
            try:
                grant = parser.getboolean(subject, "grant")
            except ValueError as exc:
                raise ConfigurationError(f"ACL file {path}, [{subject}]: {exc}") from exc
        try:
            acl.add(ACLEntry(subject, register, invoke, grant))
        except Exception as exc:  # ACLError, or a bad regular expression
            raise ConfigurationError(f"ACL file {path}, [{subject}]: {exc}") from exc
    return acl


def setup_logging(args: argparse.Namespace, data_dir: Path) -> None:
    if args.log_config:
        if not os.path.exists(args.log_config):
            raise ConfigurationError(f"Unable to read logging config file at {args.log_config}")
        logging.config.fileConfig(args.log_config, disable_existing_loggers=False)
        return
    level = VERBOSE_LEVELS[args.verbose] if args.verbose else logging.INFO
    target = args.log_file
    if target is None:
        target = "stderr" if args.nodaemon else str(data_dir / per_port("geard.log", args.port))
    root = logging.getLogger()
    root.setLevel(level)
    if target == "none":
        root.addHandler(logging.NullHandler())
        return
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        # Reopens the file when logrotate moves it (gearmand reopens on SIGHUP).
        handler = logging.handlers.WatchedFileHandler(target)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else path


def _queue_url(args: argparse.Namespace, data_dir: Path) -> str:
    if args.queue:
        url: str = args.queue
        # ``sqlite:relative/queue.db`` (no "//") is relative to the working directory, which
        # the daemon leaves for "/": make it absolute first. ``sqlite:///abs.db`` is absolute.
        prefix = "sqlite:"
        if url.startswith(prefix) and not url.startswith("sqlite://"):
            path, sep, query = url[len(prefix):].partition("?")
            url = "sqlite://" + os.path.abspath(path) + sep + query
        return url
    return f"sqlite://{(data_dir / per_port('queue.db', args.port)).absolute()}"


def _check_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return
    if pid > 0 and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        raise ConfigurationError(f"geard is already running with pid {pid} (pidfile {path})")


def _write_pidfile(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _remove_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


def _daemonize() -> int:
    """Double fork, new session, stdio on /dev/null. Returns a pipe fd to report readiness on:
    the original process waits for "OK" (exit 0) or an error message (printed, exit 1)."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        chunks = []
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        message = b"".join(chunks)
        if message.startswith(b"OK"):
            os._exit(0)
        sys.stderr.write(message.decode("utf-8", "replace") or "geard: failed to start\n")
        sys.stderr.flush()
        os._exit(1)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return write_fd


def _statsd_from_env() -> Any:
    host = os.environ.get("STATSD_HOST")
    if not host:
        return None
    from gear.server.observe.statsd import Metrics

    return Metrics(
        host, int(os.environ.get("STATSD_PORT", "8125")), os.environ.get("STATSD_PREFIX") or None
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options of ``argv``, over those of its ``--config FILE`` (config_file.py)."""
    from gear.server.config_file import parse_args as parse_with_config

    return parse_with_config(build_parser(), argv)


def _lock_hint(exc: BaseException) -> str:
    """What resolves a queue held by another server, when that is why ``exc`` happened."""
    from gear.server.storage.base import StorageLockedError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, StorageLockedError):
            return ("; another server uses this queue: give this one its own with "
                    "--queue URL (or --data-dir DIR)")
        cause = cause.__cause__
    return ""


def _logs_to_stderr() -> bool:
    """Whether a log handler (of the root or the ``gear`` loggers) writes to stderr."""
    loggers = [logging.getLogger(), logging.getLogger("gear"), logging.getLogger("gear.server"),
               log]
    return any(
        isinstance(handler, logging.StreamHandler)
        and getattr(handler, "stream", None) is sys.stderr
        for logger in loggers
        for handler in logger.handlers
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``geard``; returns the process exit status."""
    try:
        args = parse_args(None if argv is None else list(argv))
    except ConfigurationError as exc:
        print(f"geard: {exc}", file=sys.stderr)
        return 1
    if args.version:
        print(f"Gear version: {_version()}")
        return 0
    data_dir = Path(os.path.abspath(args.data_dir)) if args.data_dir else default_data_dir()
    for name in ("log_config", "pidfile", "ssl_ca", "ssl_cert", "ssl_key", "acl", "log_file"):
        value = getattr(args, name)
        if value not in (None, "stderr", "none"):
            setattr(args, name, _absolute(value))
    ready_fd: int | None = None
    pidfile: str | None = args.pidfile
    if pidfile is None and not args.nodaemon:
        pidfile = str(data_dir / per_port("geard.pid", args.port))
    try:
        from gear.server.broker import BrokerConfig
        from gear.server.config import ServerConfig
        from gear.server.engine import run_server
        from gear.server.transport import build_ssl_context

        queue = _queue_url(args, data_dir)
        if queue.startswith("sqlite:///") or args.log_file is None or pidfile:
            data_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(args, data_dir)
        if args.threads:
            log.info("--threads=%d ignored: one event loop serves every connection", args.threads)
        acl = load_acl(args.acl) if args.acl else None
        if acl is not None and not (args.ssl_key and args.ssl_cert and args.ssl_ca):
            # The ACL names clients by their certificate's CN: without mutual TLS no client
            # has one and every request would be denied (docs/server.md, Access control).
            raise ConfigurationError(
                "--acl needs mutual TLS (--ssl-key, --ssl-cert and --ssl-ca): the ACL names "
                "clients by their certificate's CN, so without it every request would be denied"
            )
        # Fail in the foreground on bad TLS files rather than in the daemon.
        build_ssl_context(args.ssl_key, args.ssl_cert, args.ssl_ca)
        config = ServerConfig(
            host=args.listen_address,
            port=args.port,
            ssl_key=args.ssl_key,
            ssl_cert=args.ssl_cert,
            ssl_ca=args.ssl_ca,
            keepalive=args.keepalive,
            tcp_keepidle=args.tcp_keepidle,
            tcp_keepintvl=args.tcp_keepintvl,
            tcp_keepcnt=args.tcp_keepcnt,
            max_packet_size=args.max_packet_size,
            queue=queue,
            shutdown_timeout=args.shutdown_timeout,
            harp_port=args.harp_port,
            harp_host=args.harp_address,
            harp_retention=args.harp_retention,
            harp_max_bytes=args.harp_max_bytes,
            harp_unknown_host_wait=args.harp_unknown_host_wait,
            output_limit_hard=args.output_limit_hard,
            output_limit_soft=args.output_limit_soft,
            output_limit_soft_seconds=args.output_limit_soft_seconds,
            http_port=args.http_port,
            http_host=args.http_address,
            metrics_max_functions=args.metrics_max_functions,
        )
        if args.http_port is not None:
            from gear.server.observe.prometheus import require

            require()  # in the foreground: a clear error naming the extra
        bkw: dict[str, Any] = {
            "job_retries": args.job_retries,
            "dead_letter_max": args.dead_letter_max,
            "worker_wakeup": args.worker_wakeup,
            "exceptions_default": args.exceptions,
            "acl": acl,
        }
        if args.job_handle_prefix:
            bkw["handle_prefix"] = args.job_handle_prefix.encode()
        if args.verbose:
            bkw["verbose"] = args.verbose.encode()
        broker_config = BrokerConfig(**bkw)
        metrics = _statsd_from_env()
        if pidfile:
            _check_pidfile(pidfile)
    except (GearmanError, OSError) as exc:
        print(f"geard: {exc}", file=sys.stderr)
        return 1

    if not args.nodaemon:
        ready_fd = _daemonize()

    def started(server: Any) -> None:
        if pidfile:
            _write_pidfile(pidfile)
        if ready_fd is not None:
            os.write(ready_fd, b"OK\n")
            os.close(ready_fd)

    try:
        run_server(
            config,
            broker_config,
            use_uvloop=args.uvloop,
            metrics=metrics,
            on_started=started,
        )
    except (GearmanError, OSError) as exc:
        message = f"{exc}{_lock_hint(exc)}"
        log.error("cannot start: %s", message)
        if ready_fd is not None:
            try:
                os.write(ready_fd, f"geard: {message}\n".encode())
            except OSError:
                pass
        elif not _logs_to_stderr():  # else the log line above is already on the terminal
            print(f"geard: {message}", file=sys.stderr)
        return 1
    finally:
        if pidfile:
            _remove_pidfile(pidfile)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

