"""Conditional and range requests on a file's answer: nginx's
not_modified and range filters.

Owns: reading If-Modified-Since / If-Unmodified-Since / If-None-Match /
If-Match (``not_modified``: 304, 412 or send) and Range / If-Range
(``byte_ranges``: the ranges, 416, or the whole file), with nginx's own
parsing rules (its quirks included: a Range it cannot use is ignored, ranges
that add up to more than the file give the whole file); the layout of a
multipart/byteranges body (``multipart``).

Input: the request's header fields, the file's size, mtime and ETag, the
location's etag / if_modified_since / max_ranges. Output: decisions.
Must not: do I/O or send anything (pyngx.static does).

Source: nginx src/http/modules/ngx_http_not_modified_filter_module.c,
src/http/modules/ngx_http_range_filter_module.c; RFC 9110 sections 13 and 14.
"""

from __future__ import annotations

import calendar
from email.utils import parsedate

from pyngx.config.model import LocationConf
from pyngx.request import Request

#: byte_ranges: the Range cannot be satisfied (416).
RANGE_NOT_SATISFIABLE = -1
_MAX_OFF = 2**63 - 1


def http_time(value: str) -> int:
    """Seconds since the epoch of an HTTP date (RFC 1123, RFC 850 or asctime), or -1."""
    parsed = parsedate(value)
    if parsed is None:
        return -1
    try:
        return calendar.timegm(parsed)
    except (ValueError, OverflowError):
        return -1


def etag_matches(etag: str | None, header: str, weak: bool) -> bool:
    """An If-Match (strong) or If-None-Match (weak) list names ``etag``, or is "*".

    Source: nginx src/http/modules/ngx_http_not_modified_filter_module.c, ngx_http_test_if_match.
    """
    if etag is None:
        return False
    if header == "*":
        return True
    if weak and etag.startswith("W/"):
        etag = etag[2:]
    i, n = 0, len(header)
    while i < n:
        if weak and n - i > 2 and header.startswith("W/", i):
            i += 2
        if len(etag) > n - i:
            return False
        if header.startswith(etag, i):
            i += len(etag)
            while i < n and header[i] in " \t":
                i += 1
            if i == n or header[i] == ",":
                return True
        while i < n and header[i] != ",":
            i += 1
        while i < n and header[i] in " \t,":
            i += 1
    return False


def not_modified(req: Request, loc: LocationConf, mtime: int, etag: str | None) -> int:
    """nginx's not-modified filter for a 200 answer: 412, 304, or 0 (send it).

    If-Modified-Since counts only when equal to the file's time
    (``if_modified_since exact``), or not older (``before``), or never (``off``).

    Source: nginx src/http/modules/ngx_http_not_modified_filter_module.c.
    """
    h = req.header_map
    since = h.get("if-unmodified-since")
    if since is not None and not http_time(since) >= mtime:
        return 412
    match = h.get("if-match")
    if match is not None and not etag_matches(etag, match, weak=False):
        return 412
    ims, inm = h.get("if-modified-since"), h.get("if-none-match")
    if ims is None and inm is None:
        return 0
    if ims is not None and loc.if_modified_since != "off":
        t = http_time(ims)
        if t != mtime and (loc.if_modified_since == "exact" or t < mtime):
            return 0
    elif ims is not None:
        return 0
    if inm is not None and not etag_matches(etag, inm, weak=True):
        return 0
    return 304


def byte_ranges(req: Request, loc: LocationConf, size: int, mtime: int,
                etag: str | None) -> list[tuple[int, int]] | int | None:
    """The ranges a 200 answer is cut to, as nginx's range filter.

    Returns:
        [(start, end), ...] with ``end`` exclusive; ``RANGE_NOT_SATISFIABLE``;
        or None: send the whole file (no or unusable Range, an If-Range that
        does not hold, more than ``max_ranges`` ranges, ranges that add up
        to more than the file).

    Source: nginx src/http/modules/ngx_http_range_filter_module.c,
    ngx_http_range_header_filter, ngx_http_range_parse.
    """
    value = req.header_map.get("range")
    if loc.max_ranges == 0 or value is None or len(value) < 7 or value[:6].lower() != "bytes=":
        return None
    if_range = req.header_map.get("if-range")
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith('"'):
            if etag is None or if_range != etag:
                return None
        elif http_time(if_range) != mtime:
            return None
    return parse_ranges(value[6:], size, loc.max_ranges if loc.max_ranges is not None else 2**31 - 1)


def parse_ranges(spec: str, size: int, limit: int) -> list[tuple[int, int]] | int | None:
    """nginx's ngx_http_range_parse of a Range value after "bytes=" (see ``byte_ranges``)."""
    p, i = spec + "\0", 0
    ranges: list[tuple[int, int]] = []
    total = 0
    while True:
        start = end = 0
        while p[i] == " ":
            i += 1
        whole = False
        suffix = p[i] == "-"
        if not suffix:
            start, i = _offset(p, i)
            if start < 0:
                return RANGE_NOT_SATISFIABLE
            while p[i] == " ":
                i += 1
            if p[i] != "-":
                return RANGE_NOT_SATISFIABLE
            i += 1
            while p[i] == " ":
                i += 1
            whole = p[i] in (",", "\0")
            end = size
        else:
            i += 1
        if not whole:
            end, i = _offset(p, i)
            if end < 0:
                return RANGE_NOT_SATISFIABLE
            while p[i] == " ":
                i += 1
            if p[i] not in (",", "\0"):
                return RANGE_NOT_SATISFIABLE
            if suffix:
                start, end = (size - end if end < size else 0), size - 1
            end = size if end >= size else end + 1
        if start < end:
            ranges.append((start, end))
            total += end - start
            if total > _MAX_OFF:
                return RANGE_NOT_SATISFIABLE
            if limit == 0:
                return None
            limit -= 1
        elif start == 0:
            return None
        c = p[i]
        i += 1
        if c != ",":
            break
    if not ranges:
        return RANGE_NOT_SATISFIABLE
    return None if total > size else ranges


def _offset(p: str, i: int) -> tuple[int, int]:
    """The decimal number at ``p[i]`` and the index after it; -1 when there is
    no digit or the number exceeds nginx's NGX_MAX_OFF_T_VALUE."""
    if not "0" <= p[i] <= "9":
        return -1, i
    n = 0
    while "0" <= p[i] <= "9":
        n = n * 10 + ord(p[i]) - 48
        i += 1
        if n > _MAX_OFF:
            return -1, i
    return n, i


def multipart(boundary: bytes, ctype: bytes, ranges: list[tuple[int, int]], size: int) -> list[bytes | tuple[int, int]]:
    """multipart/byteranges as nginx writes it: each part's header and
    bytes, then the closing boundary.

    Returns:
        Literal bytes and (start, end) spans of the file, in order.
    """
    head = b"\r\n--" + boundary + b"\r\n" + (b"Content-Type: " + ctype + b"\r\n" if ctype else b"")
    spans: list[bytes | tuple[int, int]] = []
    for start, end in ranges:
        spans.append(head + b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (start, end - 1, size))
        spans.append((start, end))
    spans.append(b"\r\n--" + boundary + b"--\r\n")
    return spans
