"""Upstream failures as nginx reports them: status, error-log text, context.

Owns: ``upstream_error`` (an aiohttp failure -> 502 or 504 with the words
of nginx's error log), ``failure_kind`` (which proxy_next_upstream case a
failure is), ``FAILURE_STATUSES`` and ``error_context`` (the client,
server, request, upstream and host fields of an error-log line).

Input: exceptions from aiohttp; the request. Output: ``UpstreamError``s
and log fields for proxy/http.py and proxy/websocket.py.
Must not: log, retry, or answer the client.

Source: nginx src/http/ngx_http_upstream.c (ngx_http_upstream_next and the
error texts); src/http/ngx_http_request.c (ngx_http_log_error_handler:
the context fields).
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
from yarl import URL

from pyngx.errors import UpstreamError
from pyngx.request import Request

__all__ = ["FAILURE_STATUSES", "error_context", "failure_kind", "upstream_error"]

#: A status that proxy_next_upstream http_XXX names counts as a peer failure
#: only for these codes (http_403 and http_404 never do).
FAILURE_STATUSES = frozenset({500, 502, 503, 504, 429})


def upstream_error(exc: BaseException, phase: str) -> UpstreamError:
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


def failure_kind(err: UpstreamError) -> str:
    """The proxy_next_upstream case a failure is.

    Returns:
        "timeout" (504), "invalid_header" (an invalid answer) or "error".

    Source: nginx docs: ngx_http_proxy_module, proxy_next_upstream.
    """
    if err.status == 504:
        return "timeout"
    return "invalid_header" if "invalid header" in err.reason else "error"


def error_context(req: Request, url: str | URL) -> dict[str, str]:
    """The context fields of an error-log line about a request to ``url``.

    Returns:
        {"client", "server", "request", "upstream", "host"} as nginx's
        error log appends them ("client: ..., server: ...").

    Source: nginx src/http/ngx_http_request.c, ngx_http_log_error_handler.
    """
    return {
        "client": req.remote_addr,
        "server": req.server.server_names[0] if req.server is not None and req.server.server_names else "",
        "request": f"{req.method} {req.request_uri} {req.protocol}",
        "upstream": str(url),
        "host": req.header_map.get("host", ""),
    }
