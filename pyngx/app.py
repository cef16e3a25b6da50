"""The ASGI application: a request's walk through nginx's phases.

Owns: ``App``, which holds the current ``Runtime`` (one reference, swapped
whole on reload, so a request uses one config from start to end), builds
the ``Request``, picks the server, and runs the phases; what ends them
(an answer, a status for error_page, an internal redirect); ``return
444``'s silent close; the 404 when no handler answers. Each request ends
in one access-log line, with the conf it ended in. A request's state on
its way is a ``pyngx.flow.Flow``, which also makes the ``return`` answer
and nginx's own pages.

The phases, as nginx runs them (ngx_http_core_module's phase engine)::

    post-read        realip with the server level's conf
    server rewrite   the server level's script (rewrite, return, set, if, break)
    find location    internal -> 404; client_max_body_size -> 413;
                     auto-redirect -> 301 "uri/"
    location rewrite the location's script; an "if" that holds makes its
                     block the current conf
    post-rewrite     URI changed by rewrite (not "break")? -> find location
                     again; the 11th time -> 500 "rewrite or internal
                     redirection cycle"
    preaccess        realip with the location's conf (unless done)
    access           allow / deny -> 403
    try files        try_files (pyngx.static): the URI becomes the file
                     found, else "=code", "@name" or an internal redirect
    content          proxy_pass, or static files (pyngx.static: index,
                     autoindex, the file under root or alias)
    then             Finish(status): error_page -> internal redirect (the
                     phases again from server rewrite, or from location
                     rewrite in a named location), a 302 to a URL, or
                     nginx's page; 444 closes the connection
    log              access_log of the conf the request ended in

Content handlers and other modules end a request early by returning an
``Outcome`` (pyngx.rewrite): ``Finish(status)`` (error_page applies),
``Respond``, or ``Redirect`` (``internal_redirect("/uri?args")`` or
``internal_redirect("@name")``); None means "the answer was sent".

Input: ASGI scopes from Hypercorn. Output: ASGI messages.
Must not: parse config, or know aiohttp beyond handing the session on.

Source: nginx's request phases (src/http/ngx_http_core_module.c:
ngx_http_core_find_config_phase, ngx_http_core_post_rewrite_phase,
ngx_http_internal_redirect, ngx_http_named_location;
src/http/ngx_http_special_response.c: ngx_http_special_response_handler,
ngx_http_send_error_page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pyngx import log as pyngx_log
from pyngx import listener
from pyngx.access import allowed, real_ip
from pyngx.asgi import KeptBody, close_connection
from pyngx.config.model import Config, LocationConf
from pyngx.errors import SpecialResponse
from pyngx.filters import ResponseFilter, body_too_large, send_too_large
from pyngx.flow import SENT, Flow, Sent
from pyngx.proxy.http import proxy_http
from pyngx.proxy.websocket import proxy_websocket
from pyngx.request import BadURI, Request, normalize_uri
from pyngx.responses import send_error, send_simple
from pyngx.rewrite import run_script
from pyngx.special import REDIRECT_CODES, ErrorPage, Finish, Outcome, Redirect, Respond
from pyngx.special import internal_redirect as internal_redirect  # for content handlers (try_files)
from pyngx.routing import REDIRECT, parse_host
from pyngx.runtime import Runtime, Sessions
from pyngx.static import serve_static, try_files

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send, sync_spawn: Any = None,
                       call_soon: Any = None) -> None:
        """The ASGI entry point; also Hypercorn's app-wrapper call (it passes
        ``sync_spawn`` and ``call_soon``, which pyngx does not use), so that
        Hypercorn calls the app without a wrapper's extra coroutine per request."""
        kind = scope["type"]
        if kind == "http":
            await self.serve(scope, receive, send, websocket=False)
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
            _SCHEMES.get(scheme) or str(scheme),
            _PROTOCOLS.get(scope.get("http_version", "1.1"), "HTTP/1.1"),
            scope.get("client"),
            scope.get("server"),
        )
        req.tls = scope.get("extensions", {}).get(listener.SCOPE_KEY)
        req.quoted_uri, req.plus_in_uri = quoted, b"+" in raw
        return req, quoted

    async def serve(self, scope: Scope, receive: Receive, raw_send: Send, websocket: bool) -> None:
        """Route one request (HTTP or WebSocket handshake) and run its handler."""
        rt = self.runtime
        rt.active += 1
        try:
            await self._serve(rt, scope, receive, raw_send, websocket)
        finally:
            rt.leave()

    async def _serve(self, rt: Runtime, scope: Scope, receive: Receive, raw_send: Send, websocket: bool) -> None:
        # Every response starts through the header filter (add_header, Date, ...).
        send = filtered = ResponseFilter(_DenialSend(raw_send) if websocket else raw_send)
        try:
            req, quoted = self.request(scope)
        except BadURI as exc:
            await send_error(send, 400, True)
            self.log.info("bad_request", reason=f"client sent invalid request: {exc}", client=_client(scope))
            return
        filtered.req = req
        group = rt.routes.group(scope.get("server"))
        host_value = req.header_map.get("host")
        if host_value == "" and req.protocol == "HTTP/2.0":
            host_value = None  # Hypercorn's empty "host" for an HTTP/2 request without :authority
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
        refused = listener.refusal(req.tls, srv)
        if refused is not None:  # ssl_verify_client on, and no client certificate
            req.status = 400
            req.body_bytes_sent = await send_simple(send, 400, refused, b"text/html", srv.conf.server_tokens)
            self.log.info("ssl_no_client_certificate", reason="client sent no required SSL certificate",
                          client=req.remote_addr, server=req.host)
            rt.access.log(srv.conf.access_log, req)
            return
        await self.phases(Flow(rt, req, scope, receive, raw_send, filtered, websocket, quoted))
        rt.access.log((req.location or srv.conf).access_log, req)

    # -- the phases -----------------------------------------------------------------

    async def phases(self, f: Flow) -> None:
        """Run the request through the phases (see the module doc) and finish
        it: answer, error_page, internal redirects, until an answer is out."""
        real_ip(f.req, f.srv.conf)  # post-read phase: the server level's realip
        outcome = await self.run_phases(f, _SERVER_REWRITE)
        while not isinstance(outcome, Sent):
            outcome = await self.finish(f, outcome)

    async def run_phases(self, f: Flow, start: str) -> Outcome | Sent:
        """One pass from ``start`` (server rewrite, or location rewrite for a
        named location) to the content phase; returns what ended it."""
        req, srv = f.req, f.srv
        out: Outcome | Sent | None
        if start == _SERVER_REWRITE:
            req.location = srv.conf
            out = self.script(srv.conf, req)
            if out is not None:
                return out
        find = start == _SERVER_REWRITE
        while True:
            if find:
                out = await self.find_location(f)
                if out is not None:
                    return out
            find = True
            loc = req.location
            assert loc is not None
            out = self.script(loc, req)
            if out is not None:
                return out
            if not req.uri_changed:
                break
            out = self.uri_change(f, f'while processing "{req.uri}"')  # post-rewrite phase
            if out is not None:
                return out
        loc = req.location
        assert loc is not None
        real_ip(req, loc)  # preaccess phase: the location's realip, unless done
        if not allowed(loc.access, req.remote_addr):  # access phase
            self.log.error("access_forbidden", reason="access forbidden by rule", **_context(req))
            return Finish(403)
        return await self.content(f)  # try-files and content phases

    def script(self, conf: LocationConf, req: Request) -> Outcome | None:
        """The rewrite phase of one level: its rewrite-module script."""
        if not conf.script:
            return None
        log = None
        if conf.rewrite_log:
            def log(message: str) -> None:
                self.log.info("rewrite", nginx_level="notice", reason=message, **_context(req))
        return run_script(conf.script, req, log)

    async def find_location(self, f: Flow) -> Outcome | Sent | None:
        """nginx's find-config phase: the location for the URI, then the
        checks nginx makes there (internal, client_max_body_size, auto-redirect).

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_find_config_phase.
        """
        req, srv = f.req, f.srv
        req.uri_changed = False
        rc, found, match = f.rt.routes.location(srv, req.uri)
        loc = found or srv.conf
        if match is not None:
            req.set_match(match)
        req.location = loc
        req.valid_location = True
        if loc.internal and not req.internal:
            return Finish(404)
        if body_too_large(req, loc):  # client_max_body_size, before any handler
            await send_too_large(req, f.send, self.log)
            return SENT
        if rc == REDIRECT:
            # auto_redirect: a location "/x/" with proxy_pass answers "/x" with a 301.
            return Finish(301, loc.name if not req.args else f"{req.uri}/?{req.args}")
        return None

    def uri_change(self, f: Flow, what: str) -> Finish | None:
        """Count a URI change (rewrite, internal redirect): the 11th is a 500.

        Source: nginx src/http/ngx_http_core_module.c (NGX_HTTP_MAX_URI_CHANGES).
        """
        f.uri_changes -= 1
        if f.uri_changes > 0:
            return None
        self.log.error("rewrite_cycle", reason=f"rewrite or internal redirection cycle {what}", **_context(f.req))
        return Finish(500)

    async def content(self, f: Flow) -> Outcome | Sent:
        """The try-files and content phases: proxy_pass, or static files.

        A handler returns None when it sent the answer, or an ``Outcome``.
        """
        req, loc = f.req, f.req.location
        assert loc is not None
        if loc.try_files is not None:  # the try-files phase (pyngx.static): the URI may change
            tried = await try_files(f.rt, req, self.log)
            if tried is not None:
                return tried
        if loc.proxy_pass is not None:
            plan = f.rt.plans[id(loc)]
            try:
                if f.websocket:
                    await proxy_websocket(req, plan, self.sessions, f.scope, f.receive, f.raw_send,
                                          f.quoted, self.log)
                else:
                    await proxy_http(req, plan, self.sessions, f.receive, f.send, f.quoted, self.log)
            except SpecialResponse as exc:  # its 502/504, or an intercepted error, for error_page
                if exc.close:  # client_body_timeout: nginx closes unanswered, 408 in the log
                    req.status = exc.status
                    await close_connection(f.raw_send)
                    return SENT
                return Finish(exc.status, headers=tuple(exc.headers))
            return SENT
        # -- static files (pyngx.static): index, autoindex, the file under root or alias;
        #    None when it answered, else an Outcome (Finish(404), an index's internal redirect).
        out = await serve_static(f.rt, req, f.send, f.receive, self.log, f.err_status)
        return SENT if out is None else out

    # -- the end of a pass: answers, error_page, internal redirects ------------------

    async def finish(self, f: Flow, outcome: Outcome) -> Outcome | Sent:
        """Act on what ended a pass of the phases."""
        if isinstance(outcome, Redirect):
            return await self.redirect(f, outcome)
        if isinstance(outcome, Respond):
            await f.respond(outcome)
            return SENT
        if outcome.status == 444:
            f.req.status = 444
            await close_connection(f.raw_send)
            return SENT
        if outcome.location is not None:
            f.location = outcome.location  # it stays on the answer, as nginx's headers_out.location
        page = self.error_page(f, outcome.status)
        if page is None:
            await f.special(outcome.status, outcome.headers)
            return SENT
        return await self.send_error_page(f, page)

    def error_page(self, f: Flow, status: int) -> ErrorPage | None:
        """The current conf's error_page for ``status``, if one may act now.

        Without ``recursive_error_pages``, a location's error_page acts once
        per request; none acts after a redirection cycle.

        Source: nginx src/http/ngx_http_special_response.c, ngx_http_special_response_handler.
        """
        conf = f.req.location
        assert conf is not None
        f.err_status = status
        if f.error_page_done or not conf.error_page or f.uri_changes == 0:
            return None
        if not conf.recursive_error_pages:
            f.error_page_done = True
        return next((p for p in conf.error_page if p.code == status), None)

    async def send_error_page(self, f: Flow, page: ErrorPage) -> Outcome | Sent:
        """Follow an error_page: an internal redirect (a GET unless HEAD), or a
        redirect of the client to a URL (302, or the "=" code if a redirect one).

        Source: nginx src/http/ngx_http_special_response.c, ngx_http_send_error_page.
        """
        req = f.req
        if page.overwrite >= 0:
            f.err_status = page.overwrite
        target = page.target(req)
        if isinstance(target, Redirect):
            if not target.uri.startswith("@") and req.method != "HEAD":
                req.method = "GET"
            return target
        if page.overwrite not in REDIRECT_CODES:
            f.err_status = 302
        f.location = target
        await f.special(f.err_status)
        return SENT

    async def redirect(self, f: Flow, to: Redirect) -> Outcome | Sent:
        """Run the phases again for ``to``: from server rewrite with the new
        URI and args, or from location rewrite in the named location "@name".

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_internal_redirect,
        ngx_http_named_location.
        """
        req = f.req
        if to.uri.startswith("@"):
            out = self.uri_change(f, f'while redirect to named location "{to.uri}"')
            if out is not None:
                return out
            named = f.rt.routes.named_location(f.srv, to.uri)
            if named is None:
                self.log.error("named_location_missing", reason=f'could not find named location "{to.uri}"',
                               **_context(req))
                return Finish(500)
            req.location = named
            if isinstance(f.receive, KeptBody):
                f.receive.rewind()
            return await self.run_phases(f, _LOCATION_REWRITE)
        out = self.uri_change(f, f'while internally redirecting to "{to.uri}"')
        if out is not None:
            return out
        req.uri, req.args = to.uri, to.args
        req.internal = True
        req.valid_unparsed_uri = False
        if isinstance(f.receive, KeptBody):
            f.receive.rewind()
        return await self.run_phases(f, _SERVER_REWRITE)


#: Phases a pass can start from.
_SERVER_REWRITE, _LOCATION_REWRITE = "server rewrite", "location rewrite"


def _context(req: Request) -> dict[str, str]:
    """nginx's error-log context: client, server, request, host."""
    return {
        "client": req.remote_addr,
        "server": req.server.server_names[0] if req.server is not None and req.server.server_names else "",
        "request": req.request_line,
        "host": req.header_map.get("host", ""),
    }


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
