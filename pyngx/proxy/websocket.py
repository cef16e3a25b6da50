"""WebSocket proxying: the upstream handshake, two pumps, close codes.

Owns: ``proxy_websocket`` (one client WebSocket relayed to one upstream
WebSocket), the relay's two pumps, its timers and how it ends. The
handshake with the upstream (the handshake rule, trying peers as
proxy_next_upstream allows, passing a refused handshake's answer through)
is proxy/ws_upgrade.py's; the close codes and ``install_hypercorn_close_fix``
are proxy/ws_close.py's. This docstring describes all three.

Input: a ``Request`` whose ASGI scope is "websocket", its location's
``ProxyPlan`` (with the upstream's peers and balancer), the worker's
upstream sessions, the raw ASGI receive/send of the websocket scope.
Output: ASGI websocket messages to the client; for the access log, which
app.py writes when the session ends: ``req.status`` 101 (or the refusal's
or error's status), ``req.body_bytes_sent`` (message payload bytes sent to
the client), ``$upstream_response_time`` (the upstream connection's whole
life) and ``$request_time`` (the session's duration).
Must not: parse config, pick servers or locations, or own sessions or
connection pools.

Shape of one connection::

    client --Hypercorn--> receive() --pump--> ws.send_*() --aiohttp--> upstream
    client <--Hypercorn-- send()    <--pump-- ws.receive() <--aiohttp-- upstream

Either pump ending (a close frame, a lost connection, an error) or a timer
expiring ends the relay: the other pump is cancelled and awaited, then each
side still open gets a close frame, and the upstream connection is closed.

Close codes travel in the direction they were sent: an upstream close
``4001 "bye"`` reaches the client as ``4001 "bye"`` and vice versa. A side
that vanishes without a close frame makes pyngx close the other side with
1011 (the upstream went away: the client cannot continue) or 1001 (the
client went away). A message over the size limit closes with 1009. A timer
closes both sides with 1001.

Timers (nginx: ngx_http_upstream_process_upgraded):
    proxy_read_timeout: runs while waiting for the upstream; any message in
        either direction re-arms it, as nginx re-arms the upstream read
        timer on every event of the upgraded connection. An idle connection
        is closed after proxy_read_timeout.
    proxy_send_timeout: runs while a write to the upstream is blocked.
    send_timeout: runs while a write to the client is blocked; nginx's
        default 60s (pyngx has no send_timeout directive yet).
    proxy_connect_timeout: the upstream TCP connect of the handshake; the
        handshake answer itself is under proxy_read_timeout.

Message size: at most ``MAX_MESSAGE_SIZE`` (16 MiB, inclusive) per message
in each direction. Hypercorn's ``websocket_max_message_size`` (16 MiB by
default) limits client -> pyngx and Hypercorn closes the client with 1009
beyond it; aiohttp's ``max_msg_size`` limits upstream -> pyngx, and pyngx
closes the client with 1009 (aiohttp closes the upstream with 1009).

Per-connection memory bound (backpressure): every stage is bounded, and a
slow reader stops the reads on the other side, so a fast sender waits.
    client -> upstream: Hypercorn reads 64 KiB at a time and waits while
        its app queue is full (``max_app_queue_size``: 10 messages), so
        pyngx holds at most 10 queued messages, 1 being assembled and 1
        being written (plus its masked copy); aiohttp's writer waits for
        the upstream socket to drain above 256 KiB.
    upstream -> client: aiohttp stops reading the upstream socket while its
        queue holds over 512 KiB (2 x 256 KiB), plus 1 message being
        assembled; the pump holds 1 message; Hypercorn's send waits for the
        client socket to drain above 64 KiB after writing it.
    In all about 1 MiB plus 17 x the largest message in flight: ~1.5 MiB
    per connection with small messages, ~270 MiB at worst with 16 MiB
    messages flowing both ways at full speed. Measured: 200 MiB streamed
    to a slow client leaves pyngx under 60 MiB RSS; an open connection
    with small messages costs about 50 KiB.

Pings: Hypercorn answers the client's pings itself and ASGI does not expose
ping or pong, so client pings never reach the upstream; aiohttp
(``autoping``) answers the upstream's pings, so upstream pings never reach
the client. Each ping tests only its own hop, and a client ping does not
re-arm proxy_read_timeout.

Differs from nginx:
    - pyngx upgrades every WebSocket handshake to a proxy_pass location,
      also without ``proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";``. Hypercorn has already
      recognised the upgrade before pyngx sees the request and hands it
      over as a websocket scope, which can only be answered with a
      WebSocket or an HTTP denial, not relayed as a plain request. The
      nginx idiom is accepted and changes nothing: Upgrade, Connection and
      the Sec-WebSocket-* fields are set by aiohttp, never copied.
    - The handshake goes upstream as HTTP/1.1 even with
      ``proxy_http_version 1.0`` (RFC 6455 4.1 requires 1.1).
    - pyngx relays messages, not bytes: frames are reassembled, control
      frames are answered per hop (see Pings), and permessage-deflate is
      negotiated with the client only (the upstream hop is uncompressed).
    - Close frames are sent on timeouts and lost peers where nginx just
      closes the TCP connection.

Source: nginx docs: ngx_http_proxy_module, "WebSocket proxying";
src/http/ngx_http_upstream.c (ngx_http_upstream_upgrade,
ngx_http_upstream_process_upgraded); RFC 6455 (7.4 close codes);
ASGI spec, "WebSocket" and the websocket.http.response extension.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from pyngx.proxy.deadline import Deadline
from pyngx.proxy.failures import error_context
from pyngx.proxy.plan import ProxyPlan
from pyngx.proxy.ws_close import GOING_AWAY, INTERNAL_ERROR, TOO_BIG, install_hypercorn_close_fix, wire_code
from pyngx.proxy.ws_upgrade import CLOSE_TIMEOUT, HANDSHAKE_FIELDS, MAX_MESSAGE_SIZE, Upgrade, accept_headers
from pyngx.request import Request

__all__ = ["MAX_MESSAGE_SIZE", "SEND_TIMEOUT", "proxy_websocket"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: nginx's send_timeout default (ngx_http_core_module): a blocked write to
#: the client. pyngx has no send_timeout directive yet.
SEND_TIMEOUT = 60.0


class _End(NamedTuple):
    """Why one pump stopped.

    kind: "close" (a close frame arrived), "lost" (the connection went
    without one), "error" (a protocol or I/O error), "timeout".
    """

    side: str  # "client" or "upstream"
    kind: str
    code: int | None = None
    reason: str = ""


def _text_len(text: str) -> int:
    # isascii() is O(1) on CPython's compact strings.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


async def proxy_websocket(
    req: Request,
    plan: ProxyPlan,
    session: Any,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    quoted: bool,
    log: Any,
) -> None:
    """Relay the client's WebSocket to a peer of the location's upstream.

    The upstream's balancer picks the peer; a failed handshake (error,
    timeout, invalid header, or a status named by proxy_next_upstream)
    passes to the next peer as for HTTP. The peer's handshake answer
    decides: 101 accepts the client with the subprotocol the peer chose
    and its header fields (Set-Cookie, ...); any other answer goes to the
    client as it came (status, fields, body). Then messages flow both ways
    until either side closes, goes away, or a timer expires (see the
    module docstring). The peer counts the connection as active (least_conn,
    max_conns) until it ends.

    Args:
        req: the request; ``req.status`` becomes 101 (or the refusal's or
            error's status), ``req.body_bytes_sent`` the payload bytes sent
            to the client, and the ``$upstream_*`` fields are filled in.
        plan: the location's proxy plan (URI rule, header rule, timeouts, peers).
        session: the worker's sessions (``Sessions``: a session per peer), or
            the plan's one ``aiohttp.ClientSession`` (enough for TCP peers);
            only its connection pool is used.
        scope: the ASGI websocket scope (``subprotocols``).
        receive, send: the scope's raw ASGI callables.
        quoted: the client's path had %-escapes (see ``ProxyPlan.upstream_uri``).
        log: the error logger.

    Failures before the upgrade are answered as nginx does: 502 (refused,
    reset, invalid answer, no live upstreams) or 504 (timed out), with an
    error-log line.

    Source: nginx docs: ngx_http_proxy_module, "WebSocket proxying",
    proxy_next_upstream; ngx_http_upstream.c for the error texts.
    """
    req.proxy = plan.loc.proxy_pass
    first = await receive()
    if first["type"] != "websocket.connect":  # the client left before we began
        req.status = 499
        return
    headers = [(n, v) for n, v in plan.headers.build(req) if n.lower() not in HANDSHAKE_FIELDS]
    upgrade = Upgrade(req, plan, session, send, log, plan.upstream_uri(req, quoted))
    opened = await upgrade.connect(headers, scope.get("subprotocols") or ())
    if opened is None:
        return
    ws, response, peer, t0 = opened
    try:
        await send({
            "type": "websocket.accept",
            "subprotocol": ws.protocol,
            "headers": accept_headers(response.raw_headers, plan.loc.server_tokens),
        })
        req.status = 101
        await _Relay(req, plan, ws, receive, send, log, upgrade.url).run()
    finally:
        response.close()  # the upstream socket, whatever happened
        if peer is not None:
            peer.finished(False)  # nginx: an upgraded connection ends without failing its peer
        # The last try's time covers the upgraded connection's whole life.
        upgrade.times[-1] = f"{time.monotonic() - t0:.3f}"
        req.upstream_response_time = ", ".join(upgrade.times)


class _Relay:
    """The two pumps of one accepted connection and how they end."""

    def __init__(
        self,
        req: Request,
        plan: ProxyPlan,
        ws: aiohttp.ClientWebSocketResponse,
        receive: Receive,
        send: Send,
        log: Any,
        url: URL,
    ) -> None:
        self.req = req
        self.ws = ws
        self.receive = receive
        self.send = send
        self.log = log
        self.url = url
        loop = asyncio.get_running_loop()
        self.loop = loop
        #: Set by a timer: which side timed out.
        self.expired: asyncio.Future[_End] = loop.create_future()
        loc = plan.loc
        self.read_timer = Deadline(loop, loc.proxy_read_timeout, lambda: self._expire("upstream", "read"))
        self.upstream_send_timer = Deadline(loop, loc.proxy_send_timeout, lambda: self._expire("upstream", "send"))
        self.client_send_timer = Deadline(loop, SEND_TIMEOUT, lambda: self._expire("client", "send"))
        self.close_timeout = min(CLOSE_TIMEOUT, loc.proxy_read_timeout)
        #: message payload bytes relayed each way (the error log's debug line
        #: has both; the access log's $body_bytes_sent the first).
        self.to_client = 0
        self.to_upstream = 0

    def _expire(self, side: str, what: str) -> None:
        if not self.expired.done():
            self.expired.set_result(_End(side, "timeout", None, what))

    async def run(self) -> None:
        loop = self.loop
        from_upstream = loop.create_task(self.from_upstream())
        from_client = loop.create_task(self.from_client())
        end: _End | None = None
        try:
            done, _ = await asyncio.wait(
                (from_upstream, from_client, self.expired), return_when=asyncio.FIRST_COMPLETED
            )
            for fut in (from_upstream, from_client, self.expired):
                if fut in done and not fut.cancelled():
                    end = fut.result()
                    break
        finally:
            for timer in (self.read_timer, self.upstream_send_timer, self.client_send_timer):
                timer.cancel()
            for task in (from_upstream, from_client):
                task.cancel()
            # Both pumps end here: a cancelled pump is awaited, never left running.
            await asyncio.wait((from_upstream, from_client))
            self.req.body_bytes_sent = self.to_client
            if end is None:  # cancelled from outside (shutdown): both sides go away
                await self.close_both(GOING_AWAY, "", GOING_AWAY, "")
        assert end is not None
        await self.finish(end)
        if end.side != "client" or end.kind == "timeout":
            await self.drain_client()
        self.log.debug("websocket_closed", reason=f"{end.side} {end.kind} {end.code or ''}".rstrip()
                       + f", {self.to_client} bytes to client, {self.to_upstream} bytes to upstream",
                       **error_context(self.req, self.url))

    async def finish(self, end: _End) -> None:
        """Close what is still open, as ``end`` requires, and log it."""
        ctx = error_context(self.req, self.url)
        action = "while proxying upgraded connection"
        if end.side == "upstream":
            if end.kind == "close":
                code = wire_code(end.code, 1000)
                await self.close_both(code, end.reason, code, end.reason)
            elif end.kind == "timeout":
                self.log.error("upstream_timed_out", reason=f"upstream timed out (110: Connection timed out) {action}",
                               **ctx)
                # After a blocked write a close frame would block too: just drop the connection.
                await self.close_both(GOING_AWAY, "", GOING_AWAY if end.reason == "read" else None, "")
            elif end.kind == "error" and end.code == TOO_BIG:
                self.log.error("upstream_failed", reason=f"upstream sent too big message: {end.reason} {action}", **ctx)
                await self.close_both(TOO_BIG, "", None, "")  # aiohttp already closed the upstream
            elif end.kind == "error":
                self.log.error("upstream_failed", reason=f"{end.reason} {action}", **ctx)
                await self.close_both(INTERNAL_ERROR, "", None, "")
            else:
                self.log.error("upstream_failed", reason=f"upstream prematurely closed connection {action}", **ctx)
                await self.close_both(INTERNAL_ERROR, "", None, "")
        else:
            if end.kind == "close":
                await self.close_both(None, "", wire_code(end.code, 1000), end.reason)
            elif end.kind == "timeout":
                # The client stopped reading: a close frame to it would block as well.
                self.log.info("client_timed_out", reason=f"client timed out (110: Connection timed out) {action}",
                              **ctx)
                await self.close_both(None, "", GOING_AWAY, "")
            else:  # lost: the TCP connection ended without a close frame
                self.log.info("client_closed", reason=f"client closed connection {action}", **ctx)
                await self.close_both(None, "", GOING_AWAY, "")

    async def close_both(self, client_code: int | None, client_reason: str, upstream_code: int | None,
                         upstream_reason: str) -> None:
        """Send close frames (None: that side is done already), each bounded in time."""
        if client_code is not None:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self.send({"type": "websocket.close", "code": client_code, "reason": client_reason})
            except (TimeoutError, OSError):
                pass  # the client stopped reading; Hypercorn closes the socket when we return
        if upstream_code is not None and not self.ws.closed:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self.ws.close(code=upstream_code, message=upstream_reason.encode())
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass  # the caller closes the upstream response, and with it the socket

    async def drain_client(self) -> None:
        """Read and drop client messages until Hypercorn reports the disconnect.

        Hypercorn delivers the disconnect through the app queue, and also
        waits on that queue when the app returns: with the queue full of
        messages nobody reads, the connection would never be closed.
        """
        try:
            async with asyncio.timeout(self.close_timeout):
                while (await self.receive())["type"] != "websocket.disconnect":
                    pass
        except TimeoutError:
            pass

    async def from_upstream(self) -> _End:
        """Pump upstream -> client until the upstream closes or fails."""
        ws = self.ws
        send = self.send
        read_timer = self.read_timer
        send_timer = self.client_send_timer
        binary, text = WSMsgType.BINARY, WSMsgType.TEXT
        while True:
            read_timer.arm()
            msg = await ws.receive()
            read_timer.disarm()
            kind = msg.type
            if kind is binary:
                data = msg.data
                self.to_client += len(data)
                send_timer.arm()
                await send({"type": "websocket.send", "bytes": data})
                send_timer.disarm()
            elif kind is text:
                data = msg.data
                self.to_client += _text_len(data)
                send_timer.arm()
                await send({"type": "websocket.send", "text": data})
                send_timer.disarm()
            elif kind is WSMsgType.CLOSE:
                return _End("upstream", "close", msg.data, msg.extra or "")
            elif kind is WSMsgType.ERROR:
                exc = msg.data
                code = getattr(exc, "code", None)
                return _End("upstream", "error", code, f"{exc.__class__.__name__}: {exc}")
            else:  # CLOSED: the upstream connection ended without a close frame
                return _End("upstream", "lost")

    async def from_client(self) -> _End:
        """Pump client -> upstream until the client closes or goes away."""
        ws = self.ws
        receive = self.receive
        read_timer = self.read_timer
        send_timer = self.upstream_send_timer
        while True:
            msg = await receive()
            kind = msg["type"]
            if kind == "websocket.receive":
                data = msg.get("bytes")
                try:
                    send_timer.arm()
                    if data is not None:
                        self.to_upstream += len(data)
                        await ws.send_bytes(data)
                    else:
                        text = msg["text"]
                        self.to_upstream += _text_len(text)
                        await ws.send_str(text)
                    send_timer.disarm()
                except (aiohttp.ClientError, OSError) as exc:
                    errno = getattr(exc, "errno", None) or 104
                    return _End("upstream", "error", None, f"send() failed ({errno}: {os.strerror(errno)})")
                read_timer.touch()
            elif kind == "websocket.disconnect":
                code = msg.get("code")
                if code is None or code == 1006:
                    return _End("client", "lost", code)
                return _End("client", "close", code, msg.get("reason") or "")


# Installed on import: app.py imports this module before Hypercorn serves.
install_hypercorn_close_fix()
