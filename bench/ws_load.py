"""The WebSocket echo load generator of ``run.py``: round trips per second.

Opens CONNS WebSockets to URL (aiohttp's client, uvloop, one task per
connection), then each connection sends a text message and waits for its
echo, again and again, for SECONDS. One round trip counts as one message
echoed. Every echo is checked: it must be a text message equal to what that
connection sent (each connection sends its own message, so a reply crossing
over to another connection is caught too); anything else ends the run with
an error. Connecting and closing are outside the timed window.

With ``--pid``, the CPU time of that process tree (the proxy) is read from
/proc right at the start and the end of the timed window. ``--at-start`` and
``--at-end`` run a command there too (instructions.py zeroes and dumps
callgrind's counters with them, so the handshakes are not counted).

Prints one JSON line: {"messages": N, "seconds": S, "cpu": C or null}.

Usage: python bench/ws_load.py URL CONNS SECONDS [--size 64] [--pid PID] [--at-start CMD] [--at-end CMD]
run.py runs it pinned to the load core (taskset -c 1). Connects to URL only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import time

import aiohttp

from harness import cpu_seconds


async def echo(url: str, conns: int, seconds: float, size: int, pid: int | None,
               edges: tuple[str | None, str | None] = (None, None)) -> dict[str, float | None]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        wss: list[aiohttp.ClientWebSocketResponse] = []
        for start in range(0, conns, 100):  # in batches, within any listen backlog
            wss += await asyncio.gather(*(session.ws_connect(url, max_msg_size=0)
                                          for _ in range(min(100, conns - start))))
        payloads = [f"{i:06d} ".ljust(size, "x") for i in range(conns)]
        counts = [0] * conns
        running = True

        async def one(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            payload, send, receive, n = payloads[i], ws.send_str, ws.receive, 0
            while running:
                await send(payload)
                msg = await receive()
                if msg.data != payload:  # a close, an error, or another message
                    raise RuntimeError(f"connection {i}: sent {payload!r}, got {msg.type.name} {msg.data!r}")
                n += 1
            counts[i] = n

        def stop() -> None:
            nonlocal running
            running = False

        if edges[0]:
            subprocess.run(shlex.split(edges[0]), check=True, capture_output=True, timeout=120)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        asyncio.get_running_loop().call_later(seconds, stop)
        await asyncio.gather(*(one(i, ws) for i, ws in enumerate(wss)))
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - c0
        if edges[1]:
            subprocess.run(shlex.split(edges[1]), check=True, capture_output=True, timeout=120)
        await asyncio.gather(*(ws.close() for ws in wss))
    return {"messages": sum(counts), "seconds": elapsed, "cpu": cpu if pid is not None else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("conns", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--size", type=int, default=64, help="message size in bytes (default 64)")
    p.add_argument("--pid", type=int, help="the proxy's pid: report its CPU seconds during the run")
    p.add_argument("--at-start", help="a command to run right before the timed window")
    p.add_argument("--at-end", help="a command to run right after the timed window")
    args = p.parse_args()
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(echo(args.url, args.conns, args.seconds, args.size, args.pid, (args.at_start, args.at_end)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
