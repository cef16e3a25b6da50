"""HTTP proxying over aiohttp: one request to one upstream, streamed both ways.

Owns: ``ProxyPlan`` (a location's proxy settings compiled at load time:
the request and response header rules, URL parts or the URL template of
a proxy_pass with variables, method and body rules, timeouts, TLS to the
upstream), the upstream URI rule of proxy_pass, streaming the request
body up (counted against client_max_body_size, each read timed by
client_body_timeout and each write by proxy_send_timeout) and the
response down, proxy_intercept_errors, and turning upstream failures into
502/504 with nginx's error-log wording.

Input: a ``Request``, its location's ``ProxyPlan``, the worker's
``aiohttp.ClientSession``, ASGI receive/send.
Must not: parse config, pick servers or locations, or create sessions.

Source: nginx docs: ngx_http_proxy_module (proxy_pass, proxy_set_header,
proxy_method, proxy_set_body, proxy_pass_request_body,
proxy_intercept_errors, proxy_*_timeout, proxy_ssl_*);
ngx_http_core_module (client_max_body_size, client_body_timeout).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from pyngx.config.model import LocationConf
from pyngx.config.values import ProxyPass, parse_proxy_pass
from pyngx.errors import ConfigError, ConfigValueError, SpecialResponse, UpstreamError
from pyngx.filters import send_too_large
from pyngx.proxy.deadline import Deadline
from pyngx.proxy.headers import RequestHeaderPlan, ResponseHeaderPlan, default_redirect
from pyngx.request import Request
from pyngx.responses import send_error, server_header
from pyngx.upstream.groups import Upstream, Upstreams
from pyngx.upstream.peers import Peer
from pyngx.variables import Template

__all__ = ["ProxyClientRequest", "ProxyPlan", "escape_uri", "proxy_http"]

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


def error_page_codes(loc: LocationConf) -> frozenset[int]:
    """The statuses the location's ``error_page`` answers (pyngx.rewrite.ErrorPage.code)."""
    return frozenset(page.code for page in loc.error_page)


def _upstream_tls(loc: LocationConf) -> tuple[ssl.SSLContext | bool, Template | None, bool]:
    """(ssl argument for aiohttp, proxy_ssl_name template, send SNI) of a location.

    proxy_ssl_verify off (nginx's default) takes any certificate; on checks
    the chain against proxy_ssl_trusted_certificate and the name against
    proxy_ssl_name.

    Raises:
        ConfigError: ``no proxy_ssl_trusted_certificate for proxy_ssl_verify``;
            the certificate file cannot be read.

    Differs from nginx: with proxy_ssl_verify on, the name checked is also
    sent as SNI (Python's ssl ties the two together).
    """
    name = loc.proxy_ssl_name
    if not loc.proxy_ssl_verify:
        return False, name, loc.proxy_ssl_server_name
    ref = loc.proxy_ssl_trusted_certificate
    if ref is None:
        raise ConfigError("no proxy_ssl_trusted_certificate for proxy_ssl_verify")
    path = Path(ref.path)
    if not path.is_absolute():
        path = Path(ref.file).parent / path
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        ctx.load_verify_locations(str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f'SSL_CTX_load_verify_locations("{path}") failed ({exc})', ref.file, ref.line) from None
    return ctx, name, True


