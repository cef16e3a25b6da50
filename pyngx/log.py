"""Logging: structlog configured once, nginx-shaped error and access logs.

Owns: ``configure()`` (the error log: level filter and nginx's line
format), ``AccessLogger`` (one line per request per ``access_log`` target,
rendered from the location's compiled format), ``reopen()`` (SIGUSR1, for
logrotate), and the writer thread that keeps file I/O off the event loop.

Error-log lines look like nginx's::

    2026/11/21 11:10:49 [error] 4242#0: upstream_failed: connect() failed
    (111: Connection refused) while connecting to upstream, client: 127.0.0.1, ...

Writing never blocks the event loop: lines go into a bounded queue
(``QUEUE_LINES``) that one thread writes out. When a slow disk lets the
queue fill, further lines are dropped and counted, and the writer logs
``log_lines_dropped`` with the count once it catches up.

Must not: format anything per request that a template compiled at load time
can give (access lines come from variables.Template).
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import IO, Any

from pyngx.config.model import AccessLog, ErrorLog
from pyngx.errors import ConfigError
from pyngx.memory import hidden
from pyngx.request import Request

# structlog.dev imports colorama when it is installed, and colorama imports
# ctypes; on Linux structlog only reads its ANSI codes, which structlog has
# built in, and pyngx renders its own lines (no ConsoleRenderer) anyway.
# Not loading them saves about 0.4 MiB of resident memory.
with hidden("colorama"):
    import structlog

#: nginx's error-log levels, least severe first.
LEVELS = {"debug": 10, "info": 20, "notice": 25, "warn": 30, "error": 40, "crit": 50, "alert": 60, "emerg": 70}
# structlog method names -> nginx level names.
_METHOD_LEVEL = {"warning": "warn", "critical": "crit", "exception": "error", "fatal": "emerg"}
#: Lines the writer queue holds before it drops.
QUEUE_LINES = 65536

# Keys printed in nginx's order after the message, as ", key: value".
_CONTEXT_KEYS = ("client", "server", "request", "upstream", "host")
_QUOTED_KEYS = frozenset({"request", "upstream", "host"})


class _Writer:
    """One thread writing (path, line) pairs to their files, in order."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue(QUEUE_LINES)
        self.files: dict[str, IO[str]] = {}
        self.dropped = 0
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def put(self, path: str, line: str) -> None:
        if self.thread is None:
            self._start()
        try:
            self.queue.put_nowait((path, line))
        except queue.Full:
            with self.lock:
                self.dropped += 1

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="pyngx-log", daemon=True)
                self.thread.start()
                atexit.register(self.flush)

    def _stream(self, path: str) -> IO[str]:
        f = self.files.get(path)
        if f is None:
            if path in ("stderr", "/dev/stderr"):
                f = sys.stderr
            elif path in ("stdout", "/dev/stdout"):
                f = sys.stdout
            else:
                f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until reopen
            self.files[path] = f
        return f

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    self._reopen()
                    continue
                path, line = item
                try:
                    f = self._stream(path)
                    f.write(line + "\n")
                    if self.queue.empty():
                        for g in self.files.values():
                            g.flush()
                except OSError:
                    pass  # a full or vanished disk: the line is lost, the proxy goes on
                with self.lock:
                    dropped, self.dropped = self.dropped, 0
                if dropped:
                    self._stream("stderr").write(_render_line("warn", "log_lines_dropped", f"{dropped} log lines dropped: writer queue full") + "\n")
            finally:
                self.queue.task_done()

    def _reopen(self) -> None:
        # Close every file and open it again at once, as nginx does, so that
        # a rotated log is replaced by a new, empty file right away.
        for path, f in list(self.files.items()):
            if f not in (sys.stdout, sys.stderr):
                f.close()
                del self.files[path]
                try:
                    self._stream(path)
                except OSError:
                    pass

    def reopen(self) -> None:
        if self.thread is None:
            self._reopen()
            return
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (a bounded time) until queued lines are written."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        for f in list(self.files.values()):
            try:
                f.flush()
            except (OSError, ValueError):
                pass


