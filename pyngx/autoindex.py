"""Directory listings as nginx's autoindex module writes them.

Owns: ``Entry`` (one directory entry), the order nginx lists entries in,
and the four formats: ``html`` (with ``autoindex_exact_size`` and
``autoindex_localtime``), ``json``, ``jsonp`` and ``xml``, byte for byte;
``valid_callback`` for jsonp's ``callback`` argument.

Input: entries read by pyngx.static (names as bytes, as on disk). Output:
the body as bytes, and its Content-Type.
Must not: touch the file system or send anything.

Source: nginx src/http/modules/ngx_http_autoindex_module.c
(ngx_http_autoindex_html, _json, _xml, _cmp_entries, _jsonp_callback);
src/core/ngx_string.c (ngx_escape_uri NGX_ESCAPE_URI_COMPONENT,
ngx_escape_html, ngx_escape_json).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate

#: Content-Type of each format (xml has a charset, as in nginx).
CONTENT_TYPES = {
    "html": b"text/html",
    "json": b"application/json",
    "jsonp": b"application/javascript",
    "xml": b"text/xml; charset=utf-8",
}

#: Names longer than this are cut to NAME_LEN - 3 bytes and "..>" in html.
NAME_LEN = 50

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# NGX_ESCAPE_URI_COMPONENT keeps only the unreserved characters of RFC 3986.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HTML = {ord("<"): b"&lt;", ord(">"): b"&gt;", ord("&"): b"&amp;", ord('"'): b"&quot;"}
_JSON = {ord("\n"): b"\\n", ord("\r"): b"\\r", ord("\t"): b"\\t", ord("\b"): b"\\b", ord("\f"): b"\\f",
         ord('"'): b'\\"', ord("\\"): b"\\\\"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry, as nginx's autoindex reads it.

    Attributes:
        name: the name as stored on disk.
        dir: a directory (symbolic links followed).
        file: a regular file (symbolic links followed); neither means "other"
            (a dangling link, a socket, ...).
        mtime: modification time, whole seconds since the epoch.
        size: size in bytes.
    """

    name: bytes
    dir: bool
    file: bool
    mtime: int
    size: int


def ordered(entries: list[Entry]) -> list[Entry]:
    """Directories first, then by name, byte by byte (nginx: ngx_http_autoindex_cmp_entries)."""
    return sorted(entries, key=lambda e: (not e.dir, e.name))


def escape_component(name: bytes) -> bytes:
    """%-escape all but A-Z a-z 0-9 - . _ ~ (nginx: NGX_ESCAPE_URI_COMPONENT)."""
    return b"".join(bytes((c,)) if c in _UNRESERVED else b"%%%02X" % c for c in name)


def escape_html(text: bytes) -> bytes:
    """Escape < > & " (nginx: ngx_escape_html)."""
    return b"".join(_HTML.get(c, bytes((c,))) for c in text) if any(c in _HTML for c in text) else text


def _escape_json(text: bytes) -> bytes:
    """nginx's ngx_escape_json: quotes, backslashes and control characters."""
    out = bytearray()
    for c in text:
        if c in _JSON:
            out += _JSON[c]
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    return bytes(out)


def valid_callback(name: str) -> bool:
    """A jsonp callback nginx accepts: at most 128 of A-Z a-z 0-9 _ . (else 400)."""
    return len(name) <= 128 and all(c.isascii() and (c.isalnum() or c in "_.") for c in name)


def render(fmt: str, uri: bytes, entries: list[Entry], exact_size: bool = True, localtime: bool = False,
           callback: str = "") -> bytes:
    """The listing of ``entries`` (in nginx's order) for the directory URI ``uri``.

    Args:
        fmt: "html", "json", "jsonp" or "xml".
        uri: the request's URI ($uri), as bytes.
        entries: the entries, hidden ones (".name") already left out.
        exact_size: html: sizes in bytes, else rounded to K, M, G.
        localtime: html: times in the local time zone, else UTC.
        callback: jsonp: the function name ("" gives json, as nginx).

    Returns:
        The body.
    """
    entries = ordered(entries)
    if fmt == "xml":
        return _xml(entries)
    if fmt in ("json", "jsonp"):
        return _json(entries, callback if fmt == "jsonp" else "")
    return _html(uri, entries, exact_size, localtime)


def _html(uri: bytes, entries: list[Entry], exact_size: bool, localtime: bool) -> bytes:
    title = escape_html(uri)
    out = [b"<html>\r\n<head><title>Index of ", title, b"</title></head>\r\n<body>\r\n<h1>Index of ", title,
           b'</h1><hr><pre><a href="../">../</a>\r\n']
    # nginx adds the current offset from UTC (tp->gmtoff), the same for every entry.
    offset = time.localtime().tm_gmtoff if localtime else 0
    for e in entries:
        out.append(b'<a href="' + escape_component(e.name) + (b'/">' if e.dir else b'">'))
        n = len(e.name)  # bytes: nginx counts characters only with "charset utf-8"
        if n > NAME_LEN:
            out.append(escape_html(e.name[: NAME_LEN - 3]) + b"..&gt;</a>")
        else:
            out.append(escape_html(e.name))
            if e.dir and n < NAME_LEN:
                out.append(b"/")
                n += 1
            out.append(b"</a>" + b" " * (NAME_LEN - n))
        tm = time.gmtime(e.mtime + offset)
        out.append(b" %02d-%s-%d %02d:%02d " % (tm.tm_mday, _MONTHS[tm.tm_mon - 1].encode(), tm.tm_year,
                                                  tm.tm_hour, tm.tm_min))
        out.append(_size(e, exact_size) + b"\r\n")
    out.append(b"</pre><hr></body>\r\n</html>\r\n")
    return b"".join(out)


def _size(e: Entry, exact: bool) -> bytes:
    """The size column: 19 wide (exact) or 7 wide (rounded), "-" for directories."""
    if exact:
        return b"%19s" % b"-" if e.dir else b"%19d" % e.size
    if e.dir:
        return b"      -"
    size, scale = e.size, b""
    for unit, letter in ((1024 * 1024 * 1024, b"G"), (1024 * 1024, b"M")):
        if size > unit - 1:
            size, scale = size // unit + (size % unit > unit // 2 - 1), letter
            break
    else:
        if size > 9999:
            size, scale = size // 1024 + (size % 1024 > 511), b"K"
    return b"%6d%s" % (size, scale) if scale else b" %6d" % size


def _json(entries: list[Entry], callback: str) -> bytes:
    items = []
    for e in entries:
        kind = b"directory" if e.dir else b"file" if e.file else b"other"
        item = (b'\r\n{ "name":"' + _escape_json(e.name) + b'", "type":"' + kind + b'", "mtime":"'
                + formatdate(e.mtime, usegmt=True).encode())
        item += b'", "size":%d }' % e.size if e.file else b'" }'
        items.append(item)
    body = b"[" + b",".join(items) + b"\r\n]"
    if callback:
        return b"/* callback */\r\n" + callback.encode() + b"(" + body + b");"
    return body


def _xml(entries: list[Entry]) -> bytes:
    out = [b'<?xml version="1.0"?>\r\n<list>\r\n']
    for e in entries:
        kind = b"directory" if e.dir else b"file" if e.file else b"other"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.mtime)).encode()
        size = b' size="%d"' % e.size if e.file else b""
        out.append(b"<" + kind + b' mtime="' + stamp + b'"' + size + b">" + escape_html(e.name) + b"</" + kind
                   + b">\r\n")
    out.append(b"</list>\r\n")
    return b"".join(out)
