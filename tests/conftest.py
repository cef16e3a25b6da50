"""Loopback fixtures: free ports, real backends, a running pyngx, nginx.

Everything here talks to 127.0.0.1 only, binds port 0 for free ports, and
waits on sockets (never on sleeps) with a deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent



def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listening(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until ``host:port`` accepts a TCP connection, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.2)
                s.connect((host, port))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            # A refused connect returns at once; yield the CPU briefly between tries.
            time.sleep(0.02)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (e.g. a log line written by another process) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


# --- backends ---------------------------------------------------------------------


@dataclass
class Seen:
    """What a backend received for one request."""

    method: str
    path: str  # path with query, as received (raw)
    headers: list[tuple[str, str]]
    body_len: int
    body_sha256: str

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Backend:
    """A real aiohttp.web server on 127.0.0.1, run in a thread with its own loop."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)  # client (ip, port) of each TCP connection
    loop: asyncio.AbstractEventLoop | None = None
    runner: web.AppRunner | None = None
    extra_routes: list[tuple[str, str, Callable[..., Any]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Seen:
        return self.seen[-1]


async def _echo(request: web.Request) -> web.StreamResponse:
    """Echo what was received as JSON; streams the body through a hash."""
    backend = request.app[BACKEND_KEY]
    h = hashlib.sha256()
    n = 0
    async for chunk in request.content.iter_any():
        h.update(chunk)
        n += len(chunk)
    seen = Seen(request.method, request.raw_path, [(k, v) for k, v in request.raw_headers_str()], n, h.hexdigest())
    backend.seen.append(seen)
    if request.transport is not None:
        backend.peers.add(request.transport.get_extra_info("peername"))
    body = json.dumps(
        {"method": seen.method, "path": seen.path, "headers": seen.headers, "body_len": n, "body_sha256": seen.body_sha256}
    ).encode()
    resp = web.Response(body=body, content_type="application/json")
    resp.headers["X-Backend"] = str(backend.port)
    for k, v in request.query.items():
        if k.startswith("set_"):
            resp.headers.add(k[4:], v)
    if "status" in request.query:
        resp.set_status(int(request.query["status"]))
    return resp


BACKEND_KEY: web.AppKey[Backend] = web.AppKey("backend", Backend)


def _raw_headers_str(self: web.Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]


web.Request.raw_headers_str = _raw_headers_str  # type: ignore[attr-defined]


async def _bytes(request: web.Request) -> web.StreamResponse:
    """GET /bytes/N streams N bytes of a repeating pattern in 64 KiB chunks."""
    n = int(request.match_info["n"])
    resp = web.StreamResponse()
    resp.content_length = n
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    block = bytes(range(256)) * 256
    while n > 0:
        part = block[: min(n, len(block))]
        await resp.write(part)
        n -= len(part)
    await resp.write_eof()
    return resp


async def _slow(request: web.Request) -> web.StreamResponse:
    """GET /slow/SECONDS answers after a delay."""
    await asyncio.sleep(float(request.match_info["s"]))
    return web.Response(text="slow\n")


def _start_backend(backend: Backend, ready: threading.Event) -> None:
    loop = asyncio.new_event_loop()
    backend.loop = loop
    asyncio.set_event_loop(loop)
    app = web.Application(client_max_size=0)
    app[BACKEND_KEY] = backend
    for method, path, handler in backend.extra_routes:
        app.router.add_route(method, path, handler)
    app.router.add_get("/bytes/{n}", _bytes)
    app.router.add_get("/slow/{s}", _slow)
    app.router.add_route("*", "/{tail:.*}", _echo)

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", backend.port, reuse_address=True)
    loop.run_until_complete(site.start())
    backend.runner = runner
    backend.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ready.set()
    loop.run_forever()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def start_backend(
    extra_routes: list[tuple[str, str, Callable[..., Any]]] | None = None, port: int = 0
) -> tuple[Backend, Callable[[], None]]:
    """Start a backend thread (on ``port``, or a free one); returns it and a stop function."""
    backend = Backend(port=port, extra_routes=extra_routes or [])
    ready = threading.Event()
    thread = threading.Thread(target=_start_backend, args=(backend, ready), daemon=True)
    thread.start()
    assert ready.wait(10), "backend did not start"

    def stop() -> None:
        assert backend.loop is not None
        if thread.is_alive():
            backend.loop.call_soon_threadsafe(backend.loop.stop)
            thread.join(10)

    return backend, stop


@pytest.fixture
def backend() -> Iterator[Backend]:
    """An echo backend on 127.0.0.1 (see _echo, /bytes/N, /slow/S)."""
    b, stop = start_backend()
    yield b
    stop()


# --- pyngx ------------------------------------------------------------------------


class Pyngx:
    """A ``pyngx -c FILE`` subprocess, as a user starts it."""

    def __init__(self, workdir: Path, conf_text: str, wait: tuple[str, int] | None) -> None:
        self.workdir = workdir
        self.conf = workdir / "pyngx.conf"
        self.conf.write_text(conf_text)
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyngx", "-c", str(self.conf)],
            cwd=workdir,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
        )
        if wait is not None:
            try:
                wait_listening(*wait, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"pyngx did not start: {self.stderr}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """Resident set size of the pyngx process, in KiB (from /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def run_pyngx(tmp_path: Path) -> Iterator[Callable[..., Pyngx]]:
    """Factory: ``run_pyngx(conf_text, wait=("127.0.0.1", port))`` starts pyngx."""
    procs: list[Pyngx] = []
    counter = iter(range(1000))

    def start(conf_text: str, wait: tuple[str, int] | None = None, port: int | None = None) -> Pyngx:
        workdir = tmp_path / f"pyngx{next(counter)}"
        workdir.mkdir()
        if wait is None and port is not None:
            wait = ("127.0.0.1", port)
        p = Pyngx(workdir, conf_text, wait)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def pyngx_cmd(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``pyngx ARGS`` to completion (for -t, -v, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "pyngx", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


# --- nginx ------------------------------------------------------------------------


def nginx_binary() -> str | None:
    """The nginx binary: $PYNGX_TEST_NGINX, else nginx on PATH or in /usr/sbin."""
    env = os.environ.get("PYNGX_TEST_NGINX")
    if env:
        return env
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


class Nginx:
    """nginx as an unprivileged foreground process with its own prefix."""

    def __init__(self, workdir: Path, conf_text: str, wait: tuple[str, int]) -> None:
        binary = nginx_binary()
        assert binary is not None
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        mime = Path("/etc/nginx/mime.types")
        if mime.exists():
            shutil.copy(mime, workdir / "mime.types")
        self.conf.write_text(conf_text)
        self.proc = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(self.conf), "-e", str(workdir / "logs" / "error.log"),
             "-g", f"daemon off; pid {workdir}/nginx.pid;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_listening(*wait, proc=self.proc)
        except Exception:
            err = self.proc.stderr.read().decode() if self.proc.stderr and self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {err}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def run_nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Factory: ``run_nginx(conf_text, port)``; skips when nginx is not installed."""
    if nginx_binary() is None:
        pytest.skip("nginx not found (set PYNGX_TEST_NGINX or install Debian's nginx)")
    procs: list[Nginx] = []
    counter = iter(range(1000))

    def start(conf_text: str, port: int) -> Nginx:
        workdir = tmp_path / f"nginx{next(counter)}"
        workdir.mkdir()
        n = Nginx(workdir, conf_text, ("127.0.0.1", port))
        procs.append(n)
        return n

    yield start
    for n in procs:
        n.stop()
