"""The ``pyngx`` command line, shaped like nginx's.

Owns: argv (``-c``, ``-p``, ``-t``, ``-T``, ``-q``, ``-v``, ``-V``, ``-h``,
``-s``), choosing the default config file, nginx's ``-t`` messages and exit
codes, and printing every error as one ``pyngx: [emerg] ...`` line, never
a traceback.

Default config: ``PREFIX/conf/pyngx.conf`` when it exists (PREFIX is ``-p``,
else the current directory), else ``/etc/pyngx/pyngx.conf``.

Exit status: 0 on success, 1 on any error, as nginx.
Must not: serve (server.py) or parse (config).

Source: nginx docs: "Command-line parameters".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from pyngx import NAME, __version__
from pyngx.config import Config, load
from pyngx.errors import ConfigError, PyngxError

SYSTEM_CONFIG = Path("/etc/pyngx/pyngx.conf")

#: -s signal names -> signals (nginx: stop fast, quit graceful, reload, reopen).
SIGNALS = {"stop": signal.SIGTERM, "quit": signal.SIGQUIT, "reload": signal.SIGHUP, "reopen": signal.SIGUSR1}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=NAME,
        add_help=False,
        description="nginx-style reverse proxy daemon",
        usage="pyngx [-?hvVtTq] [-s signal] [-p prefix] [-c filename]",
    )
    p.add_argument("-?", "-h", action="store_true", dest="help", help="this help")
    p.add_argument("-v", action="store_true", dest="version", help="show version and exit")
    p.add_argument("-V", action="store_true", dest="version_full", help="show version and configure options then exit")
    p.add_argument("-t", action="store_true", dest="test", help="test configuration and exit")
    p.add_argument("-T", action="store_true", dest="dump", help="test configuration, dump it and exit")
    p.add_argument("-q", action="store_true", dest="quiet", help="suppress non-error messages during configuration testing")
    p.add_argument("-s", dest="signal", choices=sorted(SIGNALS), help="send signal to a master process: stop, quit, reopen, reload")
    p.add_argument("-p", dest="prefix", help="set prefix path (default: current directory)")
    p.add_argument("-c", dest="conf", help="set configuration file (default: conf/pyngx.conf, else /etc/pyngx/pyngx.conf)")
    p.add_argument("-e", dest="error_log", help='set error log file (default: stderr); "stderr" is allowed')
    p.add_argument("-g", dest="globals", help="set global directives out of configuration file")
    p.add_argument("--no-watch", action="store_true", dest="no_watch",
                   help="do not reload when the configuration files change (SIGHUP still reloads)")
    p.add_argument("--worker", dest="worker", help=argparse.SUPPRESS)
    return p


def config_path(conf: str | None, prefix: str | None) -> Path:
    """Resolve the config file from ``-c`` and ``-p`` (see module doc)."""
    base = Path(prefix) if prefix else None
    if conf:
        path = Path(conf)
        return base / path if base is not None and not path.is_absolute() else path
    local = (base or Path()) / "conf" / "pyngx.conf"
    return local if local.exists() else SYSTEM_CONFIG


def _say(msg: str) -> None:
    print(f"{NAME}: {msg}", file=sys.stderr)


def _emerg(err: BaseException) -> None:
    _say(f"[emerg] {err}")
    if isinstance(err, ConfigError) and err.hint:
        _say(err.hint)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 1 if exc.code else 0
    if args.help:
        _parser().print_help(sys.stderr)
        return 0
    if args.version or args.version_full:
        print(f"{NAME} version: {NAME}/{__version__}", file=sys.stderr)
        if args.version_full:
            import aiohttp
            import hypercorn  # noqa: F401
            import lark

            print(f"built with Python {sys.version.split()[0]}, lark {lark.__version__}, aiohttp {aiohttp.__version__}",
                  file=sys.stderr)
        return 0
    path = config_path(args.conf, args.prefix)

    # The daemon parses in a child process, so that lark never loads into it (pyngx.config.child).
    serving = not (args.test or args.dump or args.signal)

    def loader() -> Config:
        return load(path, globals_=args.globals, error_log=args.error_log, isolated=serving)

    try:
        config = loader()
        if args.test or args.dump:
            from pyngx.runtime import Runtime

            Runtime(config)  # -t also compiles: upstream names resolve, log files open
    except ConfigError as err:
        _emerg(err)
        if args.test or args.dump:
            _say(f"configuration file {path} test failed")
        return 1
    for warning in config.warnings:
        _say(f"[warn] {warning}")
    if args.test or args.dump:
        if not args.quiet:
            _say(f"the configuration file {path} syntax is ok")
            _say(f"configuration file {path} test is successful")
        if args.dump:
            print(f"# configuration file {path}:\n{config.text}", end="")
        return 0
    if args.signal:
        return _signal(config, args.signal)
    from pyngx import log
    from pyngx.server import Server, run, serve

    log.configure(config.error_log)
    try:
        if args.worker:
            from pyngx.master import worker_sockets

            socks = worker_sockets(args.worker)
            serve(lambda: Server(loader, config, socks, is_worker=True))
            return 0
        argv_worker = ["-c", str(path)] + (["-g", args.globals] if args.globals else [])
        argv_worker += ["-e", args.error_log] if args.error_log else []
        return run(loader, config, watch_files=not args.no_watch, worker_argv=argv_worker)
    except PyngxError as err:
        _emerg(err)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        log.flush()


def _signal(config: Config, name: str) -> int:
    """``-s SIGNAL``: signal the process named in the pid file."""
    if not config.pid:
        _say('[error] no "pid" directive in the configuration, cannot find the process to signal')
        return 1
    try:
        pid = int(Path(config.pid).read_text().strip())
    except (OSError, ValueError) as exc:
        _say(f'[error] invalid PID number "" in "{config.pid}"' if isinstance(exc, ValueError)
             else f'[error] open() "{config.pid}" failed ({exc.errno}: {exc.strerror})')
        return 1
    try:
        os.kill(pid, SIGNALS[name])
    except OSError as exc:
        _say(f"[alert] kill({pid}, {SIGNALS[name]}) failed ({exc.errno}: {exc.strerror})")
        return 1
    return 0