class ProxyPlan:
    """One location's proxy_pass, compiled once at load time.

    Attributes:
        loc: the location.
        headers: the upstream request header rule.
        response: the response header rule (hide, pass, redirect and cookie rewrites).
        origin: "scheme://host:port" of the proxy_pass URL as written ("" with variables).
        upstream_name: the proxy_pass address as logged ("127.0.0.1:8000").
        upstream: the peer group and balancer (None with variables).
        upstreams: every upstream of the config, to find one per request
            for a proxy_pass with variables.
        template: the URL template of a proxy_pass with variables, else None.
        next_upstream, tries, next_timeout: proxy_next_upstream and its limits.
        retry_statuses: the statuses proxy_next_upstream names (http_XXX).
        timeout: aiohttp timeouts from proxy_connect_timeout and proxy_read_timeout.
        send_timeout: proxy_send_timeout, per write of a streamed body (None: off).
        body_timeout: client_body_timeout, per read of the client's body (None: off).
        max_body: client_max_body_size in bytes (0: no limit).
        method: proxy_method, or None for the client's.
        set_body: proxy_set_body, or None.
        pass_body: proxy_pass_request_body.
        error_pages: statuses the location's error_page answers.
        intercept: upstream statuses handed to error_page (proxy_intercept_errors).
        ssl, ssl_name, sni: TLS to an https upstream.
    """

    __slots__ = ("loc", "headers", "origin", "upstream_name", "timeout", "strip", "http10", "upstream", "scheme",
                 "next_upstream", "tries", "next_timeout", "traced", "response", "upstreams", "template",
                 "send_timeout", "body_timeout", "max_body", "method", "set_body", "pass_body", "error_pages",
                 "intercept", "ssl", "ssl_name", "sni", "server", "retry_statuses")

    def __init__(self, loc: LocationConf, upstream: Upstream | None = None, upstreams: Upstreams | None = None) -> None:
        pp = loc.proxy_pass
        assert pp is not None
        self.loc = loc
        #: The peers and balancer (None for a URL with variables, or a plan made without a Runtime).
        self.upstream = upstream
        self.upstreams = upstreams
        self.template = pp.template
        self.scheme = pp.scheme
        self.next_upstream = loc.proxy_next_upstream
        #: The statuses proxy_next_upstream names (http_500 ...), as numbers.
        self.retry_statuses = frozenset(int(k[5:]) for k in self.next_upstream if k.startswith("http_"))
        self.tries = loc.proxy_next_upstream_tries
        self.next_timeout = loc.proxy_next_upstream_timeout
        #: time connections for $upstream_connect_time (set by the Runtime).
        self.traced = False
        self.headers = RequestHeaderPlan(loc.proxy_set_header, loc.proxy_http_version, loc.proxy_pass_request_headers)
        self.response = ResponseHeaderPlan(loc, default_redirect(loc))
        if pp.template is not None:
            self.origin = self.upstream_name = ""
        else:
            self.origin = pp.origin
            self.upstream_name = (f"unix:{pp.host}" if pp.unix else pp.proxy_host if ":" in pp.proxy_host
                                  else f"{pp.host}:{pp.port}")
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=loc.proxy_connect_timeout, sock_read=loc.proxy_read_timeout
        )
        self.send_timeout = loc.proxy_send_timeout or None
        self.body_timeout = loc.client_body_timeout or None
        self.max_body = loc.client_max_body_size
        self.method = loc.proxy_method
        self.set_body = loc.proxy_set_body
        self.pass_body = loc.proxy_pass_request_body
        self.error_pages = error_page_codes(loc)
        self.intercept = (frozenset(c for c in self.error_pages if c >= 300) if loc.proxy_intercept_errors
                          else frozenset())
        self.ssl, self.ssl_name, self.sni = _upstream_tls(loc) if pp.scheme == "https" else (False, None, False)
        #: The Server field the answers get (server_tokens), unless proxy_pass_header Server passes the upstream's.
        self.server = server_header(loc.server_tokens)
        # With a URI part, this many characters of the location prefix are replaced.
        self.strip = len(loc.name) if pp.uri is not None and loc.modifier in ("", "^~", "=") else 0
        #: proxy_http_version 1.0: the request goes on the runtime's HTTP/1.0 session.
        self.http10 = loc.proxy_http_version == "1.0"

    def upstream_uri(self, req: Request, quoted: bool) -> str:
        """The request target sent upstream (nginx's proxy_pass URI rule).

        Without a URI part in proxy_pass, the client's URI goes unchanged.
        With one, the part of the normalized URI that matched the location
        prefix is replaced by it, and the rest is re-escaped. With variables
        (see ``resolve``), a URI part replaces the whole URI.

        Args:
            req: the request (``req.proxy`` is the URL in use).
            quoted: the client's path had %-escapes (nginx: r->quoted_uri).
        """
        pp = req.proxy if self.template is not None and req.proxy is not None else self.loc.proxy_pass
        assert pp is not None
        if pp.uri is None and req.valid_unparsed_uri:
            return req.request_uri
        if self.template is not None and pp.uri is not None:
            return pp.uri
        # After a rewrite, an internal redirect or "set $args" the target is
        # rebuilt from $uri and $args; after "rewrite ... break" the URI part
        # is not used (nginx: r->valid_unparsed_uri, r->valid_location, r->internal).
        located = pp.uri is not None and req.valid_location
        tail = req.uri[self.strip :] if located else req.uri
        uri = (pp.uri if located and pp.uri is not None else "") + (
            escape_uri(tail) if quoted or req.internal else tail)
        return f"{uri}?{req.args}" if req.args else uri

    def resolve(self, req: Request) -> tuple[ProxyPass, Upstream]:
        """Evaluate a proxy_pass with variables and find its upstream.

        Returns:
            (the URL, split as proxy_pass would split it; its upstream).

        Raises:
            ClientFault: the URL is invalid (nginx answers 500).
            UpstreamError: 502 ``no resolver defined to resolve HOST`` for a
                host name that is neither an upstream nor an address.

        Differs from nginx: none intended; pyngx has no ``resolver``, as an
        nginx without one.

        Source: nginx ngx_http_proxy_eval; ngx_http_upstream_init_request.
        """
        assert self.template is not None and self.upstreams is not None
        url = self.template.render(req)
        low = url[:8].lower()
        if not ((low.startswith("http://") and len(url) > 7) or (low.startswith("https://") and len(url) > 8)):
            raise _InvalidURL(f'invalid URL prefix in "{url}"')
        try:
            pp = parse_proxy_pass(url)
        except ConfigValueError as exc:
            raise _InvalidURL(exc.message) from None
        up = self.upstreams.for_request(pp)
        if up is None:
            raise UpstreamError(502, f"no resolver defined to resolve {pp.host}")
        return pp, up


