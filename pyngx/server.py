"""Serving one process: Hypercorn, signals, reload, pid file.

Owns: one ``pyngx.listener.Listener`` per listen socket (the sockets
themselves are sockets.py's), so that a reload can open
new addresses and drain removed ones while unchanged ones keep their
sockets (each listener's TLS / HTTP/2 plan comes from ``pyngx.tls.build`` and is
renewed on reload), the signal handlers,
config reload (SIGHUP and file watching), the pid file and its lock,
systemd notification, and ``daemon on``.

Signals, as nginx: TERM/INT fast stop, QUIT graceful stop (in-flight
requests and WebSockets finish, up to ``worker_shutdown_timeout``), HUP
reload, USR1 reopen log files.

Input: a config loader and the first ``Config``. Output: a process that
serves until stopped. With ``worker_processes`` > 1, master.py runs one
``Server`` per worker process (``is_worker``) and does the watching.
Must not: route or proxy requests (app.py), or parse config (config).

Source: nginx docs: "Controlling nginx"; ngx_core_module (pid, daemon,
worker_shutdown_timeout); ngx_http_core_module, listen.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, cast

from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import AppWrapper

from pyngx import log as pyngx_log
from pyngx.listener import Listener as SocketServer
from pyngx import memory, notify, tls
from pyngx.app import App
from pyngx.proxy import websocket
from pyngx.config.model import Config
from pyngx.errors import ConfigError, StartError
from pyngx.reload import changes, stamps, watch
from pyngx.runtime import Runtime
from pyngx.sockets import Address, open_sockets, sockname

#: Grace for in-flight requests on a fast stop (TERM/INT), seconds.
FAST_STOP_GRACE = 0.5
#: Without worker_shutdown_timeout a graceful stop waits this long at most, seconds.
GRACEFUL_FOREVER = 365 * 86400.0

# --- pid file ---------------------------------------------------------------------


class PidFile:
    """The ``pid`` file, locked for the life of the process.

    A second pyngx with the same pid file finds the lock held and refuses
    to start. The pid is written once every listen socket accepts.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.file: IO[str] = open(path, "a+")  # noqa: SIM115 - held open for the lock
        except OSError as exc:
            raise StartError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})') from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            other = self.file.read().strip() or "?"
            self.file.close()
            raise StartError(f'pid file "{path}" is locked by another pyngx process (pid {other})') from None

    def write(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.file.close()


# --- Hypercorn --------------------------------------------------------------------


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


def client_keepalive(config: Config) -> float:
    """Hypercorn's keep_alive_timeout: the http-level keepalive_timeout.

    Hypercorn's timer is per process, so a server or location value is not
    used (except 0: pyngx.filters then closes after the response). A new
    connection also has this long to send its first request header. For
    ``keepalive_timeout 0`` the timer gets client_header_timeout's default
    (60s), as the responses close the connections themselves.
    """
    timeout = config.http.keepalive_timeout if config.http is not None else 75.0
    return timeout or 60.0


def hypercorn_config() -> HypercornConfig:
    """Hypercorn settings that give nginx's defaults where nginx has one."""
    hc = HypercornConfig()
    hc.keep_alive_timeout = 75  # nginx: keepalive_timeout 75s
    hc.keep_alive_max_requests = 1000  # nginx: keepalive_requests 1000
    hc.h11_max_incomplete_size = 32 * 1024  # nginx: large_client_header_buffers 4 8k
    hc.include_server_header = False  # pyngx sends its own Server field
    hc.include_date_header = False  # and Date (pyngx.filters), so that proxy_pass_header Date can pass the upstream's
    hc.h11_pass_raw_headers = True  # forward header names in the client's case
    hc.websocket_max_message_size = websocket.MAX_MESSAGE_SIZE  # one limit both ways (close 1009)
    hc.graceful_timeout = GRACEFUL_FOREVER
    hc.accesslog = None
    errlog = logging.getLogger("pyngx.hypercorn")
    errlog.handlers[:] = [_ToStructlog()]
    errlog.propagate = False
    errlog.setLevel(logging.INFO)
    hc.errorlog = errlog
    return hc


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log what asyncio would print as a traceback as one error-log line."""
    exc = context.get("exception")
    if isinstance(exc, asyncio.CancelledError):
        return  # a connection task cancelled at shutdown: not an error
    reason = context.get("message", "")
    if exc is not None:
        reason += f": {exc!r}"
    pyngx_log.get().error("event_loop_error", reason=reason)


@dataclass
class _Listener:
    sock: socket.socket
    stop: asyncio.Event
    task: asyncio.Task[None]
    serving: SocketServer


class Server:
    """One serving process (the only one, or one worker of master.py).

    Args:
        loader: loads and builds the config (raises ConfigError).
        config: the config loaded at start.
        socks: listening sockets by address.
        watch_files: reload when a config file changes.
        is_worker: a worker under master.py (no pid file, no notify, no watching).
        tls_plans: the TLS / HTTP/2 plans of ``config`` (pyngx.tls.build), when already made.
    """

    def __init__(
        self,
        loader: Callable[[], Config],
        config: Config,
        socks: dict[Address, socket.socket],
        watch_files: bool = True,
        is_worker: bool = False,
        tls_plans: dict[Address, tls.ListenPlan] | None = None,
    ) -> None:
        self.loader = loader
        self.config = config
        self.socks = socks
        self.watch_files = watch_files and not is_worker
        self.is_worker = is_worker
        self.app = App(config)
        self.hc = hypercorn_config()
        self.hc.keep_alive_timeout = client_keepalive(config)
        #: The app as Hypercorn calls it (App takes Hypercorn's wrapper arguments itself).
        self.asgi = cast(AppWrapper, self.app)  # its dict-typed scopes are Hypercorn's TypedDicts
        #: TLS and HTTP/2 plans of the current config, by listen address (pyngx.tls).
        self.tls_plans = tls_plans if tls_plans is not None else tls.build(config).plans
        self.listeners: dict[Address, _Listener] = {}
        self.stopped = asyncio.Event()
        self.reload_lock = asyncio.Lock()
        self.log = pyngx_log.get()
        self.pidfile: PidFile | None = None
        #: The config files as last read (by a load that worked or failed).
        self.stamps = config.stamps

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until a stop signal; returns after draining."""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_loop_exception)
        handlers: dict[int, Callable[[], Any]] = {
            signal.SIGTERM: lambda: self.stop(graceful=False),
            signal.SIGINT: lambda: self.stop(graceful=False),
            signal.SIGQUIT: lambda: self.stop(graceful=True),
            signal.SIGHUP: lambda: loop.create_task(self.reload("SIGHUP")),
            signal.SIGUSR1: self.reopen,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        memory.settle()
        for addr, sock in self.socks.items():
            self.start_listener(addr, sock)
        # The sockets listen already (bound before the loop); connections queue
        # until the accept loops start on the next iterations.
        await asyncio.sleep(0)
        if not self.is_worker:
            if self.config.pid:
                self.pidfile = PidFile(self.config.pid)
                self.pidfile.write()
            notify.ready(f"serving on {', '.join(sockname(s) for s in self.socks.values())}")
        self.log.info("started", nginx_level="notice",
                      reason=f"pyngx serving on {', '.join(sockname(s) for s in self.socks.values()) or 'nothing'}, pid {os.getpid()}")
        watcher = None
        if self.watch_files:
            watcher = loop.create_task(watch(lambda: self.config.files, lambda: self.reload("file change", force=False),
                                             self.stopped, lambda: self.stamps))
        if self.is_worker:
            watcher = loop.create_task(self.watch_master(os.getppid()))
        await self.stopped.wait()
        if not self.is_worker:
            notify.stopping()
        for listener in list(self.listeners.values()):
            listener.stop.set()
        await asyncio.gather(*(lst.task for lst in self.listeners.values()), return_exceptions=True)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if self.pidfile is not None:
            self.pidfile.remove()
        self.log.info("stopped", nginx_level="notice", reason="exiting")

    async def watch_master(self, master: int) -> None:
        """A worker whose master died stops (it would be orphaned otherwise)."""
        while os.getppid() == master:
            await asyncio.sleep(1.0)
        self.log.error("master_gone", nginx_level="alert", reason=f"master process {master} exited")
        self.stop(graceful=True)

    def stop(self, graceful: bool) -> None:
        """Begin a fast (TERM/INT) or graceful (QUIT) stop."""
        if graceful:
            limit = self.config.worker_shutdown_timeout
            self.hc.graceful_timeout = limit if limit is not None else GRACEFUL_FOREVER
            self.log.info("stopping", nginx_level="notice", reason="gracefully shutting down")
        else:
            self.hc.graceful_timeout = FAST_STOP_GRACE
            self.log.info("stopping", nginx_level="notice", reason="exiting")
        self.stopped.set()

    def reopen(self) -> None:
        """SIGUSR1: reopen log files (after logrotate moved them)."""
        self.log.info("reopen", nginx_level="notice", reason="reopening logs")
        pyngx_log.reopen()
        self.app.runtime.access.reopen()

    def start_listener(self, addr: Address, sock: socket.socket) -> None:
        stop = asyncio.Event()
        serving = SocketServer(self.asgi, self.hc, self.listen_plan(addr, sock))
        task = asyncio.get_running_loop().create_task(serving.serve(sock, stop.wait))
        self.listeners[addr] = _Listener(sock, stop, task, serving)

    def listen_plan(self, addr: Address, sock: socket.socket) -> tls.ListenPlan:
        """The TLS / HTTP/2 plan of ``addr`` in the current config (a plain one if it has none)."""
        plan = self.tls_plans.get(addr)
        return plan if plan is not None else tls.ListenPlan(sockname(sock), None, False)

    def retune_listener(self, addr: Address) -> None:
        """Give a kept listener the current config's plan and keep-alive timeout.

        It takes them for the connections it accepts from now on (new
        certificates, TLS or HTTP/2 turned on or off); connections already
        open keep what they started with.
        """
        listener = self.listeners[addr]
        listener.serving.update(self.listen_plan(addr, listener.sock))

    async def stop_listener(self, addr: Address) -> None:
        """Stop accepting on ``addr``; its connections drain gracefully."""
        listener = self.listeners.pop(addr)
        listener.stop.set()
        await asyncio.gather(listener.task, return_exceptions=True)
        listener.sock.close()

    # -- reload ----------------------------------------------------------------------

    async def reload(self, why: str, force: bool = True) -> bool:
        """Load the config again and swap it in, or keep the old one.

        A config that fails to load (or a new listen address that cannot be
        bound) is logged as one [emerg] line and changes nothing. Otherwise
        the new Runtime is swapped in with one assignment: requests that
        started before keep the old one to their end.

        Returns:
            True when the new config is live.
        """
        async with self.reload_lock:
            if self.stopped.is_set():
                return False
            if not force and stamps(self.config.files) == self.stamps:
                return False  # already read as it is now (a watcher event and the catch-up check)
            if not self.is_worker:
                notify.reloading()
            try:
                return await self._reload(why)
            finally:
                if not self.is_worker:
                    notify.ready()

    async def _reload(self, why: str) -> bool:
        try:
            if not self.is_worker and self.config.path.exists() and self.config.path.stat().st_size == 0:
                # Truncate-then-write: wait for the write that follows.
                self.log.info("reload_deferred", nginx_level="notice", reason=f"{self.config.path} is empty")
                return False
            self.stamps = stamps(self.config.files)
            new = await asyncio.to_thread(self.loader)
            plans = await asyncio.to_thread(tls.build, new)  # certificates are read again on every reload
            runtime = Runtime(new, previous=self.app.runtime)
        except ConfigError as err:
            self.log.error("reload_failed", nginx_level="emerg", reason=f"{err}; keeping the old configuration")
            return False
        except OSError as err:
            self.log.error("reload_failed", nginx_level="emerg", reason=f"{err}; keeping the old configuration")
            return False
        try:
            # A worker keeps the sockets its master gave it; the master replaces
            # workers whose listen set changes.
            socks = dict(self.socks) if self.is_worker else open_sockets(new, keep=self.socks)
        except StartError as err:
            self.log.error("reload_failed", nginx_level="emerg", reason=f"{err}; keeping the old configuration")
            return False
        old_config = self.config
        self.stamps = new.stamps
        self.app.swap(runtime)
        self.config = new
        self.hc.keep_alive_timeout = client_keepalive(new)
        added = [a for a in socks if a not in self.socks]
        removed = [a for a in self.socks if a not in socks]
        self.socks = socks
        self.tls_plans = plans.plans
        for addr in socks:
            if addr not in added:
                self.retune_listener(addr)
        for addr in added:
            self.start_listener(addr, socks[addr])
        for addr in removed:
            asyncio.get_running_loop().create_task(self.stop_listener(addr))
        summary = changes(old_config, new)
        if added or removed:
            summary += f"; listen +{len(added)} -{len(removed)}"
        pyngx_log.configure(new.error_log)
        self.log.info("config_reloaded", nginx_level="notice", reason=f"{why}: {summary}")
        memory.settle(reloaded=True)
        return True


# --- process ----------------------------------------------------------------------


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


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop where it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def serve(server_factory: Callable[[], Server]) -> None:
    """Run a Server (made inside the loop) to its end on a fresh event loop."""
    memory.tune_malloc()

    async def main() -> None:
        await server_factory().run()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())


def run(loader: Callable[[], Config], config: Config, watch_files: bool = True,
        worker_argv: list[str] | None = None) -> int:
    """Serve ``config`` until stopped: in this process (worker_processes 1),
    or as the master of worker processes (master.py).

    Args:
        loader: loads the config again on reload.
        config: the config loaded at start.
        watch_files: reload when a config file changes.
        worker_argv: the arguments a worker process needs (-c, -g, -e).

    Returns:
        The exit status (0).

    Raises:
        StartError: a listen socket or the pid file could not be opened.
    """
    if config.worker_processes > 1:
        from pyngx.master import run_master

        return run_master(loader, config, watch_files, worker_argv or [])
    if config.pid:
        PidFile(config.pid).file.close()  # fail early if another pyngx holds it
    plans = tls.build(config).plans  # certificates are read before the sockets listen
    socks = open_sockets(config)
    if config.daemon:
        daemonize()
    try:
        serve(lambda: Server(loader, config, socks, watch_files=watch_files, tls_plans=plans))
    finally:
        for s in socks.values():
            s.close()
    return 0
