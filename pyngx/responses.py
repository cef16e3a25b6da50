"""Responses pyngx makes itself: nginx's error pages, redirects, ``return``.

Owns: ``STATUS_TEXT`` (nginx's reason phrases), the small HTML pages nginx
sends for 3xx/4xx/5xx (ngx_http_special_response.c), and ``send_simple``
to write a whole response to an ASGI ``send``.

Must not: proxy or route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from pyngx import __version__

if TYPE_CHECKING:
    from pyngx.request import Request

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: nginx's status lines (src/http/ngx_http_header_filter_module.c).
STATUS_TEXT: dict[int, str] = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Not Allowed", 406: "Not Acceptable", 408: "Request Time-out", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Large", 415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable",
    421: "Misdirected Request", 429: "Too Many Requests", 494: "Request Header Or Cookie Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
    504: "Gateway Time-out", 505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}

# The special-response page titles differ from the status line for a few codes.
_PAGE_TITLE = {302: "Found", 401: "Authorization Required", 494: "Request Header Or Cookie Too Large"}

#: Codes nginx answers with its own HTML page when no body is given.
PAGE_CODES = frozenset(c for c in STATUS_TEXT if c >= 301 and c not in (304,))


def server_header(tokens: bool) -> bytes:
    """The Server field value: ``pyngx/VERSION``, or ``pyngx`` with server_tokens off."""
    return f"pyngx/{__version__}".encode() if tokens else b"pyngx"


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date field value for now (RFC 9110 5.6.7 IMF-fixdate), made once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def absolute_url(req: Request, url: str) -> str:
    """Make a redirect target that starts with "/" absolute, as nginx's header
    filter does for Location (absolute_redirect on).

    The host is $host (server_name_in_redirect off); the port is the one the
    request came in on, left out when it is the scheme's default
    (port_in_redirect on).

    Source: nginx docs: ngx_http_core_module, absolute_redirect,
    server_name_in_redirect, port_in_redirect; ngx_http_header_filter_module.c.
    """
    if not url.startswith("/"):
        return url
    default = 443 if req.scheme == "https" else 80
    host = req.host if ":" not in req.host or req.host.startswith("[") else f"[{req.host}]"
    port = "" if req.server_port in (default, 0) else f":{req.server_port}"
    return f"{req.scheme}://{host}{port}{url}"


def error_page(status: int, tokens: bool) -> bytes:
    """nginx's HTML page for ``status`` (ngx_http_special_response.c).

    Returns:
        The page bytes, or b"" for codes nginx has no page for.
    """
    if status not in PAGE_CODES:
        return b""
    title = f"{status} {_PAGE_TITLE.get(status, STATUS_TEXT[status])}"
    sign = server_header(tokens).decode()
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>{sign}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


async def send_simple(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    tokens: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> int:
    """Send a complete response with Content-Length; returns the body length.

    Args:
        send: the ASGI send callable.
        status: HTTP status code.
        body: the whole body.
        content_type: Content-Type value, or None for none.
        tokens: server_tokens, for the Server field.
        extra: more (name, value) header pairs, e.g. Location.
    """
    headers = [(b"server", server_header(tokens))]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return len(body)


async def send_error(send: Send, status: int, tokens: bool, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    """Send nginx's error page for ``status`` (text/html); returns the body length."""
    page = error_page(status, tokens)
    return await send_simple(send, status, page, b"text/html" if page else None, tokens, extra)
