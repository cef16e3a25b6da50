"""The ASGI application: scope -> server -> location -> handler.

Owns: ``App``, which holds the current ``Runtime`` (one reference, swapped
whole on reload, so a request uses one config from start to end), builds
the ``Request``, picks server and location, and runs the handler:
``return``, ``proxy_pass``, or 404. Each request ends in one access-log
line.

Input: ASGI scopes from Hypercorn. Output: ASGI messages.
Must not: parse config, or know aiohttp beyond handing the session on.

Source: nginx's request phases (ngx_http_core_module): find server,
server rewrite (return), find location, location rewrite (return), content.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pyngx import log as pyngx_log
from pyngx.config.model import Config, LocationConf, Return
from pyngx.proxy.http import proxy_http
from pyngx.proxy.websocket import proxy_websocket
from pyngx.request import BadURI, Request, normalize_uri
from pyngx.responses import PAGE_CODES, send_error, send_simple
from pyngx.routing import REDIRECT, parse_host
from pyngx.runtime import Runtime, Sessions

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PROTOCOLS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2.0", "3": "HTTP/3.0"}
# A WebSocket scope says ws/wss; $scheme is http/https, as in nginx.
_SCHEMES = {"ws": "http", "wss": "https"}


class _DenialSend:
    """Turns http.response.* messages into ASGI's websocket.http.response.*,
    so that every HTTP responder can answer a refused WebSocket handshake."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.send({**message, "type": "websocket." + message["type"]})


