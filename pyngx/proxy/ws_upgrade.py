"""The WebSocket handshake with the upstream: peers tried in turn, the answer passed on.

Owns: ``Upgrade`` (the handshake phase of proxy_websocket: a peer chosen
by the upstream's balancer, the next one tried as proxy_next_upstream
allows, nginx's 502/504 when none answers, ``$upstream_*`` per try),
the handshake rule (``HANDSHAKE_FIELDS``: which request fields the
WebSocket client library sets), a refusal's answer streamed to the
client as it came, the fields of the 101 the client gets
(``accept_headers``), and the relay's limits the handshake sets
(``MAX_MESSAGE_SIZE``, ``CLOSE_TIMEOUT``).

Input: a ``Request`` of a websocket scope, its location's ``ProxyPlan``,
the worker's upstream sessions, the scope's ASGI send.
Output: an open ``aiohttp.ClientWebSocketResponse`` (and its 101), or
None when the client has been answered already.
Must not: relay messages (proxy/websocket.py), or own connection pools
(the handshake borrows the worker's connector).

Source: nginx docs: ngx_http_proxy_module, "WebSocket proxying",
proxy_next_upstream; ngx_http_upstream.c (ngx_http_upstream_upgrade) for
the error texts; RFC 6455 4.1 (the opening handshake).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aiohttp
from yarl import URL

from pyngx.errors import UpstreamError
from pyngx.proxy.failures import FAILURE_STATUSES, error_context, failure_kind, upstream_error
from pyngx.proxy.headers import response_headers
from pyngx.proxy.plan import ProxyPlan
from pyngx.request import Request
from pyngx.responses import http_date, send_error, server_header
from pyngx.upstream.peers import Peer

__all__ = ["CLOSE_TIMEOUT", "HANDSHAKE_FIELDS", "MAX_MESSAGE_SIZE", "Upgrade", "accept_headers"]

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

#: Longest wait for a close frame to be written or answered, in seconds
#: (aiohttp's ws_close default; also bounded by proxy_read_timeout).
CLOSE_TIMEOUT = 10.0


class _Refused(Exception):
    """The upstream answered the handshake with something other than 101;
    the answer has already been passed to the client."""


def _ws_url(scheme: str, authority: str, uri: str) -> URL:
    """``ws://`` or ``wss://`` for proxy_pass's ``http://`` or ``https://``."""
    return URL(f"{'wss' if scheme == 'https' else 'ws'}://{authority}{uri}", encoded=True)


def accept_headers(raw: tuple[tuple[bytes, bytes], ...], tokens: bool) -> list[tuple[bytes, bytes]]:
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

    def __init__(self, upgrade: Upgrade, url: URL) -> None:
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


class Upgrade:
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
