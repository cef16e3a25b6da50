"""A location's proxy_pass, compiled once when the config loads.

Owns: ``ProxyPlan`` (the request and response header rules, the URL parts
or the URL template of a proxy_pass with variables, proxy_next_upstream's
limits, method and body rules, timeouts, TLS to the upstream), the
upstream URI rule of proxy_pass (``ProxyPlan.upstream_uri``,
``escape_uri``), and ``ProxyClientRequest`` (aiohttp's request without
the framing field pyngx does not send).

Input: a ``LocationConf`` with proxy_pass, its ``Upstream`` and the
config's ``Upstreams``. Output: the plan proxy/http.py and
proxy/websocket.py follow for each request.
Must not: open connections, or do per request what can be done here.

Source: nginx docs: ngx_http_proxy_module (proxy_pass, proxy_set_header,
proxy_method, proxy_set_body, proxy_pass_request_body,
proxy_intercept_errors, proxy_next_upstream, proxy_*_timeout, proxy_ssl_*).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import aiohttp

from pyngx.config.model import LocationConf
from pyngx.config.values import ProxyPass, parse_proxy_pass
from pyngx.errors import ConfigError, ConfigValueError, InvalidProxyURL, UpstreamError
from pyngx.proxy.headers import RequestHeaderPlan, ResponseHeaderPlan, default_redirect
from pyngx.request import Request
from pyngx.responses import server_header
from pyngx.upstream.groups import Upstream, Upstreams
from pyngx.variables import Template

__all__ = ["ProxyClientRequest", "ProxyPlan", "error_page_codes", "escape_uri"]

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
            InvalidProxyURL: the URL is invalid (nginx answers 500).
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
            raise InvalidProxyURL(f'invalid URL prefix in "{url}"')
        try:
            pp = parse_proxy_pass(url)
        except ConfigValueError as exc:
            raise InvalidProxyURL(exc.message) from None
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
