"""WebSocket upstreams for tests/proxy/test_websocket.py: real aiohttp.web
handlers, mounted on conftest's backend (``start_backend(extra_routes=...)``).

The backend runs in its own thread and event loop; what a handler sees
reaches the test's loop through a ``Mailbox``, so tests wait on events,
never on sleeps.

Routes (all under /ws/):
    echo      echoes text and binary; reports the handshake headers and
              the close code/reason it receives. Subprotocols "chat",
              "superchat" are accepted. Text "close CODE REASON" makes it
              close with that code and reason; text "die" makes it drop
              the TCP connection without a close frame; text "big N"
              makes it send one binary message of N bytes.
    refuse    answers the handshake with 403, a body and a Set-Cookie.
    cookie    accepts with a Set-Cookie field in the 101.
    stream    sends ?count=N binary messages of ?size=S bytes as fast as
              the connection takes them, counting bytes in ``Stream``.
    silent    accepts and sends nothing; reports how it was closed.
    sink      reads and drops every message, never sends; reports the close.
    deaf      accepts and stops reading its socket until the test calls
              the ``resume`` it reports (for proxy_send_timeout).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

#: Larger than the proxy's 16 MiB limit, so tests can exceed the proxy's.
BACKEND_MAX_MSG = 64 * 1024 * 1024


class Mailbox:
    """Carries events from the backend's thread to the test's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, kind: str, value: Any = None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    async def get(self, kind: str, timeout: float = 10.0) -> Any:
        """The value of the next event named ``kind`` (other events are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                got, value = await self.queue.get()
                if got == kind:
                    return value


@dataclass
class Stream:
    """Progress of /ws/stream, written by the backend thread."""

    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)


def routes(box: Mailbox, stream: Stream | None = None) -> list[tuple[str, str, Callable[..., Any]]]:
    """The /ws/* routes, reporting to ``box``."""
    stream = stream if stream is not None else Stream()

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("chat", "superchat"), max_msg_size=BACKEND_MAX_MSG, autoclose=False)
        await ws.prepare(request)
        box.put("headers", [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers])
        box.put("path", request.raw_path)
        box.put("protocol", ws.ws_protocol)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if msg.data.startswith("close "):
                    _, code, reason = msg.data.split(" ", 2)
                    await ws.close(code=int(code), message=reason.encode())
                    break
                if msg.data == "die":
                    assert request.transport is not None
                    request.transport.abort()
                    box.put("died")
                    return ws
                if msg.data.startswith("big "):
                    try:
                        await ws.send_bytes(b"\x00" * int(msg.data[4:]))
                    except ConnectionError:
                        box.put("closed", (ws.close_code, "send failed"))
                        break
                    continue
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                box.put("closed", (msg.data, msg.extra))
                await ws.close()
                break
            else:
                box.put("closed", (ws.close_code, msg.type.name))
                break
        return ws

    async def refuse(request: web.Request) -> web.StreamResponse:
        resp = web.Response(status=403, text="no websockets for you\n")
        resp.set_cookie("seen", "1")
        return resp

    async def cookie(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        ws.set_cookie("session", "abc")
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def stream_route(request: web.Request) -> web.StreamResponse:
        count = int(request.query["count"])
        size = int(request.query["size"])
        ws = web.WebSocketResponse(max_msg_size=BACKEND_MAX_MSG)
        await ws.prepare(request)
        block = bytes(range(256)) * (size // 256)
        try:
            for _ in range(count):
                await ws.send_bytes(block)
                stream.sent += len(block)
            await ws.close(code=1000, message=b"done")
        finally:
            stream.done.set()
        return ws

    async def silent(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        box.put("open")
        msg = await ws.receive()
        if msg.type is WSMsgType.CLOSE:
            box.put("closed", (msg.data, msg.extra))
            await ws.close()
        else:
            box.put("closed", (ws.close_code, msg.type.name))
        return ws

    async def sink(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                box.put("closed", (msg.data, msg.extra))
                await ws.close()
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                box.put("closed", (ws.close_code, msg.type.name))
                break
        return ws

    async def deaf(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        resume = asyncio.Event()
        box.put("resume", lambda: loop.call_soon_threadsafe(resume.set))
        await resume.wait()
        transport.resume_reading()
        async for _ in ws:
            pass
        return ws

    return [
        ("GET", "/ws/echo", echo),
        ("GET", "/ws/sink", sink),
        ("GET", "/ws/deaf", deaf),
        ("GET", "/ws/refuse", refuse),
        ("GET", "/ws/cookie", cookie),
        ("GET", "/ws/stream", stream_route),
        ("GET", "/ws/silent", silent),
    ]

