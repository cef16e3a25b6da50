"""The per-request record that variables read and handlers fill in.

Owns: ``Request``, a plain slotted object built once per request by app.py
from the ASGI scope, and URI normalization (nginx's
ngx_http_parse_complex_uri: percent-decoding, "//" merging, "." and ".."
resolution).

Must not: import asyncio or aiohttp, or look anything up in the config.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyngx.config.model import LocationConf, ServerConf
    from pyngx.config.values import ProxyPass
    from pyngx.listener import TLSInfo


class Request:
    """What pyngx knows about one client request.

    Attributes:
        method: request method, e.g. "GET".
        request_uri: the original request target with arguments, as sent.
        uri: the normalized, percent-decoded path (``$uri``).
        args: the query string without "?" (``$args``).
        headers: the client's header fields, in order, as (name, value) bytes.
        header_map: lower-cased name -> first value, for ``$http_NAME``.
        scheme: "http" or "https".
        protocol: "HTTP/1.0", "HTTP/1.1" or "HTTP/2.0".
        remote_addr, remote_port: the client's address.
        server_addr, server_port: the local address that accepted it.
        host: ``$host``: Host without port, lower-cased, or the server name.
        server, location: the matched server and location confs.
        captures: groups of the last regex match (``$1``..``$9``).
        variables: values of the variables the config declares, by name:
            ``set``, named regex captures (kept until another match sets
            them, as in nginx) and map values cached for the request.
        proxy: the proxy_pass URL in use, for ``$proxy_host``.
        start: ``time.time()`` when the request started.
        status, body_bytes_sent: what was sent to the client.
        upstream_addr, upstream_status: the peer tried and its answer.
        tls: the TLS connection's facts ($ssl_*), or None on a plain connection.
        internal: an internal redirect or a rewrite happened (nginx: r->internal).
        uri_changed: a rewrite changed the URI: find the location again.
        valid_location: the location found still applies to the URI (a
            ``rewrite ... break`` clears it: proxy_pass's URI part is not used).
        valid_unparsed_uri: the request line's target can go upstream as
            sent (nginx: r->valid_unparsed_uri; cleared by rewrites and ``set $args``).
        quoted_uri, plus_in_uri: the sent path had %-escapes / "+".
        realip_remote_addr, realip_remote_port: the connection's address
            when the realip module replaced $remote_addr, else None.
    """

    __slots__ = (
        "method", "request_uri", "uri", "args", "headers", "header_map", "scheme", "protocol", "request_line",
        "remote_addr", "remote_port", "server_addr", "server_port", "host", "server", "location",
        "captures", "variables", "proxy", "start", "status", "body_bytes_sent",
        "upstream_addr", "upstream_status", "upstream_response_time", "upstream_connect_time", "request_id",
        "tls", "internal", "uri_changed", "valid_location", "valid_unparsed_uri", "quoted_uri", "plus_in_uri",
        "realip_remote_addr", "realip_remote_port",
    )

    def __init__(
        self,
        method: str,
        request_uri: str,
        uri: str,
        args: str,
        headers: list[tuple[bytes, bytes]],
        scheme: str,
        protocol: str,
        remote: tuple[str, int] | None,
        local: tuple[str, int] | None,
    ) -> None:
        self.method = method
        #: ``$request``: the request line as received (an error_page's GET does not change it).
        self.request_line = f"{method} {request_uri} {protocol}"
        self.request_uri = request_uri
        self.uri = uri
        self.args = args
        self.headers = headers
        hm: dict[str, str] = {}
        for name, value in headers:
            key = name.decode("latin-1").lower()
            if key not in hm:
                hm[key] = value.decode("latin-1")
            elif key == "cookie":
                hm[key] += "; " + value.decode("latin-1")
            elif key == "x-forwarded-for":
                hm[key] += ", " + value.decode("latin-1")
        self.header_map = hm
        self.scheme = scheme
        self.protocol = protocol
        self.remote_addr, self.remote_port = remote if remote else ("", 0)
        self.server_addr, self.server_port = local if local else ("", 0)
        self.host = ""
        self.server: ServerConf | None = None
        self.location: LocationConf | None = None
        self.captures: tuple[str, ...] = ()
        self.variables: dict[str, str] = {}
        self.internal = False
        self.uri_changed = False
        self.valid_location = True
        self.valid_unparsed_uri = True
        self.quoted_uri = False
        self.plus_in_uri = False
        self.realip_remote_addr: str | None = None
        self.realip_remote_port = 0
        self.proxy: ProxyPass | None = None
        self.start = time.time()
        self.status = 0
        self.body_bytes_sent = 0
        self.upstream_addr = ""
        self.upstream_status = ""
        self.upstream_response_time = ""
        self.upstream_connect_time = ""
        self.request_id = ""
        self.tls: TLSInfo | None = None

    def set_match(self, match: Any) -> None:
        """Remember a regex match's groups for ``$1``..``$9`` and named captures."""
        self.captures = (match.group(0), *(g or "" for g in match.groups()))
        for name, value in match.groupdict().items():
            self.variables[name.lower()] = value or ""


class BadURI(ValueError):
    """The URI cannot be normalized (escapes the root, bad escape): 400."""


def _hex(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


def normalize_uri(raw: bytes) -> str:
    """Normalize a request path as nginx does before location matching.

    Decodes %XX escapes (including %2F), merges repeated slashes, removes
    "." segments and resolves ".." segments.

    Args:
        raw: the path part of the request target, undecoded.

    Returns:
        The normalized path as str (UTF-8 decoded, invalid bytes replaced
        by surrogate escapes so that nothing is lost).

    Raises:
        BadURI: a malformed %-escape, a NUL byte, or ".." above the root.

    Source: nginx src/http/ngx_http_parse.c, ngx_http_parse_complex_uri
    (merge_slashes on, the default).
    """
    if not raw.startswith(b"/"):
        raise BadURI("invalid URI")
    # Fast path: nothing to decode or resolve.
    if b"%" not in raw and b"//" not in raw and b"/." not in raw:
        return raw.decode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # %
            if i + 2 >= n:
                raise BadURI("invalid escape")
            hi, lo = _hex(raw[i + 1]), _hex(raw[i + 2])
            if hi < 0 or lo < 0:
                raise BadURI("invalid escape")
            c = hi * 16 + lo
            i += 3
        else:
            i += 1
        if c == 0:
            raise BadURI("NUL in URI")
        out.append(c)
    segments: list[bytes] = []
    parts = bytes(out).split(b"/")
    for k, seg in enumerate(parts[1:], 1):
        last = k == len(parts) - 1
        if seg == b"" and not last:
            continue  # merge "//"
        if seg == b".":
            if last:
                segments.append(b"")
            continue
        if seg == b"..":
            if not segments:
                raise BadURI("URI escapes the root")
            segments.pop()
            if last:
                segments.append(b"")
            continue
        segments.append(seg)
    return ("/" + "/".join(s.decode("utf-8", "surrogateescape") for s in segments)) if segments else "/"
