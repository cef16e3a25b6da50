"""HTTP proxying over aiohttp: one request to one upstream, streamed both ways.

Owns: ``proxy_http`` (choosing peers with the upstream's balancer and
trying the next one as proxy_next_upstream allows, sending the request
with its body, streaming the response down, proxy_read_timeout on the
body, proxy_intercept_errors, 502/504 and the $upstream_* log fields),
and finishing a request aborted by the client's side (``Watch``: 499,
413, 408, 504).

Input: a ``Request``, its location's ``ProxyPlan`` (proxy/plan.py), the
worker's ``Sessions`` (runtime.py), ASGI receive/send.
Must not: parse config, pick servers or locations, or create sessions;
the request body's limits and timers are proxy/body.py's, the failure
texts proxy/failures.py's.

Source: nginx docs: ngx_http_proxy_module (proxy_pass,
proxy_next_upstream, proxy_intercept_errors, proxy_*_timeout);
ngx_http_upstream.c for the error texts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from pyngx.errors import InvalidProxyURL, SpecialResponse, UpstreamError
from pyngx.filters import send_too_large
from pyngx.proxy.body import RequestBody, Watch, has_body, small_body_length
from pyngx.proxy.deadline import Deadline
from pyngx.proxy.failures import FAILURE_STATUSES, error_context, failure_kind, upstream_error
from pyngx.proxy.plan import ProxyPlan
from pyngx.request import Request
from pyngx.responses import send_error
from pyngx.upstream.peers import Peer

__all__ = ["NON_IDEMPOTENT", "proxy_http"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: nginx: "a request with a non-idempotent method (POST, LOCK, PATCH) is not
#: passed to the next server if the request has been sent to an upstream server".
NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})
#: What an aborted request answers (see Watch), when nothing was sent yet.
_ABORT_STATUS = {"too_large": 413, "body_timeout": 408, "send_timeout": 504}


def _body_deadline(resp: aiohttp.ClientResponse, plan: ProxyPlan) -> Deadline:
    """proxy_read_timeout for the rest of a response's body, on a lazily re-armed timer.

    aiohttp times every read from the upstream socket (sock_read) by
    cancelling and making an event-loop timer per read; that is kept for the
    response header, and the body's reads are timed here instead: the
    deadline runs while pyngx waits for the next piece, and stops while it
    hands a piece to a slow client (as nginx's read timer and aiohttp's
    sock_read do). When it expires the body ends with aiohttp's own
    SocketTimeoutError, so the caller's error path is the same. A deadline
    that never expires when the body has already arrived whole (its
    connection is back in the pool).

    Source: nginx docs: ngx_http_proxy_module, proxy_read_timeout ("between
    two successive read operations").
    """
    loop = asyncio.get_running_loop()
    conn = resp.connection
    proto = conn.protocol if conn is not None else None
    if proto is None or not plan.loc.proxy_read_timeout:
        return Deadline(loop, 0)
    proto.read_timeout = None  # set again for the connection's next request
    content = resp.content

    def expire() -> None:
        content.set_exception(aiohttp.SocketTimeoutError("Timeout on reading data from socket"))

    return Deadline(loop, plan.loc.proxy_read_timeout, expire)


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

    The request goes up with proxy_method's method; its body is the
    client's (proxy_pass_request_body on), proxy_set_body's text, or none
    (the client's body is then read and dropped). The answer's fields pass
    through the location's ResponseHeaderPlan.

    Sets ``req.status``, ``req.body_bytes_sent`` and the upstream fields
    ($upstream_addr etc., one value per try joined with ", ") for the log.

    Failures before the response starts become 502 (refused, reset,
    invalid answer, no live upstreams) or 504 (timeouts) with nginx's error
    page and an error-log line. A failure after it started aborts the
    connection, as nginx does. A client that goes away cancels the upstream
    request (499); a body over client_max_body_size gives 413; one whose
    reads stall past client_body_timeout closes the connection unanswered
    (408 in the log, as nginx); an upstream that does not take the body
    within proxy_send_timeout gives 504.

    Raises:
        SpecialResponse: before anything is sent, when the location's
            error_page answers the status: pyngx's own 502/504, or (with
            proxy_intercept_errors on) the upstream's status >= 300.

    Differs from nginx: request bodies over 64k (or chunked) are streamed,
    not buffered, so they are never replayed on another peer, and a limit
    or timeout that strikes while one streams cuts the upstream request.

    Source: nginx docs: ngx_http_proxy_module (proxy_pass,
    proxy_next_upstream); ngx_http_upstream.c for the error texts.
    """
    loc = plan.loc
    watch = Watch()
    reading: Deadline | None = None  # the body's proxy_read_timeout (_body_deadline)
    # The upstream URL as logged; the yarl URL is built only for a try.
    url = plan.origin or "http://localhost"
    started = False
    resp: aiohttp.ClientResponse | None = None
    peer: Peer | None = None
    body: RequestBody | None = None
    addrs: list[str] = []
    statuses: list[str] = []
    times: list[str] = []
    connects: list[float] | None = [] if plan.traced else None
    first = time.monotonic()
    sessions.in_flight += 1
    try:
        if plan.template is not None:
            try:
                pp, up = plan.resolve(req)
            except InvalidProxyURL as exc:
                log.error("proxy_pass_invalid", reason=str(exc), **error_context(req, url))
                req.status = 500
                req.body_bytes_sent = await send_error(send, 500, loc.server_tokens)
                return
            except UpstreamError as err:
                log.error("upstream_failed", reason=err.reason, **error_context(req, url))
                raise
            req.proxy = pp
            url = pp.origin
        else:
            assert plan.upstream is not None
            assert loc.proxy_pass is not None
            pp, up = loc.proxy_pass, plan.upstream
            req.proxy = pp
        uri = plan.upstream_uri(req, quoted)
        method = plan.method.render(req) if plan.method is not None else req.method

        # The body: the client's (replayable when small), proxy_set_body's, or none.
        data: bytes | AsyncIterator[bytes] | None = None
        length: str | None = ""
        client_body = has_body(req)
        if client_body:
            body = RequestBody(receive, watch, plan)
            if not plan.pass_body or plan.set_body is not None:
                await body.discard()  # as nginx reads it before it connects, and does not send it
            elif small_body_length(req):
                data = await body.read_all()
            else:
                data = body.__aiter__()  # streamed (see below: one per try)
        else:
            watch.start(receive)
        if plan.set_body is not None:
            data = plan.set_body.render(req).encode()
            length = str(len(data))
        headers = plan.headers.build(req, length)
        streamed = body is not None and data is not None and not isinstance(data, bytes)
        key = req.remote_addr if up.ip_hash else up.key.render(req) if up.key is not None else ""
        tried: set[int] = set()
        last: UpstreamError | None = None

        def may_retry(kind: str, sent: bool) -> bool:
            if kind not in plan.next_upstream or watch.gone:
                return False
            if streamed and body is not None and body.started:
                return False
            if sent and method in NON_IDEMPOTENT and "non_idempotent" not in plan.next_upstream:
                return False
            # nginx's peer.tries: one per peer (backups included), capped by
            # proxy_next_upstream_tries; the last try's answer goes to the client.
            total = len(up.group.primary) + len(up.group.backup)
            if len(tried) >= (min(total, plan.tries) if plan.tries else total):
                return False
            return not (plan.next_timeout and time.monotonic() - first >= plan.next_timeout)

        server_hostname = None
        if plan.sni:
            name = plan.ssl_name.render(req) if plan.ssl_name is not None else pp.proxy_host
            server_hostname = name.rsplit(":", 1)[0] if not name.endswith("]") else name
        scheme = req.proxy.scheme if req.proxy is not None else plan.scheme
        while True:
            now = time.monotonic()
            peer = up.balancer.select(up.group, key, tried, now)
            if peer is None:
                if last is None or not addrs:
                    last = UpstreamError(502, "no live upstreams while connecting to upstream")
                    addrs.append(up.group.name)
                    statuses.append("502")
                    times.append("0.000")
                    log.error("upstream_failed", reason=last.reason, **error_context(req, url))
                raise last
            tried.add(id(peer))
            url = f"{scheme}://localhost{uri}" if peer.unix else f"{scheme}://{peer.name}{uri}"
            t0 = time.monotonic()
            try:
                resp = await sessions.get(plan, peer).request(
                    method,
                    URL(url, encoded=True),
                    headers=headers,
                    # a fresh iterator per try: one a failed try began is done for
                    data=body.__aiter__() if streamed and body is not None else data,
                    allow_redirects=False,
                    timeout=plan.timeout,
                    trace_request_ctx=connects,
                    ssl=plan.ssl,
                    server_hostname=server_hostname,
                    read_bufsize=sessions.read_bufsize(),
                )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                failure = upstream_error(exc, "reading response header from upstream")
                sent = not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
                addrs.append(peer.name)
                statuses.append(str(failure.status))
                times.append(f"{time.monotonic() - t0:.3f}")
                disabled = peer.finished(True)
                peer = None
                log.error("upstream_timed_out" if failure.status == 504 else "upstream_failed",
                          reason=failure.reason, **error_context(req, url))
                if disabled:
                    log.warning("upstream_disabled", reason="upstream server temporarily disabled",
                                **error_context(req, url))
                last = failure
                if may_retry(failure_kind(failure), sent):
                    continue
                raise failure from None
            status = resp.status
            if status in plan.retry_statuses and may_retry(f"http_{status}", True):
                addrs.append(peer.name)
                statuses.append(str(status))
                times.append(f"{time.monotonic() - t0:.3f}")
                peer.finished(status in FAILURE_STATUSES)
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
        if status in plan.intercept:
            # proxy_intercept_errors: the answer is dropped and error_page runs.
            kept = [(n, v) for n, v in resp.raw_headers if n.lower() == b"www-authenticate"] if status == 401 else []
            times.append(f"{time.monotonic() - t0:.3f}")
            req.status = status
            raise SpecialResponse(status, kept)
        out_headers = plan.response.filter(resp.raw_headers, req)
        if not (plan.response.passes_server and any(n.lower() == b"server" for n, _ in out_headers)):
            out_headers.append((b"server", plan.server))
        req.status = status
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        started = True
        sent_bytes = 0
        tail = b""
        try:
            if req.method != "HEAD":
                content = resp.content
                reading = _body_deadline(resp, plan)
                while True:
                    reading.arm()
                    chunk = await content.readany()
                    reading.disarm()
                    if not chunk:
                        break
                    sent_bytes += len(chunk)
                    if content.at_eof():
                        tail = chunk  # goes out with the end of the response: one send less
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            req.body_bytes_sent = sent_bytes
            failure = upstream_error(exc, "reading upstream")
            log.error("upstream_read_failed", reason=failure.reason, **error_context(req, url))
            return  # the response stays incomplete: Hypercorn closes the connection
        req.body_bytes_sent = sent_bytes
        watch.active = False
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        times.append(f"{time.monotonic() - t0:.3f}")
    except UpstreamError as err:
        req.status = err.status if err.status in (502, 504) else 502
        if not started:
            if req.status in plan.error_pages:
                raise SpecialResponse(req.status) from None
            req.body_bytes_sent = await send_error(send, req.status, loc.server_tokens)
    except asyncio.CancelledError:
        reason = watch.reason
        if reason is None:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        if peer is not None and resp is None and reason == "send_timeout":
            addrs.append(peer.name)
            statuses.append("504")
            peer.finished(True)
            peer = None
        await _aborted(req, plan, reason, started, send, log, url, body)
    finally:
        sessions.in_flight -= 1
        if not req.upstream_addr:
            req.upstream_addr = ", ".join(addrs)
            req.upstream_status = ", ".join(statuses)
        req.upstream_response_time = ", ".join(times) if times else f"{time.monotonic() - first:.3f}"
        if connects:
            req.upstream_connect_time = ", ".join(f"{t:.3f}" for t in connects)
        if peer is not None:
            peer.finished(False)
        watch.stop()
        if reading is not None:
            reading.cancel()
        if resp is not None:
            resp.release()
        if body is not None:
            body.stop()  # an iterator aiohttp left suspended must not time out later
            if not body.done and not watch.gone:
                await body.drain()


async def _aborted(
    req: Request, plan: ProxyPlan, reason: str, started: bool, send: Send, log: Any, url: str, body: RequestBody | None
) -> None:
    """Finish a request stopped by ``Watch`` (see its reasons); a send
    timeout counts against the peer (max_fails), as nginx's timeout does."""
    ctx = error_context(req, url)
    if reason == "gone":
        # The client closed the connection first (nginx logs 499).
        req.status = 499
        log.info("client_closed", reason="client prematurely closed connection", **ctx)
        return
    status = _ABORT_STATUS[reason]
    if reason == "too_large":
        if not started:
            size = (body.count - body.last, body.last) if body is not None else (0, 0)
            await send_too_large(req, send, log, chunked=size)
        return
    req.status = status
    if reason == "body_timeout":
        # nginx closes the connection unanswered (ngx_http_terminate_request) and logs 408.
        log.info("client_timed_out", reason="client timed out (110: Connection timed out) while reading client "
                 "request body", **ctx)
        if not started:
            raise SpecialResponse(status, close=True)
        return
    log.error("upstream_timed_out", reason="upstream timed out (110: Connection timed out) while sending "
              "request to upstream", **ctx)
    if not started:
        if status in plan.error_pages:
            raise SpecialResponse(status)
        req.body_bytes_sent = await send_error(send, status, plan.loc.server_tokens)
