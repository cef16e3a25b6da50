"""Logging: structlog configured once, nginx-shaped error and access logs.

Owns: ``configure()`` (the error log: level filter and nginx's line
format), ``AccessLogger`` (one line per request per ``access_log`` target,
rendered from the location's compiled format), and ``get()``.

Error-log lines look like nginx's::

    2026/11/21 11:10:49 [error] 4242#0: upstream_connect_failed: connect() failed
    (111: Connection refused) while connecting to upstream, client: 127.0.0.1, ...

Must not: format anything per request that a template compiled at load time
can give (access lines come from variables.Template).
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, TextIO

import structlog

from pyngx.config.model import AccessLog, ErrorLog
from pyngx.request import Request

#: nginx's error-log levels, least severe first.
LEVELS = {"debug": 10, "info": 20, "notice": 25, "warn": 30, "error": 40, "crit": 50, "alert": 60, "emerg": 70}
# structlog method names -> nginx level names.
_METHOD_LEVEL = {"warning": "warn", "critical": "crit", "exception": "error", "fatal": "emerg"}

# Keys printed in nginx's order after the message, as ", key: value".
_CONTEXT_KEYS = ("client", "server", "request", "upstream", "host")


def _open(path: str) -> TextIO:
    # One line is one event: write each through, even into a pipe or file.
    if path in ("stderr", "/dev/stderr"):
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        return sys.stderr
    if path in ("stdout", "/dev/stdout"):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        return sys.stdout
    return open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open for the process


def _level(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Set ``level`` to the nginx name; ``nginx_level="notice"`` overrides the method."""
    level = event.pop("nginx_level", None) or _METHOD_LEVEL.get(method, method)
    if LEVELS.get(level, 40) < _threshold:
        raise structlog.DropEvent
    event["level"] = level
    return event


_threshold = LEVELS["notice"]


def _render_error(_: Any, method: str, event: dict[str, Any]) -> str:
    level = event.pop("level", method)
    msg = event.pop("event", "")
    reason = event.pop("reason", None)
    text = f"{time.strftime('%Y/%m/%d %H:%M:%S')} [{level}] {os.getpid()}#0: {msg}"
    if reason:
        text += f": {reason}"
    for key in _CONTEXT_KEYS:
        if key in event:
            value = event.pop(key)
            text += f', {key}: "{value}"' if key in ("request", "upstream", "host") else f", {key}: {value}"
    for key, value in event.items():
        text += f", {key}: {value}"
    return text



def configure(error_log: ErrorLog | None = None) -> None:
    """Configure structlog for the error log.

    Args:
        error_log: target and minimum level; None means stderr at "notice".

    Levels are nginx's: debug, info, notice, warn, error, crit, alert, emerg.
    """
    global _threshold
    target = error_log or ErrorLog("stderr", "notice")
    stream = _open(target.path)
    _threshold = LEVELS.get(target.level, 40)
    structlog.configure(
        processors=[_level, _render_error],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get(**bound: Any) -> Any:
    """A structlog logger, with ``bound`` fields on every event."""
    return structlog.get_logger(**bound)


class AccessLogger:
    """Writes access-log lines; keeps one open file per path for its lifetime."""

    def __init__(self) -> None:
        self._files: dict[str, IO[str]] = {}
        self._loggers: dict[str, Any] = {}

    def _logger(self, path: str) -> Any:
        logger = self._loggers.get(path)
        if logger is None:
            stream = _open(path)
            if stream not in (sys.stdout, sys.stderr):
                self._files[path] = stream
            logger = structlog.wrap_logger(
                structlog.WriteLogger(stream),
                processors=[lambda _l, _m, event: event["event"]],
            )
            self._loggers[path] = logger
        return logger

    def log(self, targets: tuple[AccessLog, ...], req: Request) -> None:
        """Write one line per target for ``req`` (nginx: ngx_http_log_module)."""
        for target in targets:
            self._logger(target.path).info(target.template.render_log(req))

    def open_all(self, targets: list[AccessLog]) -> None:
        """Open every target now, so that a bad path fails at start, not per request.

        Raises:
            OSError: a file cannot be opened for appending.
        """
        for target in targets:
            self._logger(target.path)

    def close(self) -> None:
        """Close the files (stdout/stderr stay open)."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._loggers.clear()
