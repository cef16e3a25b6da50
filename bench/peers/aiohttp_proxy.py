"""A minimal reverse proxy on aiohttp.web: the fastest plain-Python peer.

One shared ClientSession (pooled keep-alive), bodies streamed both ways,
hop-by-hop fields dropped. No routing, no config, no logging: the floor a
Python proxy on aiohttp pays per request.

WebSocket: a request under /ws is relayed to --ws with a WebSocketResponse
towards the client, ``session.ws_connect`` towards the upstream and one
pump task per direction.

Usage: python bench/peers/aiohttp_proxy.py PORT UPSTREAM [--sink URL] [--ws URL]
(paths under /upload go to --sink, under /ws to --ws, when given). Binds
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import WSMsgType, web

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization"})
SKIP_RESPONSE = HOP_BY_HOP | {"content-length", "date", "server"}


async def pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
               dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in src:
        if msg.type is WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
    await dst.close()  # src closed: close the other side too, which ends the other pump


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    async with app["session"].ws_connect(app["ws"] + request.path_qs, max_msg_size=0) as up:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await asyncio.gather(pump(ws, up), pump(up, ws))
    return ws


async def handle(request: web.Request) -> web.StreamResponse:
    app = request.app
    if app["ws"] and request.path.startswith("/ws") and request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    base = app["sink"] if app["sink"] and request.path.startswith("/upload") else app["upstream"]
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    body = request.content if request.body_exists else None
    async with app["session"].request(request.method, base + request.path_qs, headers=headers, data=body,
                                      allow_redirects=False) as up:
        resp = web.StreamResponse(status=up.status)
        for k, v in up.headers.items():
            if k.lower() not in SKIP_RESPONSE:
                resp.headers.add(k, v)
        if up.content_length is not None:
            resp.content_length = up.content_length
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def on_startup(app: web.Application) -> None:
    app["session"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))


async def on_cleanup(app: web.Application) -> None:
    await app["session"].close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("upstream")
    p.add_argument("--sink", default="")
    p.add_argument("--ws", default="")
    args = p.parse_args()
    app = web.Application(client_max_size=0)
    app["upstream"], app["sink"], app["ws"] = args.upstream.rstrip("/"), args.sink.rstrip("/"), args.ws.rstrip("/")
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)

if __name__ == "__main__":
    main()