class ProxyClientRequest(aiohttp.ClientRequest):
    """aiohttp's request, minus the ``Content-Length: 0`` it adds to a POST or
    PUT without a body: the upstream gets exactly the framing fields pyngx
    sends (nginx sends none for a request without a body)."""

    def update_body_from_data(self, body: Any, *args: Any, **kwargs: Any) -> None:
        had = aiohttp.hdrs.CONTENT_LENGTH in self.headers
        super().update_body_from_data(body, *args, **kwargs)
        if body is None and not had:
            self.headers.pop(aiohttp.hdrs.CONTENT_LENGTH, None)


class _InvalidURL(Exception):
    """A proxy_pass URL with variables evaluated to something invalid (500)."""


async def _forever() -> None:
    """Wait until cancelled (an aborted body must neither end nor fail the upload)."""
    await asyncio.get_running_loop().create_future()


#: Seconds an exchange must last before a task watches for the client leaving.
WATCH_DELAY = 0.25


class _Sweep:
    """The event loop's one timer for every ``_Watch`` waiting out WATCH_DELAY.

    A timer handle per request (made, then cancelled when the answer comes
    within the delay, as most do) costs more than the rest of the watch;
    here a request costs a dict insert and delete, and one timer fires
    when the oldest waiting watch is due.
    """

    _current: _Sweep | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: Watches by the loop time they began waiting, oldest first.
        self.waiting: dict[_Watch, float] = {}
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def get(cls) -> _Sweep:
        """The running loop's sweep."""
        loop = asyncio.get_running_loop()
        sweep = cls._current
        if sweep is None or sweep.loop is not loop:
            sweep = cls._current = cls(loop)
        return sweep

    def add(self, watch: _Watch) -> None:
        self.waiting[watch] = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_later(WATCH_DELAY, self._run)

    def discard(self, watch: _Watch) -> None:
        self.waiting.pop(watch, None)

    def _run(self) -> None:
        self.timer = None
        due = self.loop.time() - WATCH_DELAY
        waiting = self.waiting
        # One pass over a copy: the dict's first entry found anew after each
        # deletion would be a walk past the deleted slots every time.
        for watch, since in list(waiting.items()):
            if since > due:
                self.timer = self.loop.call_at(since + WATCH_DELAY, self._run)
                return
            del waiting[watch]
            watch.spawn()


