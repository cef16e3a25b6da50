"""Header rules between client and upstream, compiled per location.

Owns: ``HOP_BY_HOP``, the response headers nginx hides by default, the
default ``proxy_set_header`` set, and ``RequestHeaderPlan``: the compiled
rule for one location (what to set, what to drop), applied per request
with lookups only.

Must not: import asyncio or aiohttp, or send anything.

Source: RFC 9110 section 7.6.1 (Connection, hop-by-hop fields);
nginx docs: ngx_http_proxy_module, proxy_set_header, proxy_hide_header.
"""

from __future__ import annotations

from pyngx.request import Request
from pyngx.variables import Template

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


class RequestHeaderPlan:
    """The upstream request header rule of one location.

    Args:
        set_headers: the location's proxy_set_header pairs.
        http_version: proxy_http_version ("1.0" adds ``Connection: close``).
    """

    __slots__ = ("constant", "dynamic", "skip")

    def __init__(self, set_headers: tuple[tuple[str, Template], ...], http_version: str) -> None:
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
        self.skip: frozenset[str] = frozenset({n.lower() for n, _ in pairs} | HOP_BY_HOP | _BODY_FRAMING)

    def build(self, req: Request) -> list[tuple[str, str]]:
        """The header list to send upstream for ``req``.

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
        length = req.header_map.get("content-length")
        if length is not None and "transfer-encoding" not in req.header_map:
            out.append(("Content-Length", length))
        skip = self.skip
        conn = req.header_map.get("connection")
        if conn:
            skip = skip | {t.strip().lower() for t in conn.split(",")}
        for raw_name, raw_value in req.headers:
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
