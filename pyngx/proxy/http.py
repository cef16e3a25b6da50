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
from pyngx.upstream.groups import Upstream
from pyngx.upstream.peers import Peer
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
        origin: "scheme://host:port" of the proxy_pass URL as written.
        upstream_name: the proxy_pass address as logged ("127.0.0.1:8000").
        upstream: the peer group and balancer.
        next_upstream, tries, next_timeout: proxy_next_upstream and its limits.
        timeout: aiohttp timeouts from proxy_connect_timeout and proxy_read_timeout.
    """

    __slots__ = ("loc", "headers", "origin", "upstream_name", "timeout", "strip", "http10", "upstream", "scheme",
                 "next_upstream", "tries", "next_timeout", "traced")

    def __init__(self, loc: LocationConf, upstream: Upstream | None = None) -> None:
        pp = loc.proxy_pass
        assert pp is not None
        self.loc = loc
        #: The peers and balancer (None only for plans made without a Runtime).
        self.upstream = upstream
        self.scheme = pp.scheme
        self.next_upstream = loc.proxy_next_upstream
        self.tries = loc.proxy_next_upstream_tries
        self.next_timeout = loc.proxy_next_upstream_timeout
        #: time connections for $upstream_connect_time (set by the Runtime).
        self.traced = False
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

    __slots__ = ("receive", "watch", "done", "started")

    def __init__(self, receive: Receive, watch: _Disconnect) -> None:
        self.receive = receive
        self.watch = watch
        self.done = False
        #: A chunk went up: the body can no longer be sent to another peer.
        self.started = False

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
                self.started = True
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


#: nginx: "a request with a non-idempotent method (POST, LOCK, PATCH) is not
#: passed to the next server if the request has been sent to an upstream server".
NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})
#: Request bodies up to this many bytes (by Content-Length) are read before
#: the first try, so that another peer can be tried with them.
REPLAY_BODY_MAX = 64 * 1024
# A status that proxy_next_upstream http_XXX names counts as a peer failure
# only for these codes (http_403 and http_404 never do).
_FAILURE_STATUSES = frozenset({500, 502, 503, 504, 429})


def _kind(err: UpstreamError) -> str:
    if err.status == 504:
        return "timeout"
    return "invalid_header" if "invalid header" in err.reason else "error"


async def _read_small_body(req: Request, receive: Receive, watch: _Disconnect) -> bytes | None:
    """The whole body when its Content-Length is small enough to replay, else None."""
    length = req.header_map.get("content-length")
    if length is None or "transfer-encoding" in req.header_map or not length.isdigit():
        return None
    if int(length) > REPLAY_BODY_MAX:
        return None
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            watch.disconnected()
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            break
    watch.start(receive)
    return b"".join(chunks)


async def proxy_http(
    req: Request,
    plan: ProxyPlan,
    sessions: Any,
    receive: Receive,
    send: Send,
    quoted: bool,
    log: Any,
) -> None:
    """Proxy ``req`` to a peer of the location's upstream and stream the answer back.

    A peer is chosen by the upstream's balancer. A failed try (error,
    timeout, invalid header, or a status named by proxy_next_upstream) is
    passed to the next peer while proxy_next_upstream allows it:
    non-idempotent requests (POST, LOCK, PATCH) only when nothing was sent
    or ``non_idempotent`` is set, within proxy_next_upstream_tries and
    proxy_next_upstream_timeout, and never once a streamed request body has
    begun to go up. Failures count towards max_fails of the peer.

    Sets ``req.status``, ``req.body_bytes_sent`` and the upstream fields
    ($upstream_addr etc., one value per try joined with ", ") for the log.

    Failures before the response starts become 502 (refused, reset,
    invalid answer, no live upstreams) or 504 (timeouts) with nginx's error
    page and an error-log line. A failure after it started aborts the
    connection, as nginx does. A client that goes away cancels the upstream
    request (499).

    Differs from nginx: request bodies over 64k (or chunked) are streamed,
    not buffered, so they are never replayed on another peer.

    Source: nginx docs: ngx_http_proxy_module (proxy_pass,
    proxy_next_upstream); ngx_http_upstream.c for the error texts.
    """
    loc = plan.loc
    up = plan.upstream
    assert up is not None
    req.proxy = loc.proxy_pass
    uri = plan.upstream_uri(req, quoted)
    watch = _Disconnect()
    small: bytes | None = None
    body: _Body | None = None
    if _has_body(req) or (req.method not in _NO_BODY and req.protocol == "HTTP/2"):
        small = await _read_small_body(req, receive, watch)
        if small is None:
            body = _Body(receive, watch)
    else:
        watch.start(receive)
    key = req.remote_addr if up.ip_hash else up.key.render(req) if up.key is not None else ""
    headers = plan.headers.build(req)
    tried: set[int] = set()
    addrs: list[str] = []
    statuses: list[str] = []
    times: list[str] = []
    connects: list[float] | None = [] if plan.traced else None
    first = time.monotonic()
    started = False
    last: UpstreamError | None = None
    resp: aiohttp.ClientResponse | None = None
    peer: Peer | None = None
    url = URL(plan.origin + uri, encoded=True)

    def may_retry(kind: str, sent: bool) -> bool:
        if kind not in plan.next_upstream or watch.gone:
            return False
        if body is not None and body.started:
            return False
        if sent and req.method in NON_IDEMPOTENT and "non_idempotent" not in plan.next_upstream:
            return False
        # nginx's peer.tries: one per peer (backups included), capped by
        # proxy_next_upstream_tries; the last try's answer goes to the client.
        total = len(up.group.primary) + len(up.group.backup)
        if len(tried) >= (min(total, plan.tries) if plan.tries else total):
            return False
        return not (plan.next_timeout and time.monotonic() - first >= plan.next_timeout)

    try:
        while True:
            now = time.monotonic()
            peer = up.balancer.select(up.group, key, tried, now)
            if peer is None:
                if last is None or not addrs:
                    last = UpstreamError(502, "no live upstreams while connecting to upstream")
                    addrs.append(up.group.name)
                    statuses.append("502")
                    times.append("0.000")
                    log.error("upstream_failed", reason=last.reason, **_context(req, url))
                raise last
            tried.add(id(peer))
            url = URL(f"{plan.scheme}://localhost{uri}" if peer.unix else f"{plan.scheme}://{peer.name}{uri}",
                      encoded=True)
            t0 = time.monotonic()
            try:
                resp = await sessions.get(plan, peer).request(
                    req.method,
                    url,
                    headers=headers,
                    data=small if small is not None else body.__aiter__() if body is not None else None,
                    allow_redirects=False,
                    timeout=plan.timeout,
                    trace_request_ctx=connects,
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                err = _fail(exc, "reading response header from upstream")
                sent = not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
                addrs.append(peer.name)
                statuses.append(str(err.status))
                times.append(f"{time.monotonic() - t0:.3f}")
                disabled = peer.finished(True)
                peer = None
                log.error("upstream_timed_out" if err.status == 504 else "upstream_failed",
                          reason=err.reason, **_context(req, url))
                if disabled:
                    log.warning("upstream_disabled", reason="upstream server temporarily disabled", **_context(req, url))
                last = err
                if may_retry(_kind(err), sent):
                    continue
                raise err from None
            status = resp.status
            if f"http_{status}" in plan.next_upstream and may_retry(f"http_{status}", True):
                addrs.append(peer.name)
                statuses.append(str(status))
                times.append(f"{time.monotonic() - t0:.3f}")
                peer.finished(status in _FAILURE_STATUSES)
                peer = None
                resp.release()
                resp = None
                last = UpstreamError(status, f"upstream answered {status}")
                continue
            break
        addrs.append(peer.name)
        statuses.append(str(status))
        req.upstream_addr = ", ".join(addrs)
        req.upstream_status = ", ".join(statuses)
        out_headers = response_headers(resp.raw_headers)
        out_headers.append((b"server", server_header(loc.server_tokens)))
        req.status = status
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        started = True
        sent_bytes = 0
        try:
            if req.method != "HEAD":
                async for chunk in resp.content.iter_any():
                    sent_bytes += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            req.body_bytes_sent = sent_bytes
            err = _fail(exc, "reading upstream")
            log.error("upstream_read_failed", reason=err.reason, **_context(req, url))
            return  # the response stays incomplete: Hypercorn closes the connection
        req.body_bytes_sent = sent_bytes
        watch.active = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        times.append(f"{time.monotonic() - t0:.3f}")
    except UpstreamError as err:
        req.status = err.status if err.status in (502, 504) else 502
        if not started:
            req.body_bytes_sent = await send_error(send, req.status, loc.server_tokens)
    except asyncio.CancelledError:
        if not watch.gone:
            raise
        # The client closed the connection first (nginx logs 499).
        req.status = 499
        log.info("client_closed", reason="client prematurely closed connection", **_context(req, url))
    finally:
        if not req.upstream_addr:
            req.upstream_addr = ", ".join(addrs)
            req.upstream_status = ", ".join(statuses)
        req.upstream_response_time = ", ".join(times) if times else f"{time.monotonic() - first:.3f}"
        if connects:
            req.upstream_connect_time = ", ".join(f"{t:.3f}" for t in connects)
        if peer is not None:
            peer.finished(False)
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
