"""WebSocket proxying: the upstream handshake, two pumps, close codes.

Owns: ``proxy_websocket`` (one client WebSocket relayed to one upstream
WebSocket), the handshake rule (which request fields the WebSocket client
library manages), trying peers for the handshake (proxy_next_upstream),
passing a refused handshake's answer through, the relay's timers, the
close-code mapping between the two hops, and ``install_hypercorn_close_fix``.

Input: a ``Request`` whose ASGI scope is "websocket", its location's
``ProxyPlan`` (with the upstream's peers and balancer), the worker's
upstream sessions, the raw ASGI receive/send of the websocket scope.
Output: ASGI websocket messages to the client; for the access log, which
app.py writes when the session ends: ``req.status`` 101 (or the refusal's
or error's status), ``req.body_bytes_sent`` (message payload bytes sent to
the client), ``$upstream_response_time`` (the upstream connection's whole
life) and ``$request_time`` (the session's duration).
Must not: parse config, pick servers or locations, or own sessions or
connection pools (the handshake borrows the worker's connector).

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, cast

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from pyngx.errors import UpstreamError
from pyngx.proxy.deadline import Deadline
from pyngx.proxy.failures import FAILURE_STATUSES, error_context, failure_kind, upstream_error
from pyngx.proxy.headers import response_headers
from pyngx.proxy.plan import ProxyPlan
from pyngx.request import Request
from pyngx.responses import http_date, send_error, server_header
from pyngx.upstream.peers import Peer

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Largest message relayed in either direction, in bytes (inclusive):
#: Hypercorn's websocket_max_message_size default.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024

#: Request fields the WebSocket client library sets itself and that are
#: therefore never copied from the client or from proxy_set_header
#: (RFC 6455 4.1; the subprotocols go through ``protocols=``).
HANDSHAKE_FIELDS: frozenset[str] = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)

#: nginx's send_timeout default (ngx_http_core_module): a blocked write to
#: the client. pyngx has no send_timeout directive yet.
SEND_TIMEOUT = 60.0

#: Longest wait for a close frame to be written or answered, in seconds
#: (aiohttp's ws_close default; also bounded by proxy_read_timeout).
CLOSE_TIMEOUT = 10.0

# RFC 6455 7.4: codes an endpoint may put in a close frame.
_GOING_AWAY = 1001
_TOO_BIG = 1009
_INTERNAL_ERROR = 1011
_NO_STATUS = 1005


def wire_code(code: int | None, fallback: int) -> int:
    """The close code to send on, for a code received.

    Args:
        code: the code received, or None.
        fallback: used when ``code`` may not be sent in a close frame
            (1004-1006, 1015, 0, >= 5000).

    Returns:
        ``code`` itself when it may be sent, 1000 for 1005 ("no status"),
        else ``fallback``.

    Source: RFC 6455 7.4.1 and 7.4.2 (reserved and unsendable codes).
    """
    if code is None:
        return fallback
    if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return 1000 if code == _NO_STATUS else fallback


class _Refused(Exception):
    """The upstream answered the handshake with something other than 101;
    the answer has already been passed to the client."""


class _End(NamedTuple):
    """Why one pump stopped.

    kind: "close" (a close frame arrived), "lost" (the connection went
    without one), "error" (a protocol or I/O error), "timeout".
    """

    side: str  # "client" or "upstream"
    kind: str
    code: int | None = None
    reason: str = ""


def _ws_url(scheme: str, authority: str, uri: str) -> URL:
    """``ws://`` or ``wss://`` for proxy_pass's ``http://`` or ``https://``."""
    return URL(f"{'wss' if scheme == 'https' else 'ws'}://{authority}{uri}", encoded=True)


def _accept_headers(raw: tuple[tuple[bytes, bytes], ...], tokens: bool) -> list[tuple[bytes, bytes]]:
    """The upstream's 101 fields for the client: no hop-by-hop, no
    Sec-WebSocket-* (Hypercorn writes its own), nginx's hidden fields off."""
    out = [
        (name, value)
        for name, value in response_headers(raw)
        if not name.lower().startswith(b"sec-websocket-") and name.lower() != b"content-length"
    ]
    out.append((b"server", server_header(tokens)))
    out.append((b"date", http_date()))
    return out