class _Watch:
    """Why the proxy task was stopped from outside it.

    ``reason`` is None while all is well, else "gone" (the client went
    away: 499), "too_large" (client_max_body_size: 413), "body_timeout"
    (client_body_timeout: 408) or "send_timeout" (proxy_send_timeout: 504).
    The first reason wins; ``abort`` cancels the proxy task, so that
    whatever it awaits (the upstream's answer, a send) stops at once.
    """

    __slots__ = ("task", "watcher", "receive", "sweep", "reason", "active")
    sweep: _Sweep  # set by start()

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        self.watcher: asyncio.Task[None] | None = None
        #: The request's receive while the sweep holds this watch (not yet spawned).
        self.receive: Receive | None = None
        self.reason: str | None = None
        #: False once the last body byte is handed to the server: a
        #: disconnect after that is the normal end of the exchange.
        self.active = True

    @property
    def gone(self) -> bool:
        return self.reason is not None

    def start(self, receive: Receive) -> None:
        """Watch for the client going away once its body has been read.

        The watching task starts only if the exchange lasts WATCH_DELAY:
        most answers come sooner, and a task per request is the largest
        single cost pyngx adds to a small request. A client that leaves
        earlier is noticed when the delay ends.
        """
        if self.watcher is None and self.receive is None:
            self.receive = receive
            self.sweep = _Sweep.get()
            self.sweep.add(self)

    def spawn(self) -> None:
        """Start the watching task (the sweep found the exchange WATCH_DELAY old)."""
        receive, self.receive = self.receive, None
        if receive is not None and self.active and self.reason is None:
            self.watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.abort("gone")

    def abort(self, reason: str) -> None:
        if self.active and self.reason is None and self.task is not None:
            self.reason = reason
            self.task.cancel()

    def stop(self) -> None:
        if self.receive is not None:
            self.receive = None
            self.sweep.discard(self)
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()


class _Body:
    """The client's request body as an async iterator for aiohttp.

    Each read waits at most client_body_timeout; the bytes are counted
    against client_max_body_size; each chunk handed up must be taken by the
    upstream within proxy_send_timeout. On any of these the proxy task is
    aborted (``_Watch``) and the iterator never ends, so that the upstream
    sees a cut request, never a shorter complete one.

    Each timeout is a ``Deadline`` (armed per wait, its timer re-armed only
    when it fires), not a timer per chunk.

    ``done`` turns true after the last chunk; ``drain()`` reads and drops
    what is left when the upstream answered before taking it all (nginx
    discards the rest of the body the same way), so that the connection is
    never left with a body nobody reads.
    """

    __slots__ = ("receive", "watch", "done", "started", "count", "plan", "last", "deadlines")

    def __init__(self, receive: Receive, watch: _Watch, plan: ProxyPlan) -> None:
        self.receive = receive
        self.watch = watch
        self.plan = plan
        self.done = False
        #: A chunk went up: the body can no longer be sent to another peer.
        self.started = False
        #: Bytes read so far, and the size of the last chunk.
        self.count = 0
        self.last = 0
        #: The timers of the iterators made so far (``stop`` cancels them).
        self.deadlines: list[Deadline] = []

    def stop(self) -> None:
        """No more waits: cancel the timers."""
        for deadline in self.deadlines:
            deadline.cancel()

    async def chunks(self, send_timed: bool = False) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (limits applied).

        Args:
            send_timed: time each chunk's hand-over with proxy_send_timeout
                (the iterator that feeds the upstream).
        """
        limit = self.plan.max_body
        loop = asyncio.get_running_loop()
        watch = self.watch
        reading = Deadline(loop, self.plan.body_timeout or 0, lambda: watch.abort("body_timeout"))
        sending = Deadline(loop, (self.plan.send_timeout or 0) if send_timed else 0,
                           lambda: watch.abort("send_timeout"))
        self.deadlines += (reading, sending)
        try:
            while not self.done:
                reading.arm()
                msg = await self.receive()
                reading.disarm()
                if msg["type"] == "http.disconnect":
                    self.done = True
                    self.watch.abort("gone")
                    await _forever()
                chunk = msg.get("body", b"")
                self.count += len(chunk)
                self.last = len(chunk)
                if limit and self.count > limit:
                    self.watch.abort("too_large")
                    await _forever()
                if not msg.get("more_body", False):
                    self.done = True
                    self.watch.start(self.receive)
                if chunk:
                    if send_timed:
                        self.started = True
                        sending.arm()
                    yield chunk  # resumes when the upstream connection took the chunk
                    sending.disarm()
        finally:
            self.stop()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks(send_timed=True)

    async def read_all(self) -> bytes:
        """Read the whole body (limits applied)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def discard(self) -> None:
        """Read the whole body and drop it (limits applied)."""
        async for _ in self.chunks():
            pass

    async def drain(self) -> None:
        while not self.done:
            msg = await self.receive()
            if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
                self.done = True


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
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UpstreamError(502, f"upstream SSL certificate verify error: ({exc.certificate_error}) "
                                  "while SSL handshaking to upstream")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return UpstreamError(502, f"SSL_do_handshake() failed ({exc.os_error}) while SSL handshaking to upstream")
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
#: What an aborted request answers (see _Watch), when nothing was sent yet.
_ABORT_STATUS = {"too_large": 413, "body_timeout": 408, "send_timeout": 504}


