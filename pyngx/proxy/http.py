"""HTTP proxying over aiohttp: one request to one upstream, streamed both ways.

Owns: ``ProxyPlan`` (a location's proxy settings compiled at load time:
header rule, URL parts, timeouts), the upstream URI rule of proxy_pass,
streaming the request body up and the response down, and turning upstream
failures into 502/504 with nginx's error-log wording.

Input: a ``Request``, its location's ``ProxyPlan``, the worker's
``aiohttp.ClientSession``, ASGI receive/send.
Must not: parse config, pick servers or locations, or create sessions.

Source: nginx docs: ngx_http_proxy_module (proxy_pass, proxy_set_header,
proxy_connect_timeout, proxy_read_timeout).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from pyngx.config.model import LocationConf
from pyngx.errors import UpstreamError
from pyngx.proxy.headers import RequestHeaderPlan, response_headers
from pyngx.request import Request
from pyngx.responses import send_error, server_header

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Methods whose requests carry no body unless the client frames one.
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})

# nginx's NGX_ESCAPE_URI set (src/core/ngx_string.c): controls, space, "#",
# "%", "?", DEL and non-ASCII bytes are %-escaped; everything else is kept.
_ESCAPE = [f"%{b:02X}" if b <= 0x20 or b >= 0x7F or chr(b) in "#%?" else chr(b) for b in range(256)]


def escape_uri(path: str) -> str:
    """%-escape a decoded path the way nginx re-escapes it for the upstream."""
    raw = path.encode("utf-8", "surrogateescape")
    return "".join(_ESCAPE[b] for b in raw)


class ProxyPlan:
    """One location's proxy_pass, compiled once at load time.

    Attributes:
        loc: the location.
        headers: the upstream request header rule.
        origin: "scheme://host:port" of the upstream.
        upstream_name: the peer as logged ("127.0.0.1:8000").
        timeout: aiohttp timeouts from proxy_connect_timeout and proxy_read_timeout.
    """

    __slots__ = ("loc", "headers", "origin", "upstream_name", "timeout", "strip", "http10")

    def __init__(self, loc: LocationConf) -> None:
        pp = loc.proxy_pass
        assert pp is not None
        self.loc = loc
        self.headers = RequestHeaderPlan(loc.proxy_set_header, loc.proxy_http_version)
        self.origin = pp.origin
        self.upstream_name = f"unix:{pp.host}" if pp.unix else pp.proxy_host if ":" in pp.proxy_host else f"{pp.host}:{pp.port}"
        # Differs from nginx: proxy_send_timeout is not enforced per write;
        # aiohttp applies flow control to the request body instead.
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=loc.proxy_connect_timeout, sock_read=loc.proxy_read_timeout
        )
        # With a URI part, this many characters of the location prefix are replaced.
        self.strip = len(loc.name) if pp.uri is not None and loc.modifier in ("", "^~", "=") else 0
        #: proxy_http_version 1.0: the request goes on the runtime's HTTP/1.0 session.
        self.http10 = loc.proxy_http_version == "1.0"

    def upstream_uri(self, req: Request, quoted: bool) -> str:
        """The request target sent upstream (nginx's proxy_pass URI rule).

        Without a URI part in proxy_pass, the client's URI goes unchanged.
        With one, the part of the normalized URI that matched the location
        prefix is replaced by it, and the rest is re-escaped.

        Args:
            req: the request.
            quoted: the client's path had %-escapes (nginx: r->quoted_uri).
        """
        pp = self.loc.proxy_pass
        assert pp is not None
        if pp.uri is None:
            return req.request_uri
        tail = req.uri[self.strip :]
        uri = pp.uri + (escape_uri(tail) if quoted else tail)
        return f"{uri}?{req.args}" if req.args else uri


class _Disconnect:
    """Watches for the client going away once its body has been read."""

    __slots__ = ("task", "watcher", "gone", "active")

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.watcher: asyncio.Task[None] | None = None
        self.gone = False
        #: False once the last body byte is handed to the server: a
        #: disconnect after that is the normal end of the exchange.
        self.active = True

    def start(self, receive: Receive) -> None:
        if self.watcher is None:
            self.watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected()

    def disconnected(self) -> None:
        if self.active and self.task is not None:
            self.gone = True
            self.task.cancel()

    def stop(self) -> None:
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()


class _Body:
    """The client's request body as an async iterator for aiohttp.

    ``done`` turns true after the last chunk; ``drain()`` reads and drops
    what is left when the upstream answered before taking it all (nginx
    discards the rest of the body the same way), so that the connection is
    never left with a body nobody reads.
    """

    __slots__ = ("receive", "watch", "done")

    def __init__(self, receive: Receive, watch: _Disconnect) -> None:
        self.receive = receive
        self.watch = watch
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.done:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                self.done = True
                self.watch.disconnected()
                return
            chunk = msg.get("body", b"")
            if not msg.get("more_body", False):
                self.done = True
                self.watch.start(self.receive)
            if chunk:
                yield chunk

    async def drain(self) -> None:
        while not self.done:
            msg = await self.receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
                self.done = True


def _has_body(req: Request) -> bool:
    te = req.header_map.get("transfer-encoding")
    if te is not None:
        return True
    cl = req.header_map.get("content-length")
    return cl is not None and cl != "0"


def _fail(exc: BaseException, phase: str) -> UpstreamError:
    """Map an aiohttp failure to 502/504 with nginx's error-log wording."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError(504, "upstream timed out (110: Connection timed out) while connecting to upstream")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, f"upstream timed out (110: Connection timed out) while {phase}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno or 111
        return UpstreamError(502, f"connect() failed ({errno}: {os.strerror(errno)}) while connecting to upstream")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamError(502, f"upstream prematurely closed connection while {phase}")
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return UpstreamError(502, f"upstream sent invalid header while {phase}")
    if isinstance(exc, aiohttp.ClientOSError):
        errno = exc.errno or 104
        return UpstreamError(502, f"recv() failed ({errno}: {os.strerror(errno)}) while {phase}")
    return UpstreamError(502, f"{exc.__class__.__name__}: {exc} while {phase}")


async def proxy_http(
    req: Request,
    plan: ProxyPlan,
    session: aiohttp.ClientSession,
    receive: Receive,
    send: Send,
    quoted: bool,
    log: Any,
) -> None:
    """Proxy ``req`` to the location's upstream and stream the answer back.

    Sets ``req.status``, ``req.body_bytes_sent`` and the upstream fields
    for the access log.

    Failures before the response starts become 502 (refused, reset,
    invalid answer) or 504 (timeouts) with nginx's error page and an
    error-log line. A failure after it started aborts the connection, as
    nginx does. A client that goes away cancels the upstream request (499).

    Source: nginx docs: ngx_http_proxy_module; ngx_http_upstream.c for the
    error texts.
    """
    loc = plan.loc
    req.proxy = loc.proxy_pass
    req.upstream_addr = plan.upstream_name
    url = URL(plan.origin + plan.upstream_uri(req, quoted), encoded=True)
    watch = _Disconnect()
    body: _Body | None = None
    if _has_body(req) or (req.method not in _NO_BODY and req.protocol == "HTTP/2"):
        body = _Body(receive, watch)
    else:
        watch.start(receive)
    started = False
    t0 = time.monotonic()
    resp: aiohttp.ClientResponse | None = None
    try:
        try:
            resp = await session.request(
                req.method,
                url,
                headers=plan.headers.build(req),
                data=body.__aiter__() if body is not None else None,
                allow_redirects=False,
                timeout=plan.timeout,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _fail(exc, "reading response header from upstream") from None
        req.upstream_status = str(resp.status)
        headers = response_headers(resp.raw_headers)
        headers.append((b"server", server_header(loc.server_tokens)))
        req.status = resp.status
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        started = True
        sent = 0
        try:
            if req.method != "HEAD":
                async for chunk in resp.content.iter_any():
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            req.body_bytes_sent = sent
            err = _fail(exc, "reading upstream")
            log.error("upstream_read_failed", reason=err.reason, **_context(req, url))
            return  # the response stays incomplete: Hypercorn closes the connection
        req.body_bytes_sent = sent
        watch.active = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except UpstreamError as err:
        req.status = err.status
        event = "upstream_timed_out" if err.status == 504 else "upstream_failed"
        log.error(event, reason=err.reason, **_context(req, url))
        if not started:
            req.body_bytes_sent = await send_error(send, err.status, loc.server_tokens)
    except asyncio.CancelledError:
        if not watch.gone:
            raise
        # The client closed the connection first (nginx logs 499).
        req.status = 499
        log.info("client_closed", reason="client prematurely closed connection", **_context(req, url))
    finally:
        req.upstream_response_time = f"{time.monotonic() - t0:.3f}"
        watch.stop()
        if resp is not None:
            resp.release()
        if body is not None and not body.done and not watch.gone:
            await body.drain()


def _context(req: Request, url: URL) -> dict[str, str]:
    return {
        "client": req.remote_addr,
        "server": req.server.server_names[0] if req.server is not None and req.server.server_names else "",
        "request": f"{req.method} {req.request_uri} {req.protocol}",
        "upstream": str(url),
        "host": req.header_map.get("host", ""),
    }