class App:
    """pyngx's ASGI app.

    Args:
        config: the config to serve first.
    """

    def __init__(self, config: Config) -> None:
        #: The current Runtime: replaced whole, in one assignment, by ``swap``.
        self.runtime = Runtime(config)
        self.sessions = Sessions()
        self.log = pyngx_log.get()
        self._lifespans = 0

    def swap(self, runtime: Runtime) -> Runtime:
        """Make ``runtime`` current; returns the old one, now retired.

        Requests already running keep the Runtime they started with.
        """
        old, self.runtime = self.runtime, runtime
        old.retire()
        return old

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        # Hypercorn runs one lifespan per listener; sessions live while any does.
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self._lifespans += 1
                self.sessions.start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self._lifespans -= 1
                if self._lifespans == 0:
                    await self.sessions.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake: routed like HTTP; answers before the upgrade
        (return, 404, 400, 502) go out as plain HTTP responses (ASGI's
        websocket denial response)."""
        await self.serve(scope, receive, send, websocket=True)

    def request(self, scope: Scope) -> tuple[Request, bool]:
        """Build the Request from an HTTP scope.

        Returns:
            (request, quoted) where quoted tells that the path had %-escapes.

        Raises:
            BadURI: the path cannot be normalized (400).
        """
        raw = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        if raw[:1] != b"/":
            # absolute-form request target: "http://host/path" (RFC 9112 3.2.2)
            low = raw[:8].lower()
            if low.startswith(b"http://") or low.startswith(b"https://"):
                rest = raw.split(b"//", 1)[1]
                slash = rest.find(b"/")
                raw = rest[slash:] if slash >= 0 else b"/"
            elif raw == b"*" and scope.get("method") == "OPTIONS":
                raw = b"/"
        quoted = b"%" in raw
        uri = normalize_uri(raw)
        request_uri = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        scheme = scope.get("scheme", "http")
        req = Request(
            scope.get("method", "GET"),
            request_uri,
            uri,
            query.decode("latin-1"),
            scope["headers"],
            _SCHEMES.get(scheme, scheme),
            _PROTOCOLS.get(scope.get("http_version", "1.1"), "HTTP/1.1"),
            scope.get("client"),
            scope.get("server"),
        )
        return req, quoted

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve(scope, receive, send, websocket=False)

    async def serve(self, scope: Scope, receive: Receive, raw_send: Send, websocket: bool) -> None:
        """Route one request (HTTP or WebSocket handshake) and run its handler."""
        rt = self.runtime
        rt.active += 1
        try:
            await self._serve(rt, scope, receive, raw_send, websocket)
        finally:
            rt.leave()

    async def _serve(self, rt: Runtime, scope: Scope, receive: Receive, raw_send: Send, websocket: bool) -> None:
        send = _DenialSend(raw_send) if websocket else raw_send
        try:
            req, quoted = self.request(scope)
        except BadURI as exc:
            await send_error(send, 400, True)
            self.log.info("bad_request", reason=f"client sent invalid request: {exc}", client=_client(scope))
            return
        group = rt.routes.group(scope.get("server"))
        host_value = req.header_map.get("host")
        host = parse_host(host_value) if host_value is not None else ""
        if group is None or host is None:
            req.status = 400
            req.body_bytes_sent = await send_error(send, 400, True)
            self.log.info("bad_request", reason="client sent invalid host header", client=req.remote_addr)
            if group is not None:
                rt.access.log(group.default.conf.access_log, req)
            return
        srv, smatch = group.find(host)
        req.server = srv
        req.host = host or (srv.server_names[0] if srv.server_names else "")
        if smatch is not None:
            req.set_match(smatch)
        loc: LocationConf = srv.conf
        if srv.conf.return_ is None:
            rc, found, match = rt.routes.location(srv, req.uri)
            if rc == REDIRECT and found is not None:
                await self.redirect_slash(req, found, send)
                rt.access.log(found.access_log, req)
                return
            if found is not None:
                loc = found
                if match is not None:
                    req.set_match(match)
        req.location = loc
        if loc.return_ is not None:
            await self.do_return(req, loc, loc.return_, send)
        elif loc.proxy_pass is not None:
            plan = rt.plans[id(loc)]
            if websocket:
                await proxy_websocket(req, plan, self.sessions.get(plan), scope, receive, raw_send, quoted, self.log)
            else:
                await proxy_http(req, plan, self.sessions, receive, send, quoted, self.log)
        else:
            # Differs from nginx: no static files yet; nginx would look under root.
            req.status = 404
            req.body_bytes_sent = await send_error(send, 404, loc.server_tokens)
            self.log.info("not_found", reason=f'no proxy_pass or return for "{req.uri}"', client=req.remote_addr,
                          server=req.host, request=f"{req.method} {req.request_uri} {req.protocol}")
        rt.access.log(loc.access_log, req)

    def absolute(self, req: Request, url: str) -> str:
        """Make a redirect target absolute, as nginx's absolute_redirect on does.

        Source: nginx docs: ngx_http_core_module, absolute_redirect,
        server_name_in_redirect (off), port_in_redirect (on).
        """
        if not url.startswith("/"):
            return url
        default = 443 if req.scheme == "https" else 80
        host = req.host if ":" not in req.host or req.host.startswith("[") else f"[{req.host}]"
        port = "" if req.server_port in (default, 0) else f":{req.server_port}"
        return f"{req.scheme}://{host}{port}{url}"

    async def do_return(self, req: Request, loc: LocationConf, ret: Return, send: Send) -> None:
        """``return`` (nginx: ngx_http_rewrite_module, return)."""
        code = ret.code
        req.status = code
        tokens = loc.server_tokens
        if code in _REDIRECTS and ret.text is not None:
            location = self.absolute(req, ret.text.render(req))
            extra = [(b"location", location.encode("latin-1", "replace"))]
            req.body_bytes_sent = await send_error(send, code, tokens, extra)
        elif ret.text is not None:
            body = ret.text.render(req).encode()
            req.body_bytes_sent = await send_simple(send, code, body, loc.default_type.encode(), tokens)
        elif code in PAGE_CODES:
            req.body_bytes_sent = await send_error(send, code, tokens)
        else:
            await send_simple(send, code, b"", None, tokens)

    async def redirect_slash(self, req: Request, loc: LocationConf, send: Send) -> None:
        """301 to the URI with "/" appended (nginx's auto_redirect for proxy_pass locations)."""
        target = loc.name if not req.args else f"{req.uri}/?{req.args}"
        req.status = 301
        extra = [(b"location", self.absolute(req, target).encode("latin-1"))]
        req.body_bytes_sent = await send_error(send, 301, loc.server_tokens, extra)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
