"""Header rules between client and upstream, compiled per location.

Owns: ``HOP_BY_HOP``, the response headers nginx hides by default, the
default ``proxy_set_header`` set, ``RequestHeaderPlan`` (what to send up:
proxy_set_header, proxy_pass_request_headers) and ``ResponseHeaderPlan``
(what to pass down: proxy_hide_header, proxy_pass_header, and the
rewrites of proxy_redirect, proxy_cookie_domain and proxy_cookie_path).
Both are compiled once per location and applied per request with lookups
only.

Must not: import asyncio or aiohttp, or send anything.

Source: RFC 9110 section 7.6.1 (Connection, hop-by-hop fields);
nginx docs: ngx_http_proxy_module (proxy_set_header, proxy_hide_header,
proxy_pass_header, proxy_redirect, proxy_cookie_domain, proxy_cookie_path);
nginx src/http/modules/ngx_http_proxy_module.c (ngx_http_proxy_rewrite_*)
and src/http/ngx_http_upstream.c (ngx_http_upstream_rewrite_location,
_refresh, _set_cookie).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyngx.request import Request
from pyngx.responses import absolute_url
from pyngx.variables import Template

if TYPE_CHECKING:
    from pyngx.config.model import LocationConf, RewriteRule

#: Header fields that apply to one connection only and are never forwarded
#: (RFC 9110 7.6.1, RFC 2616 13.5.1), lower-cased.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

#: Response fields nginx does not pass to the client by default
#: (proxy_hide_header): it sends its own Date and Server.
HIDDEN_RESPONSE: frozenset[str] = frozenset({"date", "server", "x-pad", "x-accel-expires", "x-accel-redirect",
                                             "x-accel-limit-rate", "x-accel-buffering", "x-accel-charset"})

#: nginx's default proxy_set_header entries (ngx_http_proxy_headers); a
#: location's own proxy_set_header of the same name replaces one.
#: Differs from nginx: no "Connection: close" unless proxy_http_version 1.0.
DEFAULT_SET_HEADERS: tuple[tuple[str, str], ...] = (("Host", "$proxy_host"),)

# Fields the upstream client computes itself from the body it sends.
_BODY_FRAMING = frozenset({"content-length", "transfer-encoding"})
# nginx's default proxy_set_header list sets Expect to "" (never passed up):
# the 100-continue exchange is between the client and the proxy.
_NEVER_UP = frozenset({"expect"})


class RequestHeaderPlan:
    """The upstream request header rule of one location.

    Args:
        set_headers: the location's proxy_set_header pairs.
        http_version: proxy_http_version ("1.0" adds ``Connection: close``).
        pass_request_headers: proxy_pass_request_headers: copy the client's
            fields (off: only the set ones and the body framing go up).
    """

    __slots__ = ("constant", "dynamic", "skip", "pass_request_headers", "sets_length")

    def __init__(
        self, set_headers: tuple[tuple[str, Template], ...], http_version: str, pass_request_headers: bool = True
    ) -> None:
        self.pass_request_headers = pass_request_headers
        pairs = list(set_headers)
        names = {n.lower() for n, _ in pairs}
        defaults = list(DEFAULT_SET_HEADERS)
        if http_version == "1.0":
            defaults.append(("Connection", "close"))
        for name, value in defaults:
            if name.lower() not in names:
                pairs.append((name, Template(value)))
        #: (name, value) pairs with constant non-empty values.
        self.constant: tuple[tuple[str, str], ...] = tuple(
            (n, t.constant) for n, t in pairs if t.constant is not None and t.constant != ""
        )
        #: (name, template) pairs evaluated per request; "" drops the field.
        self.dynamic: tuple[tuple[str, Template], ...] = tuple((n, t) for n, t in pairs if t.constant is None)
        #: lower-cased names never copied from the client.
        self.skip: frozenset[str] = frozenset({n.lower() for n, _ in pairs} | HOP_BY_HOP | _BODY_FRAMING | _NEVER_UP)
        #: proxy_set_header Content-Length replaces the computed one (nginx's
        #: default entry is "Content-Length: $proxy_internal_body_length").
        self.sets_length = "content-length" in names

    def build(self, req: Request, length: str | None = "") -> list[tuple[str, str]]:
        """The header list to send upstream for ``req``.

        Args:
            req: the request.
            length: the Content-Length to send: "" for the client's (when
                its body has one), a number for a body pyngx makes
                (proxy_set_body), None for none.

        Returns:
            (name, value) pairs: the set headers first, then the client's
            fields minus hop-by-hop ones, the ones the client's Connection
            names, and the ones proxy_set_header replaces.
        """
        out = list(self.constant)
        for name, tmpl in self.dynamic:
            value = tmpl.render(req)
            if value:
                out.append((name, value))
        # A body of known length goes up with its Content-Length (streamed,
        # not re-chunked); a chunked one is re-chunked by the client library.
        if length == "":
            length = req.header_map.get("content-length")
            if "transfer-encoding" in req.header_map:
                length = None
        if length is not None and not self.sets_length:
            out.append(("Content-Length", length))
        if not self.pass_request_headers:
            return out
        skip = self.skip
        conn = req.header_map.get("connection")
        if conn:
            skip = skip | {t.strip().lower() for t in conn.split(",")}
        for raw_name, raw_value in req.headers:
            # nginx ignores fields with "_" in the name (underscores_in_headers
            # off): a backend that folds "_" into "-" must not see X_Forwarded_For.
            if b"_" in raw_name:
                continue
            name = raw_name.decode("latin-1")
            if name.lower() not in skip:
                out.append((name, raw_value.decode("latin-1")))
        return out


def response_headers(raw: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Filter an upstream response's raw header list for the client.

    Drops hop-by-hop fields, the fields the upstream's Connection names, and
    nginx's default hidden fields (Date, Server, X-Accel-*, X-Pad).
    """
    extra: set[bytes] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            extra.update(t.strip().lower() for t in value.split(b","))
    out = []
    for name, value in raw:
        low = name.lower().decode("latin-1")
        if low in HOP_BY_HOP or low in HIDDEN_RESPONSE or low.encode() in extra:
            continue
        out.append((name, value))
    return out


