"""The upload sink and the WebSocket echo origin.

nginx cannot easily swallow a 1 GiB upload behind a proxy, so the upload
cases end here. Built on aiohttp.web (its C parser handles both
Content-Length and chunked bodies); the answer names the byte count so the
bench can check that the whole body arrived.

nginx cannot echo WebSocket messages either: ``GET /ws`` upgrades and
sends every message back as it came (text as text, binary as binary).

Usage: python bench/peers/sink.py PORT. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def handle(request: web.Request) -> web.Response:
    n = 0
    async for chunk in request.content.iter_any():
        n += len(chunk)
    return web.Response(text=f"{n}\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    args = p.parse_args()
    app = web.Application(client_max_size=0)
    app.router.add_get("/ws", echo)
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop, backlog=1024)


if __name__ == "__main__":
    main()
