"""What every response pyngx starts, and every request body it takes, passes.

Owns: the response header filter (nginx's ngx_http_headers_filter_module:
``add_header``; the header filter's Date; ``keepalive_timeout``'s
``Connection: close`` for 0 and ``Keep-Alive: timeout=N``), applied by
``ResponseFilter``, the ASGI send wrapper app.py puts around each request,
so that proxied answers, ``return``, error pages and static files all get
it from one place; and ``client_max_body_size`` for a declared
Content-Length (``body_too_large``, ``send_too_large``).

Input: a ``Request`` whose ``location`` (or ``server``) is set by routing;
ASGI messages. Output: ASGI messages with the fields added.
Must not: route, proxy, or read request bodies (proxy/body.py counts the
bytes of bodies without a Content-Length).

Source: nginx docs: ngx_http_headers_module (add_header);
ngx_http_core_module (client_max_body_size, keepalive_timeout);
src/http/ngx_http_header_filter_module.c, ngx_http_core_module.c
(ngx_http_core_find_config_handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pyngx.config.model import LocationConf
from pyngx.request import Request
from pyngx.responses import http_date, send_error

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Statuses add_header applies to without ``always`` (nginx 1.13+).
ADD_HEADER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

#: Fields add_header replaces instead of adding (nginx: ngx_http_set_headers:
#: ETag and Last-Modified have their own slot in headers_out).
_REPLACED = frozenset({b"etag", b"last-modified"})


def _conf(req: Request) -> LocationConf | None:
    if req.location is not None:
        return req.location
    return req.server.conf if req.server is not None else None


def response_headers(req: Request | None, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The header list of a response as it goes to the client.

    Adds, in nginx's order of filters: the add_header fields of the
    request's location (for ``ADD_HEADER_STATUSES`` unless ``always``; a
    value that renders empty adds nothing; ETag and Last-Modified replace
    the field of that name), ``Connection: close`` when the location's
    keepalive_timeout is 0, ``Keep-Alive: timeout=N`` when it has a
    header_timeout, and Date unless the response has one (proxy_pass_header
    Date).

    Args:
        req: the request, or None before one could be built (a bad URI).
        status: the response status.
        headers: the fields so far; this list may be extended in place.

    Returns:
        The fields to send.
    """
    conf = _conf(req) if req is not None else None
    if conf is not None:
        assert req is not None
        if conf.add_header:
            plain = status in ADD_HEADER_STATUSES
            for add in conf.add_header:
                if not (plain or add.always):
                    continue
                value = add.value.render(req)
                if not value:
                    continue
                name = add.name.encode("latin-1")
                low = name.lower()
                if low in _REPLACED:
                    headers = [(n, v) for n, v in headers if n.lower() != low]
                headers.append((name, value.encode("latin-1", "replace")))
        timeout, header_timeout = conf.keepalive_timeout
        if timeout == 0:
            if req.protocol < "HTTP/2":  # HTTP/2 has no connection fields (RFC 9113 8.2.2)
                headers.append((b"connection", b"close"))
        elif header_timeout is not None and _keeps_alive(req):
            headers.append((b"keep-alive", b"timeout=%d" % header_timeout))
    for name, _ in headers:
        if name.lower() == b"date":
            return headers
    headers.append((b"date", http_date()))
    return headers


def _keeps_alive(req: Request) -> bool:
    """The client connection stays open after this response (HTTP/1.x only)."""
    conn = req.header_map.get("connection", "").lower()
    if req.protocol == "HTTP/1.1":
        return "close" not in conn
    return req.protocol == "HTTP/1.0" and "keep-alive" in conn


class ResponseFilter:
    """An ASGI send that runs ``response_headers`` on ``http.response.start``.

    app.py wraps each request's send once; ``req`` is set as soon as the
    request is built, and read when the response starts (after routing).
    Body messages pass with one type test.

    Attributes:
        err_status: once set (an error_page acted), every answer starts
            with this status and the request logs it (nginx: r->err_status
            in ngx_http_send_header); 0 leaves answers as they are.
    """

    __slots__ = ("send", "req", "err_status")

    def __init__(self, send: Send, req: Request | None = None) -> None:
        self.send = send
        self.req = req
        self.err_status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if self.err_status:
                status = self.err_status
                if self.req is not None:
                    self.req.status = status
            message = {**message, "status": status,
                       "headers": response_headers(self.req, status, list(message["headers"]))}
        await self.send(message)


def body_too_large(req: Request, loc: LocationConf) -> bool:
    """The request declares a Content-Length above the location's client_max_body_size.

    nginx checks this when it has found the location, before any handler,
    so ``return`` in that location answers 413 too (a server-level
    ``return`` runs before and does not). A body without Content-Length is
    counted while it streams (proxy/body.py).

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_find_config_handler.
    """
    limit = loc.client_max_body_size
    if not limit:
        return False
    length = req.header_map.get("content-length")
    return length is not None and length.isdigit() and int(length) > limit


async def send_too_large(req: Request, send: Send, log: Any, chunked: tuple[int, int] | None = None) -> None:
    """Answer 413 with nginx's page, closing the connection (the body is not read),
    and log nginx's error line.

    Args:
        chunked: for a body without Content-Length that grew past the limit,
            (bytes before the last chunk, its size); None for a declared one.
    """
    loc = req.location
    assert loc is not None
    req.status = 413
    if chunked is None:
        reason = f"client intended to send too large body: {req.header_map.get('content-length')} bytes"
    else:
        reason = f"client intended to send too large chunked body: {chunked[0]}+{chunked[1]} bytes"
    log.error("body_too_large", reason=reason, client=req.remote_addr, server=req.host,
              request=f"{req.method} {req.request_uri} {req.protocol}")
    close = [(b"connection", b"close")] if req.protocol < "HTTP/2" else []
    req.body_bytes_sent = await send_error(send, 413, loc.server_tokens, close)