# --- response: hide, pass, rewrite ----------------------------------------------------


class ResponseHeaderPlan:
    """The upstream response header rule of one location.

    Args:
        loc: the location (proxy_hide_header, proxy_pass_header,
            proxy_redirect, proxy_cookie_domain, proxy_cookie_path).
        redirects: the proxy_redirect rules with ``default`` resolved
            (see ``default_redirect``).

    Attributes:
        hidden: lower-cased names never passed: hop-by-hop fields and
            nginx's hidden ones plus proxy_hide_header, minus proxy_pass_header.
        passes_server, passes_date: proxy_pass_header lets Server / Date through.
    """

    __slots__ = ("hidden", "redirects", "cookie_domains", "cookie_paths", "passes_server", "passes_date", "plain")

    def __init__(self, loc: LocationConf, redirects: tuple[RewriteRule, ...]) -> None:
        passed = frozenset(loc.proxy_pass_header)
        hidden = (HIDDEN_RESPONSE | frozenset(loc.proxy_hide_header)) - passed
        # nginx never copies the connection-level fields, proxy_pass_header or not.
        self.hidden = frozenset(n.encode("latin-1") for n in hidden | HOP_BY_HOP)
        self.redirects = redirects
        self.cookie_domains = loc.proxy_cookie_domain
        self.cookie_paths = loc.proxy_cookie_path
        self.passes_server = "server" in passed
        self.passes_date = "date" in passed
        #: nothing to rewrite: only the hide test runs per field.
        self.plain = not (redirects or self.cookie_domains or self.cookie_paths)

    def filter(self, raw: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]], req: Request) -> list[tuple[bytes, bytes]]:
        """The upstream's fields as the client gets them.

        Drops the hidden fields and those the upstream's Connection names;
        rewrites Location and Refresh (proxy_redirect; a rewritten Location
        that starts with "/" is made absolute, as nginx's header filter
        does) and the domain= and path= of Set-Cookie.
        """
        hidden = self.hidden
        for name, value in raw:
            if name.lower() == b"connection":
                hidden = hidden | {t.strip().lower() for t in value.split(b",")}
        out = []
        for name, value in raw:
            low = name.lower()
            if low in hidden:
                continue
            if not self.plain:
                value = self._rewrite(low, value, req)
            out.append((name, value))
        return out

    def _rewrite(self, low: bytes, value: bytes, req: Request) -> bytes:
        if low == b"location" and self.redirects:
            text = value.decode("latin-1")
            new = rewrite(self.redirects, text, 0, req)
            if new is not None:
                return absolute_url(req, new).encode("latin-1", "replace") if new[:1] == "/" else new.encode("latin-1", "replace")
        elif low == b"refresh" and self.redirects:
            text = value.decode("latin-1")
            at = text.lower().find("url=")
            if at >= 0:
                new = rewrite(self.redirects, text, at + 4, req)
                if new is not None:
                    return new.encode("latin-1", "replace")
        elif low == b"set-cookie" and (self.cookie_domains or self.cookie_paths):
            new = rewrite_cookie(value.decode("latin-1"), self.cookie_domains, self.cookie_paths, req)
            if new is not None:
                return new.encode("latin-1", "replace")
        return value