_WRITER = _Writer()


def _render_line(level: str, event: str, reason: str | None) -> str:
    text = f"{time.strftime('%Y/%m/%d %H:%M:%S')} [{level}] {os.getpid()}#0: {event}"
    return text + (f": {reason}" if reason else "")


def _level(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Set ``level`` to the nginx name; ``nginx_level="notice"`` overrides the method."""
    level = event.pop("nginx_level", None) or _METHOD_LEVEL.get(method, method)
    if LEVELS.get(level, 40) < _state["threshold"]:
        raise structlog.DropEvent
    event["level"] = level
    return event


_state: dict[str, Any] = {"threshold": LEVELS["notice"], "path": "stderr"}


def _render_error(_: Any, method: str, event: MutableMapping[str, Any]) -> str:
    text = _render_line(event.pop("level", method), event.pop("event", ""), event.pop("reason", None))
    for key in _CONTEXT_KEYS:
        if key in event:
            value = event.pop(key)
            text += f', {key}: "{value}"' if key in _QUOTED_KEYS else f", {key}: {value}"
    for key, value in event.items():
        text += f", {key}: {value}"
    return text


class _QueueLogger:
    """structlog's final logger: hands the rendered line to the writer thread."""

    def __init__(self, path: str) -> None:
        self.path = path

    def msg(self, line: str) -> None:
        _WRITER.put(self.path, line)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure(error_log: ErrorLog | None = None) -> None:
    """Configure structlog for the error log.

    Args:
        error_log: target ("stderr" or a path) and minimum level; None means
            stderr at "notice".

    Levels are nginx's: debug, info, notice, warn, error, crit, alert, emerg.
    """
    target = error_log or ErrorLog("stderr", "notice")
    _state["threshold"] = LEVELS.get(target.level, 40)
    _state["path"] = target.path
    structlog.configure(
        processors=[_level, _render_error],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        logger_factory=lambda *_: _QueueLogger(_state["path"]),
        cache_logger_on_first_use=False,
    )


def get(**bound: Any) -> Any:
    """A structlog logger, with ``bound`` fields on every event."""
    return structlog.get_logger(**bound)


def reopen() -> None:
    """Close and reopen every log file (SIGUSR1), in order with queued lines."""
    _WRITER.reopen()


def flush(timeout: float = 2.0) -> None:
    """Write out queued lines (at exit)."""
    _WRITER.flush(timeout)


_ACCESS_RENDER = [lambda _l, _m, event: event["event"]]


class AccessLogger:
    """Writes access-log lines through the writer thread."""

    def __init__(self) -> None:
        self._loggers: dict[str, Any] = {}

    def _logger(self, path: str) -> Any:
        logger = self._loggers.get(path)
        if logger is None:
            logger = structlog.wrap_logger(_QueueLogger(path), processors=_ACCESS_RENDER)
            self._loggers[path] = logger
        return logger

    def log(self, targets: tuple[AccessLog, ...], req: Request) -> None:
        """Queue one line per target for ``req`` (nginx: ngx_http_log_module)."""
        for target in targets:
            self._logger(target.path).info(target.template.render_log(req, target.escape))

    def open_all(self, targets: list[AccessLog]) -> None:
        """Check now that every file target can be opened for appending.

        Raises:
            ConfigError: ``open() "PATH" failed (13: Permission denied)``.
        """
        for target in targets:
            if target.path not in ("stdout", "stderr", "/dev/stdout", "/dev/stderr"):
                try:
                    with open(target.path, "a", encoding="utf-8"):
                        pass
                except OSError as exc:
                    path = os.path.abspath(target.path)
                    raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})') from None
            self._logger(target.path)

    def reopen(self) -> None:
        """Reopen files: the writer thread owns them, so this is ``reopen()``."""
        reopen()

    def close(self) -> None:
        """Forget the loggers (the writer thread keeps the files for other users)."""
        self._loggers.clear()