def _kind(err: UpstreamError) -> str:
    if err.status == 504:
        return "timeout"
    return "invalid_header" if "invalid header" in err.reason else "error"


def _small_body_length(req: Request) -> bool:
    """The body has a Content-Length small enough to read first and replay."""
    length = req.header_map.get("content-length")
    if length is None or "transfer-encoding" in req.header_map or not length.isdigit():
        return False
    return int(length) <= REPLAY_BODY_MAX


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
    watch = _Watch()
    reading: Deadline | None = None  # the body's proxy_read_timeout (_body_deadline)
    # The upstream URL as logged; the yarl URL is built only for a try.
    url = plan.origin or "http://localhost"
    started = False
    resp: aiohttp.ClientResponse | None = None
    peer: Peer | None = None
    body: _Body | None = None
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
            except _InvalidURL as exc:
                log.error("proxy_pass_invalid", reason=str(exc), **_context(req, url))
                req.status = 500
                req.body_bytes_sent = await send_error(send, 500, loc.server_tokens)
                return
            except UpstreamError as err:
                log.error("upstream_failed", reason=err.reason, **_context(req, url))
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
        client_body = _has_body(req) or (req.method not in _NO_BODY and req.protocol == "HTTP/2.0")
        if client_body:
            body = _Body(receive, watch, plan)
            if not plan.pass_body or plan.set_body is not None:
                await body.discard()  # as nginx reads it before it connects, and does not send it
            elif _small_body_length(req):
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
                    log.error("upstream_failed", reason=last.reason, **_context(req, url))
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
                failure = _fail(exc, "reading response header from upstream")
                sent = not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
                addrs.append(peer.name)
                statuses.append(str(failure.status))
                times.append(f"{time.monotonic() - t0:.3f}")
                disabled = peer.finished(True)
                peer = None
                log.error("upstream_timed_out" if failure.status == 504 else "upstream_failed",
                          reason=failure.reason, **_context(req, url))
                if disabled:
                    log.warning("upstream_disabled", reason="upstream server temporarily disabled", **_context(req, url))
                last = failure
                if may_retry(_kind(failure), sent):
                    continue
                raise failure from None
            status = resp.status
            if status in plan.retry_statuses and may_retry(f"http_{status}", True):
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
            failure = _fail(exc, "reading upstream")
            log.error("upstream_read_failed", reason=failure.reason, **_context(req, url))
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
    req: Request, plan: ProxyPlan, reason: str, started: bool, send: Send, log: Any, url: str, body: _Body | None
) -> None:
    """Finish a request stopped by ``_Watch`` (see its reasons); a send
    timeout counts against the peer (max_fails), as nginx's timeout does."""
    ctx = _context(req, url)
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


def _context(req: Request, url: str | URL) -> dict[str, str]:
    return {
        "client": req.remote_addr,
        "server": req.server.server_names[0] if req.server is not None and req.server.server_names else "",
        "request": f"{req.method} {req.request_uri} {req.protocol}",
        "upstream": str(url),
        "host": req.header_map.get("host", ""),
    }