def default_redirect(loc: LocationConf) -> tuple[RewriteRule, ...]:
    """A location's proxy_redirect rules, with nginx's ``default`` when none is set.

    ``default`` replaces the proxy_pass URL by the location's name when the
    URL has a URI part (``proxy_pass http://u/two/`` in ``location /one/``
    gives ``http://u/two/ /one/``), else ``URL/`` by ``/``. A proxy_pass
    with variables has no default rule.

    Source: nginx docs: ngx_http_proxy_module, proxy_redirect;
    ngx_http_proxy_merge_loc_conf.
    """
    from pyngx.config.model import RewriteRule

    if loc.proxy_redirect is not None:
        return loc.proxy_redirect
    pp = loc.proxy_pass
    if pp is None or pp.template is not None:
        return ()
    if pp.uri is not None:
        return (RewriteRule(None, Template(pp.url), Template(loc.name)),)
    return (RewriteRule(None, Template(pp.url + "/"), Template("/")),)


def rewrite(rules: tuple[RewriteRule, ...], value: str, prefix: int, req: Request) -> str | None:
    """Apply the first rule that matches ``value[prefix:]``.

    A literal rule matches when the value starts with its pattern
    (case-sensitive) and replaces that part; a regex rule searches the value
    and replaces all of it, its captures being $1.. in the replacement.

    Returns:
        The new value, or None when no rule matched.

    Source: nginx ngx_http_proxy_rewrite_complex_handler, _regex_handler.
    """
    for rule in rules:
        if rule.regex is not None:
            m = rule.regex.search(value[prefix:])
            if m is None:
                continue
            req.set_match(m)  # as ngx_http_regex_exec sets $1..
            return value[:prefix] + rule.replacement.render(req)
        assert rule.pattern is not None
        pattern = rule.pattern.render(req)
        if value.startswith(pattern, prefix):
            return value[:prefix] + rule.replacement.render(req) + value[prefix + len(pattern) :]
    return None


def _rewrite_domain(rules: tuple[RewriteRule, ...], value: str, req: Request) -> str | None:
    """proxy_cookie_domain: a literal rule must equal the domain (case-insensitive,
    a leading "." kept aside); regex rules as in ``rewrite``.

    Source: nginx ngx_http_proxy_rewrite_domain_handler.
    """
    for rule in rules:
        if rule.regex is not None:
            new = rewrite((rule,), value, 0, req)
            if new is not None:
                return new
            continue
        assert rule.pattern is not None
        dot = 1 if value.startswith(".") else 0
        if rule.pattern.render(req).lower() == value[dot:].lower():
            return value[:dot] + rule.replacement.render(req)
    return None


def rewrite_cookie(
    value: str, domains: tuple[RewriteRule, ...], paths: tuple[RewriteRule, ...], req: Request
) -> str | None:
    """Rewrite the domain= and path= attributes of one Set-Cookie value.

    The value is split at ";" into name[=value] attributes (spaces around
    names and values trimmed); when a rule changed something the value is
    joined again with "; ", as nginx does.

    Returns:
        The new value, or None when nothing changed (the field is passed as sent).

    Source: nginx ngx_http_proxy_rewrite_cookie, ngx_http_proxy_parse_cookie.
    """
    attrs: list[tuple[str, str | None]] = []
    for part in value.split(";"):
        name, eq, text = part.partition("=")
        attrs.append((name.strip(" "), text.strip(" ") if eq else None))
    if attrs[0][1] is None:
        return None
    changed = False
    for i, (key, val) in enumerate(attrs):
        if i == 0 or val is None:
            continue
        low = key.lower()
        new = None
        if low == "domain" and domains:
            new = _rewrite_domain(domains, val, req)
        elif low == "path" and paths:
            new = rewrite(paths, val, 0, req)
        if new is not None:
            attrs[i] = (key, new)
            changed = True
    if not changed:
        return None
    return "; ".join(f"{k}={v}" if v is not None else k for k, v in attrs)
