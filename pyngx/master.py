"""The master process for ``worker_processes N`` (N > 1).

Owns: opening the listen sockets once and sharing them with N worker
processes (``python -m pyngx --worker FDS``, sockets passed as inherited
file descriptors), watching and validating the config once, telling
workers to reload, replacing workers whose sockets must change, restarting
a worker that dies, and stopping them (TERM fast, QUIT graceful).

Design, as nginx's master/worker model (src/os/unix/ngx_process_cycle.c):

    master: sockets, pid file, notify, file watching, signals
      |-- worker 1: Server(is_worker) on the shared sockets, in-process reload
      |-- worker 2: ...
    reload, same listen set and worker count -> SIGHUP to each worker, which
        swaps its Runtime in process (upstream state and keep-alive pools stay)
    reload, listen set or worker count changed -> new workers on the new
        socket set, then SIGQUIT to the old ones (they drain); unchanged
        sockets are shared by both generations, so no connection is refused

Must not: serve requests itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pyngx import log as pyngx_log
from pyngx import notify
from pyngx.config.model import Config
from pyngx.errors import ConfigError, StartError
from pyngx.reload import changes, stamps, watch
from pyngx.server import GRACEFUL_FOREVER, PidFile, daemonize, loop_factory
from pyngx.sockets import Address, listen_addresses, open_sockets, sockname


@dataclass
class _Worker:
    proc: asyncio.subprocess.Process
    generation: int


class Master:
    """Runs and supervises the worker processes (see module doc).

    Args:
        loader: loads the config (raises ConfigError).
        config: the config loaded at start.
        socks: the listening sockets, shared with the workers.
        watch_files: reload when a config file changes.
        worker_argv: the command-line arguments a worker needs (-c, -g, -e).
    """

    def __init__(self, loader: Callable[[], Config], config: Config, socks: dict[Address, socket.socket],
                 watch_files: bool, worker_argv: list[str]) -> None:
        self.loader = loader
        self.config = config
        self.socks = socks
        self.watch_files = watch_files
        self.worker_argv = worker_argv
        self.workers: dict[int, _Worker] = {}
        self.generation = 0
        self.stopping = False
        self.stopped = asyncio.Event()
        self.reload_lock = asyncio.Lock()
        self.log = pyngx_log.get()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stamps = config.stamps

    async def spawn(self) -> None:
        """Start one worker of the current generation on the current sockets."""
        fds = [s.fileno() for s in self.socks.values()]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pyngx", *self.worker_argv, "--worker", ",".join(map(str, fds)) or "-",
            pass_fds=fds, stdin=asyncio.subprocess.DEVNULL,
        )
        self.workers[proc.pid] = _Worker(proc, self.generation)
        task = asyncio.get_running_loop().create_task(self.supervise(proc.pid))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def supervise(self, pid: int) -> None:
        """Wait for a worker to exit; restart it if it died on its own."""
        worker = self.workers[pid]
        code = await worker.proc.wait()
        del self.workers[pid]
        if self.stopping or worker.generation != self.generation:
            return
        self.log.error("worker_exited", nginx_level="alert",
                       reason=f"worker process {pid} exited with code {code}, starting a new one")
        await self.spawn()

    def signal_workers(self, sig: int, generation: int | None = None) -> None:
        for pid, worker in list(self.workers.items()):
            if generation is None or worker.generation == generation:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    async def run(self) -> None:
        """Serve through the workers until a stop signal."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: self.stop(signal.SIGTERM))
        loop.add_signal_handler(signal.SIGINT, lambda: self.stop(signal.SIGTERM))
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.stop(signal.SIGQUIT))
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGUSR1, self.reopen)
        for _ in range(self.config.worker_processes):
            await self.spawn()
        pidfile = PidFile(self.config.pid) if self.config.pid else None
        if pidfile is not None:
            pidfile.write()
        names = ", ".join(sockname(s) for s in self.socks.values())
        notify.ready(f"serving on {names}")
        self.log.info("started", nginx_level="notice",
                      reason=f"pyngx master {os.getpid()} serving on {names} with {self.config.worker_processes} workers")
        watcher = None
        if self.watch_files:
            watcher = loop.create_task(watch(lambda: self.config.files, lambda: self.reload("file change", force=False),
                                             self.stopped, lambda: self.stamps))
        await self.stopped.wait()
        notify.stopping()
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await self.wait_workers()
        if pidfile is not None:
            pidfile.remove()
        self.log.info("stopped", nginx_level="notice", reason="exiting")

    def stop(self, sig: int) -> None:
        """Pass TERM (fast) or QUIT (graceful) to every worker and end."""
        self.stopping = True
        self.signal_workers(sig)
        self.stopped.set()

    async def wait_workers(self) -> None:
        procs = [w.proc for w in self.workers.values()]
        limit = self.config.worker_shutdown_timeout
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)),
                                   (limit if limit is not None else GRACEFUL_FOREVER) + 5)
        except asyncio.TimeoutError:
            for p in procs:
                if p.returncode is None:
                    p.kill()

    def reopen(self) -> None:
        pyngx_log.reopen()
        self.signal_workers(signal.SIGUSR1)

    async def reload(self, why: str, force: bool = True) -> bool:
        """Validate the config once; reload workers, or replace them (see module doc)."""
        async with self.reload_lock:
            if self.stopping:
                return False
            if not force and stamps(self.config.files) == self.stamps:
                return False  # already read as it is now
            notify.reloading()
            try:
                return await self._reload(why)
            finally:
                notify.ready()

    async def _reload(self, why: str) -> bool:
        try:
            if self.config.path.exists() and self.config.path.stat().st_size == 0:
                return False
            self.stamps = stamps(self.config.files)
            new = await asyncio.to_thread(self.loader)
        except (ConfigError, OSError) as err:
            self.log.error("reload_failed", nginx_level="emerg", reason=f"{err}; keeping the old configuration")
            return False
        self.stamps = new.stamps
        summary = changes(self.config, new)
        same_sockets = listen_addresses(new).keys() == self.socks.keys()
        if same_sockets and new.worker_processes == self.config.worker_processes:
            self.config = new
            self.signal_workers(signal.SIGHUP)
            self.log.info("config_reloaded", nginx_level="notice", reason=f"{why}: {summary}")
            return True
        try:
            socks = open_sockets(new, keep=self.socks)
        except StartError as err:
            self.log.error("reload_failed", nginx_level="emerg", reason=f"{err}; keeping the old configuration")
            return False
        old_socks, old_generation = self.socks, self.generation
        self.config, self.socks = new, socks
        self.generation += 1
        for _ in range(new.worker_processes):
            await self.spawn()
        self.signal_workers(signal.SIGQUIT, old_generation)
        for addr, sock in old_socks.items():
            if addr not in socks:
                sock.close()  # the old workers hold their own copies until they drain
        pyngx_log.configure(new.error_log)
        self.log.info("config_reloaded", nginx_level="notice",
                      reason=f"{why}: {summary}; new worker processes (generation {self.generation})")
        return True


def run_master(loader: Callable[[], Config], config: Config, watch_files: bool, worker_argv: list[str]) -> int:
    """Run the master until stopped; returns the exit status.

    Raises:
        StartError: a listen socket or the pid file could not be opened.
    """
    if config.pid:
        PidFile(config.pid).file.close()
    socks = open_sockets(config)
    if config.daemon:
        daemonize()

    async def main() -> None:
        await Master(loader, config, socks, watch_files, worker_argv).run()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    finally:
        for s in socks.values():
            s.close()
    return 0


def worker_sockets(fds: str) -> dict[Address, socket.socket]:
    """Rebuild the inherited listening sockets of ``--worker FDS`` keyed by address."""
    out: dict[Address, socket.socket] = {}
    if fds == "-":
        return out
    for fd in fds.split(","):
        sock = socket.socket(fileno=int(fd))
        name = sock.getsockname()
        addr: Address = (f"unix:{name}", 0) if sock.family == socket.AF_UNIX else (name[0], name[1])
        out[addr] = sock
    return out