def _denial(send: Send) -> Send:
    """An ASGI send that turns http.response.* into websocket.http.response.*."""

    async def denial_send(message: dict[str, Any]) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return denial_send


def _text_len(text: str) -> int:
    # isascii() is O(1) on CPython's compact strings.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Retry(Exception):
    """The upstream's handshake answer is one proxy_next_upstream names
    (http_502, ...) and another peer may be tried."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Handshake:
    """The upstream side of one handshake try, as an aiohttp client middleware.

    A 101 is kept for its header fields. A status that proxy_next_upstream
    names ends the try with ``_Retry`` while another peer may be tried.
    Any other answer is streamed to the client as the denial response right
    here, while aiohttp still holds the response open (``ws_connect`` would
    close it unread and keep only the status: aiohttp issue #2279), and
    ends the handshake with ``_Refused``.
    """

    __slots__ = ("upgrade", "url", "response")

    def __init__(self, upgrade: _Upgrade, url: URL) -> None:
        self.upgrade = upgrade
        self.url = url
        self.response: aiohttp.ClientResponse | None = None

    async def __call__(self, creq: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        resp = await handler(creq)
        if resp.status == 101:
            self.response = resp
            return resp
        try:
            kind = f"http_{resp.status}"
            if kind in self.upgrade.plan.next_upstream and self.upgrade.may_retry(kind):
                raise _Retry(resp.status)
            await self.refuse(resp)
        finally:
            resp.release()
        raise _Refused()

    async def refuse(self, resp: aiohttp.ClientResponse) -> None:
        """Pass the upstream's non-101 answer to the client, body streamed."""
        req = self.upgrade.req
        send = self.upgrade.send
        req.status = resp.status
        headers = response_headers(resp.raw_headers)
        headers.append((b"server", server_header(self.upgrade.plan.loc.server_tokens)))
        await send({"type": "websocket.http.response.start", "status": resp.status, "headers": headers})
        sent = 0
        try:
            async for chunk in resp.content.iter_any():
                sent += len(chunk)
                await send({"type": "websocket.http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            req.body_bytes_sent = sent
            err = upstream_error(exc, "reading upstream")
            self.upgrade.log.error("upstream_read_failed", reason=err.reason, **error_context(req, self.url))
            return  # the answer stays incomplete: Hypercorn closes the connection
        req.body_bytes_sent = sent
        await send({"type": "websocket.http.response.body", "body": b"", "more_body": False})


class _Upgrade:
    """The handshake phase: peers of the upstream tried in turn, as
    proxy_next_upstream allows, until one answers.

    Keeps ``$upstream_addr``, ``$upstream_status`` and
    ``$upstream_response_time`` (one value per try, joined with ", ").
    """

    def __init__(self, req: Request, plan: ProxyPlan, sessions: Any, send: Send, log: Any, uri: str) -> None:
        self.req = req
        self.plan = plan
        self.sessions = sessions
        self.send = send
        self.log = log
        self.uri = uri
        self.tried: set[int] = set()
        self.addrs: list[str] = []
        self.statuses: list[str] = []
        self.times: list[str] = []
        self.first = time.monotonic()
        #: the URL of the current try, for error-log lines.
        self.url = _ws_url(plan.scheme, plan.origin.split("://", 1)[1], uri)

    def may_retry(self, kind: str) -> bool:
        """Whether a failed try of ``kind`` passes to the next peer (nginx's rules)."""
        plan = self.plan
        up = plan.upstream
        if up is None or kind not in plan.next_upstream:
            return False
        total = len(up.group.primary) + len(up.group.backup)
        if len(self.tried) >= (min(total, plan.tries) if plan.tries else total):
            return False
        return not (plan.next_timeout and time.monotonic() - self.first >= plan.next_timeout)

    def record(self, name: str, status: str, t0: float) -> None:
        """Note one try for ``$upstream_addr``, ``$upstream_status``, ``$upstream_response_time``."""
        self.addrs.append(name)
        self.statuses.append(status)
        self.times.append(f"{time.monotonic() - t0:.3f}")
        self.req.upstream_addr = ", ".join(self.addrs)
        self.req.upstream_status = ", ".join(self.statuses)
        self.req.upstream_response_time = ", ".join(self.times)

    def session(self, peer: Peer | None) -> aiohttp.ClientSession:
        if isinstance(self.sessions, aiohttp.ClientSession):
            return self.sessions  # the plan's one session: TCP peers, or the proxy_pass UNIX socket
        return cast(aiohttp.ClientSession, self.sessions.get(self.plan, peer))

    async def connect(
        self, headers: list[tuple[str, str]], protocols: Sequence[str]
    ) -> tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientResponse, Peer | None, float] | None:
        """Open the upstream WebSocket on a peer chosen by the upstream's balancer.

        Returns:
            (ws, the 101 response, the peer, when its try began), or None
            when the client has been answered already (the upstream's
            refusal, or nginx's 502/504 page).
        """
        plan = self.plan
        up = plan.upstream
        req = self.req
        key = "" if up is None else req.remote_addr if up.ip_hash else up.key.render(req) if up.key is not None else ""
        last: UpstreamError | None = None
        while True:
            peer: Peer | None = None
            if up is None:  # a plan made without a Runtime: the proxy_pass address itself
                name, authority = plan.upstream_name, plan.origin.split("://", 1)[1]
            else:
                peer = up.balancer.select(up.group, key, self.tried, time.monotonic())
                if peer is None:
                    if last is None:
                        last = UpstreamError(502, "no live upstreams while connecting to upstream")
                        self.log.error("upstream_failed", reason=last.reason, **error_context(req, self.url))
                        self.record(up.group.name, "502", time.monotonic())
                    await self.fail(last)
                    return None
                self.tried.add(id(peer))
                name, authority = peer.name, "localhost" if peer.unix else peer.name
            self.url = url = _ws_url(plan.scheme, authority, self.uri)
            t0 = time.monotonic()
            handshake = _Handshake(self, url)
            try:
                ws = await self.handshake(url, handshake, headers, protocols, peer)
            except _Retry as retry:
                self.record(name, str(retry.status), t0)
                if peer is not None:
                    peer.finished(retry.status in FAILURE_STATUSES)
                last = UpstreamError(retry.status, f"upstream answered {retry.status}")
                continue
            except _Refused:
                self.record(name, str(req.status), t0)
                if peer is not None:
                    peer.finished(False)
                return None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                err = upstream_error(exc, "reading response header from upstream")
                self.record(name, str(err.status), t0)
                self.log.error("upstream_timed_out" if err.status == 504 else "upstream_failed",
                               reason=err.reason, **error_context(req, url))
                if peer is not None and peer.finished(True):
                    self.log.warning("upstream_disabled", reason="upstream server temporarily disabled",
                                     **error_context(req, url))
                last = err
                if self.may_retry(failure_kind(err)):
                    continue
                await self.fail(err)
                return None
            except BaseException:
                if peer is not None:
                    peer.finished(False)
                raise
            assert handshake.response is not None
            self.record(name, "101", t0)
            return ws, handshake.response, peer, t0

    async def handshake(
        self, url: URL, handshake: _Handshake, headers: list[tuple[str, str]], protocols: Sequence[str],
        peer: Peer | None,
    ) -> aiohttp.ClientWebSocketResponse:
        """One try: ws_connect on the worker's pool, with ``handshake`` as middleware."""
        session = self.session(peer)
        loc = self.plan.loc
        # A view of the worker's pool with this try's middleware and
        # timeouts; connector_owner=False leaves the pool to its owner.
        view = aiohttp.ClientSession(
            connector=session.connector,
            connector_owner=False,
            middlewares=(handshake,),
            timeout=self.plan.timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=session.skip_auto_headers,
            requote_redirect_url=False,
            version=aiohttp.HttpVersion11,
        )
        try:
            return await view.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=True,
                max_msg_size=MAX_MESSAGE_SIZE + 1,  # aiohttp refuses sizes >= max_msg_size
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=min(CLOSE_TIMEOUT, loc.proxy_read_timeout)),
                compress=0,
            )
        finally:
            await view.close()

    async def fail(self, err: UpstreamError) -> None:
        """Answer the client with nginx's 502 or 504 page."""
        req = self.req
        req.status = err.status if err.status in (502, 504) else 502
        req.body_bytes_sent = await send_error(_denial(self.send), req.status, self.plan.loc.server_tokens)


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
    upgrade = _Upgrade(req, plan, session, send, log, plan.upstream_uri(req, quoted))
    opened = await upgrade.connect(headers, scope.get("subprotocols") or ())
    if opened is None:
        return
    ws, response, peer, t0 = opened
    try:
        await send({
            "type": "websocket.accept",
            "subprotocol": ws.protocol,
            "headers": _accept_headers(response.raw_headers, plan.loc.server_tokens),
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
                await self.close_both(_GOING_AWAY, "", _GOING_AWAY, "")
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
                await self.close_both(_GOING_AWAY, "", _GOING_AWAY if end.reason == "read" else None, "")
            elif end.kind == "error" and end.code == _TOO_BIG:
                self.log.error("upstream_failed", reason=f"upstream sent too big message: {end.reason} {action}", **ctx)
                await self.close_both(_TOO_BIG, "", None, "")  # aiohttp already closed the upstream
            elif end.kind == "error":
                self.log.error("upstream_failed", reason=f"{end.reason} {action}", **ctx)
                await self.close_both(_INTERNAL_ERROR, "", None, "")
            else:
                self.log.error("upstream_failed", reason=f"upstream prematurely closed connection {action}", **ctx)
                await self.close_both(_INTERNAL_ERROR, "", None, "")
        else:
            if end.kind == "close":
                await self.close_both(None, "", wire_code(end.code, 1000), end.reason)
            elif end.kind == "timeout":
                # The client stopped reading: a close frame to it would block as well.
                self.log.info("client_timed_out", reason=f"client timed out (110: Connection timed out) {action}",
                              **ctx)
                await self.close_both(None, "", _GOING_AWAY, "")
            else:  # lost: the TCP connection ended without a close frame
                self.log.info("client_closed", reason=f"client closed connection {action}", **ctx)
                await self.close_both(None, "", _GOING_AWAY, "")

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


def install_hypercorn_close_fix() -> bool:
    """Make Hypercorn tell the app the close code and reason the client sent.

    Hypercorn (0.18) answers a client's close frame itself and then sends the
    app ``websocket.disconnect`` with code 1006, so the code and reason are
    lost before they could be relayed upstream. This wraps two ``WSStream``
    methods: the close answer Hypercorn echoes to the client (which carries
    the client's code and reason, RFC 6455 5.5.1) is remembered, and the
    disconnect event then carries it (ASGI: ``code`` and ``reason``).
    Nothing else changes; without a close frame the code stays 1006.

    Returns:
        True when installed now or before; False when this Hypercorn does
        not have the expected internals (then the upstream sees 1001 for
        every client close).
    """
    try:
        from hypercorn.protocol.events import StreamClosed
        from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection
    except ImportError:  # pragma: no cover - other Hypercorn layouts
        return False
    if getattr(WSStream, "_pyngx_close_fix", False):
        return True
    send_event = getattr(WSStream, "_send_wsproto_event", None)
    handle = getattr(WSStream, "handle", None)
    if send_event is None or handle is None:  # pragma: no cover
        return False

    # Plain functions that hand back the original coroutine (or another):
    # every relayed message passes here, and an async wrapper would add a
    # coroutine per message.
    def _send_wsproto_event(self: Any, event: Any) -> Awaitable[None]:
        if isinstance(event, CloseConnection) and self.connection.state is ConnectionState.REMOTE_CLOSING:
            self._pyngx_peer_close = (event.code, event.reason or "")
        return send_event(self, event)  # type: ignore[no-any-return]

    async def _disconnect(self: Any, code: int, reason: str) -> None:
        self.closed = True
        await self.app_put({"type": "websocket.disconnect", "code": code, "reason": reason})

    def _handle(self: Any, event: Any) -> Awaitable[None]:
        peer = getattr(self, "_pyngx_peer_close", None)
        if (
            peer is not None
            and isinstance(event, StreamClosed)
            and not self.closed
            and self.app_put is not None
            and self.state is ASGIWebsocketState.CONNECTED
        ):
            return _disconnect(self, peer[0], peer[1])
        return handle(self, event)  # type: ignore[no-any-return]

    setattr(WSStream, "_send_wsproto_event", _send_wsproto_event)
    setattr(WSStream, "handle", _handle)
    setattr(WSStream, "_pyngx_close_fix", True)
    return True


# Installed on import: app.py imports this module before Hypercorn serves.
install_hypercorn_close_fix()
