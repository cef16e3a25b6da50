"""The ASGI plumbing of one request's phases: what ASGI lacks for nginx's semantics.

Owns: ``KeptBody`` (the receive that keeps the request body for a handler
after an internal redirect), and ``close_connection`` (``return 444``:
close without an answer, which ASGI has no message for, done on
Hypercorn's streams).

Input: a scope's send and receive. Output: wrappers around them.
Must not: route, decide statuses, or know the config (app.py does).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import h2.errors
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class KeptBody:
    """The request's receive, keeping the body messages it hands out, so that
    the handler after an internal redirect (error_page) reads the body again:
    nginx reads a request body once and keeps it (r->request_body).

    Differs from nginx: a body over ``KEEP`` bytes that a first handler
    already read is not kept; the handler after the redirect sees the
    client gone (nginx would have buffered it to a temporary file).
    """

    KEEP = 1024 * 1024

    __slots__ = ("receive", "kept", "size", "lost", "replay")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.kept: list[dict[str, Any]] = []
        self.size = 0
        self.lost = False
        self.replay: list[dict[str, Any]] = []

    async def __call__(self) -> dict[str, Any]:
        if self.replay:
            return self.replay.pop(0)
        message = await self.receive()
        if message["type"] == "http.request" and not self.lost:
            self.size += len(message.get("body", b""))
            if self.size > self.KEEP:
                self.lost = True
                self.kept.clear()
            else:
                self.kept.append(message)
        return message

    def rewind(self) -> None:
        """Hand out the kept body again from its start."""
        self.replay = [{"type": "http.disconnect"}] if self.lost else list(self.kept)


async def close_connection(send: Send) -> bool:
    """Close the client's connection without an answer (nginx's ``return 444``).

    ASGI has no message for this. Hypercorn closes an HTTP/1.x connection
    when the app ends without answering, but sends a 500 first; so the
    stream is marked closed, which leaves it nothing to send. On HTTP/2 the
    stream is reset (RST_STREAM PROTOCOL_ERROR, what nginx 1.22 sends) and
    the connection stays open.

    Args:
        send: the scope's own send (Hypercorn's HTTPStream or WSStream).

    Returns:
        False when ``send`` is not Hypercorn's or the answer has begun; the
        client then gets Hypercorn's 500 with Connection: close.

    Differs from nginx: relies on Hypercorn's stream classes (0.17/0.18);
    with another server the closest answer is that 500.
    """
    stream = getattr(send, "__self__", None)
    closed: ASGIHTTPState | ASGIWebsocketState
    if isinstance(stream, HTTPStream) and stream.state is ASGIHTTPState.REQUEST:
        closed = ASGIHTTPState.CLOSED
    elif isinstance(stream, WSStream) and stream.state is ASGIWebsocketState.HANDSHAKE:
        closed = ASGIWebsocketState.HTTPCLOSED
    else:
        return False
    protocol = getattr(stream.send, "__self__", None)
    if isinstance(protocol, H2Protocol):
        protocol.connection.reset_stream(stream.stream_id, error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR)
        await protocol._flush()
    stream.state = closed
    return True
