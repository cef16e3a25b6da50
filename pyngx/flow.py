"""One request on its way through the phases: its state, and the answers made from it.

Owns: ``Flow`` (what nginx keeps in the request beyond its variables: the
runtime and server it started with, its ASGI callables, the URI changes
left, error_page's status, a redirect's Location) and the two answers
made from that state alone: ``Flow.respond`` (``return code text``) and
``Flow.special`` (nginx's own page for a status, with Location);
``SENT`` (the answer is out: nothing more to do but log).

Input: what app.py builds for a request. Output: ASGI messages through the
request's response filter.
Must not: run phases, pick locations or follow error_page (app.py does).

Source: nginx src/http/ngx_http_request.h (ngx_http_request_t);
src/http/ngx_http_core_module.c (ngx_http_send_response);
src/http/ngx_http_special_response.c (ngx_http_special_response_handler).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pyngx.asgi import KeptBody
from pyngx.filters import ResponseFilter
from pyngx.request import Request
from pyngx.responses import absolute_url, send_error, server_header
from pyngx.runtime import Runtime
from pyngx.special import Respond

__all__ = ["SENT", "Flow", "Sent"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Sent:
    """The answer is out: nothing more to do but log."""


SENT = Sent()


class Flow:
    """One request on its way through the phases: what nginx keeps in the
    request beyond its variables (ngx_http_request_t's phase state).

    Attributes:
        uri_changes: URI changes left before "rewrite or internal
            redirection cycle" (nginx: NGX_HTTP_MAX_URI_CHANGES + 1).
        err_status: the status an error_page answer keeps (nginx: r->err_status; 0: none).
        error_page_done: an error_page acted (without recursive_error_pages).
        location: a redirect's Location, which stays on later answers.
    """

    __slots__ = ("rt", "req", "srv", "scope", "receive", "raw_send", "send", "websocket", "quoted",
                 "uri_changes", "error_page_done", "location")

    def __init__(self, rt: Runtime, req: Request, scope: Scope, receive: Receive, raw_send: Send,
                 send: ResponseFilter, websocket: bool, quoted: bool) -> None:
        self.rt = rt
        self.req = req
        assert req.server is not None
        self.srv = req.server
        self.scope = scope
        # A body read before an internal redirect is read again after it.
        self.receive: Receive = receive if websocket else KeptBody(receive)
        self.raw_send = raw_send
        self.send = send
        self.websocket = websocket
        self.quoted = quoted
        self.uri_changes = 11
        self.error_page_done = False
        self.location: str | None = None

    @property
    def err_status(self) -> int:
        return self.send.err_status

    @err_status.setter
    def err_status(self, status: int) -> None:
        self.send.err_status = status

    async def respond(self, out: Respond) -> None:
        """``return code text`` (nginx: ngx_http_send_response): the text with
        Content-Type default_type; a 204 has neither Content-Type nor Content-Length."""
        req, loc = self.req, self.req.location
        assert loc is not None
        status = self.err_status or out.status
        body = out.body.encode()
        headers = [(b"server", server_header(loc.server_tokens))]
        if status != 204:
            headers += [(b"content-type", loc.default_type.encode()), (b"content-length", str(len(body)).encode())]
        if self.location is not None:
            headers.append((b"location", _location(req, self.location)))
        req.status = status
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body if status != 204 else b"", "more_body": False})
        req.body_bytes_sent = len(body) if status != 204 else 0

    async def special(self, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """nginx's own page for ``status`` (with Location for a redirect)."""
        req, loc = self.req, self.req.location
        assert loc is not None
        extra = list(headers)
        if self.location is not None:
            extra.append((b"location", _location(req, self.location)))
        req.status = status
        req.body_bytes_sent = await send_error(self.send, status, loc.server_tokens, extra)


# Control characters cannot go into a header field (h11 refuses them).
_CONTROL = {c: f"%{c:02X}" for c in (*range(0x20), 0x7F)}


def _location(req: Request, url: str) -> bytes:
    """The Location field: made absolute as nginx does, as UTF-8 bytes.

    Differs from nginx: control characters (from a decoded capture, say)
    are %-escaped; nginx would send them as they are.
    """
    return absolute_url(req, url).translate(_CONTROL).encode("utf-8", "surrogateescape")
