"""Serving: listen sockets, Hypercorn, signals, pid file, event loop.

Owns: opening every ``listen`` socket (with nginx's bind error text),
Hypercorn's ``Config`` for them, the event loop (uvloop where available),
SIGINT/SIGTERM handling, the pid file, and ``daemon on``.

Input: a ``Config``. Output: a running server until a stop signal.
Must not: route or proxy requests (app.py), or parse config.

Source: nginx docs: ngx_http_core_module, listen; ngx_core_module, pid, daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from pyngx import log as pyngx_log
from pyngx.app import App
from pyngx.config.model import Config
from pyngx.config.values import Listen
from pyngx.errors import PyngxError

#: nginx's default listen backlog on Linux (NGX_LISTEN_BACKLOG).
DEFAULT_BACKLOG = 511


class StartError(PyngxError):
    """pyngx could not start serving (bind failed, pid file unwritable)."""


def open_sockets(config: Config) -> list[socket.socket]:
    """Bind and listen on every distinct ``listen`` address.

    Returns:
        Non-blocking listening sockets, one per address.

    Raises:
        StartError: ``bind() to ADDR failed (98: Address already in use)``.
    """
    seen: dict[tuple[str, int], Listen] = {}
    for srv in config.http.servers if config.http is not None else ():
        for lst in srv.listens:
            seen.setdefault(lst.address, lst)
    socks: list[socket.socket] = []
    try:
        for lst in seen.values():
            socks.append(_bind(lst))
    except StartError:
        for s in socks:
            s.close()
        raise
    return socks


def _bind(lst: Listen) -> socket.socket:
    if lst.host.startswith("unix:"):
        family, addr = socket.AF_UNIX, lst.host[5:]
    elif lst.family_v6:
        family, addr = socket.AF_INET6, (lst.host, lst.port)
    else:
        family, addr = socket.AF_INET, (lst.host, lst.port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if lst.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if lst.ipv6only else 0)
        sock.bind(addr)
        sock.listen(lst.backlog or DEFAULT_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartError(f"bind() to {lst} failed ({exc.errno}: {exc.strerror})") from None
    return sock


class _ToStructlog(logging.Handler):
    """Routes Hypercorn's own error log into pyngx's error log."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = pyngx_log.get()
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            msg += f": {record.exc_info[1]!r}"
        if record.levelno >= logging.ERROR:
            logger.error("server_error", reason=msg)
        else:
            logger.debug("server_event", reason=msg)


def hypercorn_config() -> HypercornConfig:
    """Hypercorn settings that give nginx's defaults where nginx has one."""
    hc = HypercornConfig()
    hc.keep_alive_timeout = 75  # nginx: keepalive_timeout 75s
    hc.keep_alive_max_requests = 1000  # nginx: keepalive_requests 1000
    hc.h11_max_incomplete_size = 32 * 1024  # nginx: large_client_header_buffers 4 8k
    hc.include_server_header = False  # pyngx sends its own Server field
    hc.h11_pass_raw_headers = True  # forward header names in the client's case
    hc.graceful_timeout = 1.0
    hc.accesslog = None
    errlog = logging.getLogger("pyngx.hypercorn")
    errlog.handlers[:] = [_ToStructlog()]
    errlog.propagate = False
    errlog.setLevel(logging.INFO)
    hc.errorlog = errlog
    return hc


def write_pid(path: str) -> None:
    """Write this process's pid to ``path`` (nginx: pid)."""
    Path(path).write_text(f"{os.getpid()}\n")


def daemonize() -> None:
    """Detach from the terminal: fork twice and start a new session (nginx: daemon on)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _serve(config: Config, socks: list[socket.socket]) -> None:
    app = App(config)
    hc = hypercorn_config()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_loop_exception)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logger = pyngx_log.get()
    started = loop.create_task(_announce(config, socks, logger))
    try:
        await worker_serve(
            wrap_app(app, hc.wsgi_max_body_size, "asgi"),
            hc,
            sockets=Sockets([], socks, []),
            shutdown_trigger=stop.wait,
        )
    finally:
        started.cancel()
    logger.info("stopped", nginx_level="notice", reason="exiting")


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log what asyncio would print as a traceback as one error-log line."""
    exc = context.get("exception")
    if isinstance(exc, asyncio.CancelledError):
        return  # a connection task cancelled at shutdown: not an error
    reason = context.get("message", "")
    if exc is not None:
        reason += f": {exc!r}"
    pyngx_log.get().error("event_loop_error", reason=reason)


async def _announce(config: Config, socks: list[socket.socket], logger: Any) -> None:
    # Hypercorn starts accepting right after lifespan startup; the listening
    # sockets already queue connections, so announce once the loop runs.
    await asyncio.sleep(0)
    if config.pid:
        write_pid(config.pid)
    names = ", ".join(_sockname(s) for s in socks)
    logger.info("started", nginx_level="notice", reason=f"pyngx serving on {names}, pid {os.getpid()}")


def _sockname(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def run(config: Config) -> int:
    """Serve ``config`` until SIGINT or SIGTERM.

    Returns:
        The process exit status (0).

    Raises:
        StartError: a listen socket could not be opened.
    """
    socks = open_sockets(config)
    if config.daemon:
        daemonize()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(config, socks))
    finally:
        for s in socks:
            s.close()
        if config.pid:
            try:
                os.unlink(config.pid)
            except OSError:
                pass
    return 0


__all__ = ["StartError", "open_sockets", "run"]
