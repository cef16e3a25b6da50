"""A minimal raw ASGI reverse proxy on Hypercorn + aiohttp: our stack's ceiling.

The same stack as pyngx (Hypercorn with uvloop serving an ASGI app, one
pooled aiohttp ClientSession) with none of pyngx's features: no routing,
no Request object, no variables, no header plan, no disconnect watcher,
no access log. What pyngx costs on top of this is pyngx's own.

WebSocket: the ASGI "websocket" scope (paths under /ws) is accepted and
relayed to --ws over ``session.ws_connect``, one pump task per direction;
either side closing closes the other.

Usage: python bench/peers/asgi_proxy.py PORT UPSTREAM [--sink URL] [--ws URL]
(paths under /upload go to --sink, under /ws to --ws, when given). Binds
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from hypercorn.asyncio import serve
from hypercorn.config import Config

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
SKIP_RESPONSE = HOP_BY_HOP | {b"date", b"server"}


class Proxy:
    def __init__(self, upstream: str, sink: str, ws: str) -> None:
        self.upstream, self.sink, self.ws = upstream.rstrip("/"), sink.rstrip("/"), ws.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self.session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        base = self.sink if self.sink and path.startswith("/upload") else self.upstream
        headers, has_body = [], False
        for name, value in scope["headers"]:
            low = name.lower()
            if low in (b"content-length", b"transfer-encoding"):
                has_body = has_body or value != b"0"
            if low not in HOP_BY_HOP:
                headers.append((name.decode("latin-1"), value.decode("latin-1")))

        async def body() -> AsyncIterator[bytes]:
            more = True
            while more:
                msg = await receive()
                more = msg.get("more_body", False)
                if msg.get("body"):
                    yield msg["body"]

        assert self.session is not None
        async with self.session.request(scope["method"], base + path, headers=headers,
                                        data=body() if has_body else None, allow_redirects=False) as up:
            out = [(k, v) for k, v in up.raw_headers if k.lower() not in SKIP_RESPONSE]
            await send({"type": "http.response.start", "status": up.status, "headers": out})
            async for chunk in up.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        assert self.session is not None
        async with self.session.ws_connect(self.ws + scope["raw_path"].decode("latin-1"), max_msg_size=0) as up:
            await send({"type": "websocket.accept"})

            async def client_to_upstream() -> None:
                while (msg := await receive())["type"] == "websocket.receive":
                    if msg.get("text") is not None:
                        await up.send_str(msg["text"])
                    else:
                        await up.send_bytes(msg["bytes"])
                await up.close()  # websocket.disconnect

            async def upstream_to_client() -> None:
                async for msg in up:
                    if msg.type is WSMsgType.TEXT:
                        await send({"type": "websocket.send", "text": msg.data})
                    elif msg.type is WSMsgType.BINARY:
                        await send({"type": "websocket.send", "bytes": msg.data})
                # Hypercorn ignores this if the client has already gone.
                await send({"type": "websocket.close", "code": up.close_code or 1000})

            await asyncio.gather(client_to_upstream(), upstream_to_client())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("upstream")
    p.add_argument("--sink", default="")
    p.add_argument("--ws", default="")
    args = p.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.include_server_header = False
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(Proxy(args.upstream, args.sink, args.ws), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
