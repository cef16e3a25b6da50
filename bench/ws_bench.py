"""WebSocket relay figures for pyngx: messages per second and memory.

Not a test: it prints numbers, it asserts nothing.

Usage::

    python bench/ws_bench.py [--seconds 3] [--size 64] [--open 500]

Starts an aiohttp.web WebSocket upstream in a subprocess (this file with
``--upstream``), pyngx in front of it (``python -m pyngx -c FILE``), and
drives both from this process with aiohttp clients, all on 127.0.0.1:

    echo    request/response round trips per second, summed over the
            connections (each round trip crosses pyngx twice);
    stream  upstream -> client messages per second, pipelined (the
            upstream sends as fast as the connection takes them);
    rss     pyngx's resident memory fresh, with ``--open`` WebSockets
            open (each has exchanged one message), and after the runs.

echo and stream run at concurrency 1 and 100, directly against the
upstream and through pyngx. Client, pyngx and upstream share the
machine's CPUs, so the ratio is the useful figure, not the absolute rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "peers"))
from sink import echo  # noqa: E402  (the bench's WebSocket origin: one echo handler for both)


# --- the upstream (runs in a subprocess) ------------------------------------------


async def _stream(request: web.Request) -> web.StreamResponse:
    count, size = int(request.query["count"]), int(request.query["size"])
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()  # "go": the client starts its clock, then the stream starts
    block = b"x" * size
    for _ in range(count):
        await ws.send_bytes(block)
    await ws.close()
    return ws


def run_upstream(port: int) -> None:
    """Serve /ws/echo and /ws/stream on 127.0.0.1:port until killed."""
    _use_uvloop()
    app = web.Application()
    app.router.add_get("/ws/echo", echo)
    app.router.add_get("/ws/stream", _stream)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


# --- helpers ------------------------------------------------------------------------


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port}") from None
            time.sleep(0.02)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- measurements -------------------------------------------------------------------


async def echo_rate(session: aiohttp.ClientSession, url: str, conns: int, seconds: float, size: int) -> float:
    """Round trips per second over ``conns`` connections, each ping-ponging for ``seconds``."""
    payload = "x" * size
    wss = await asyncio.gather(*(session.ws_connect(url, max_msg_size=0) for _ in range(conns)))
    counts = [0] * conns
    deadline = time.monotonic() + seconds

    async def one(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        n = 0
        while time.monotonic() < deadline:
            await ws.send_str(payload)
            await ws.receive()
            n += 1
        counts[i] = n

    t0 = time.monotonic()
    await asyncio.gather(*(one(i, ws) for i, ws in enumerate(wss)))
    elapsed = time.monotonic() - t0
    await asyncio.gather(*(ws.close() for ws in wss))
    return sum(counts) / elapsed


async def stream_rate(session: aiohttp.ClientSession, url: str, conns: int, per_conn: int, size: int) -> float:
    """Messages per second received, each of ``conns`` connections receiving ``per_conn`` messages."""
    full = f"{url}?count={per_conn}&size={size}"
    wss = await asyncio.gather(*(session.ws_connect(full, max_msg_size=0) for _ in range(conns)))

    async def one(ws: aiohttp.ClientWebSocketResponse) -> int:
        n = 0
        while (await ws.receive()).type is WSMsgType.BINARY:
            n += 1
        return n

    t0 = time.monotonic()
    for ws in wss:
        await ws.send_str("go")
    got = await asyncio.gather(*(one(ws) for ws in wss))
    elapsed = time.monotonic() - t0
    await asyncio.gather(*(ws.close() for ws in wss))
    if sum(got) != conns * per_conn:
        raise RuntimeError(f"stream: received {sum(got)} of {conns * per_conn} messages")
    return sum(got) / elapsed


async def open_many(session: aiohttp.ClientSession, url: str, n: int) -> list[aiohttp.ClientWebSocketResponse]:
    wss = []
    for start in range(0, n, 100):  # in batches, within the listen backlog
        wss += await asyncio.gather(*(session.ws_connect(url) for _ in range(min(100, n - start))))
    for ws in wss:
        await ws.send_str("hello")
    await asyncio.gather(*(ws.receive() for ws in wss))
    return wss


async def bench(args: argparse.Namespace, upstream_port: int, pyngx_port: int, pyngx_pid: int) -> None:
    direct = f"http://127.0.0.1:{upstream_port}"
    proxied = f"http://127.0.0.1:{pyngx_port}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        fresh = rss_kib(pyngx_pid)
        wss = await open_many(session, proxied + "/ws/echo", args.open)
        loaded = rss_kib(pyngx_pid)
        print(f"pyngx RSS: {fresh / 1024:.1f} MiB fresh, {loaded / 1024:.1f} MiB with {len(wss)} WebSockets open "
              f"({(loaded - fresh) / len(wss):.1f} KiB each)")
        await asyncio.gather(*(ws.close() for ws in wss))

        # Warm both paths up (imports, first connections) before measuring.
        await echo_rate(session, direct + "/ws/echo", 1, 0.3, args.size)
        await echo_rate(session, proxied + "/ws/echo", 1, 0.3, args.size)

        print(f"message size {args.size} bytes, {args.seconds:g} s per echo run; messages/s:")
        print(f"{'workload':<10}{'conc.':>6}{'direct':>12}{'pyngx':>12}{'ratio':>8}")
        def echo(conc: int) -> Callable[[str], Awaitable[float]]:
            return lambda base: echo_rate(session, base + "/ws/echo", conc, args.seconds, args.size)

        def stream(conc: int) -> Callable[[str], Awaitable[float]]:
            per_conn = max(2000, 200_000 // conc)
            return lambda base: stream_rate(session, base + "/ws/stream", conc, per_conn, args.size)

        rows = [("echo", 1, echo(1)), ("echo", 100, echo(100)), ("stream", 1, stream(1)), ("stream", 100, stream(100))]
        for name, conc, run in rows:
            d = await run(direct)
            p = await run(proxied)
            print(f"{name:<10}{conc:>6}{d:>12,.0f}{p:>12,.0f}{p / d:>8.2f}")
        print(f"pyngx RSS after the runs: {rss_kib(pyngx_pid) / 1024:.1f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each echo run")
    ap.add_argument("--size", type=int, default=64, help="message size in bytes")
    ap.add_argument("--open", type=int, default=500, help="WebSockets held open for the RSS figure")
    ap.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return 0

    raise_fd_limit(4 * args.open + 256)
    upstream_port, pyngx_port = free_port(), free_port()
    up = subprocess.Popen([sys.executable, __file__, "--upstream", str(upstream_port)])
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "pyngx.conf"
        conf.write_text(f"""
error_log stderr;
http {{
  server {{
    listen 127.0.0.1:{pyngx_port} backlog=1024;
    access_log off;
    location /ws/ {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
  }}
}}
""")
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        px = subprocess.Popen([sys.executable, "-m", "pyngx", "-c", str(conf)], cwd=tmp, env=env)
        try:
            wait_listening(upstream_port, up)
            wait_listening(pyngx_port, px)
            _use_uvloop()
            asyncio.run(bench(args, upstream_port, pyngx_port, px.pid))
        finally:
            for proc in (px, up):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
