"""Static files: nginx's try-files phase and its static, index and autoindex
content handlers.

Owns: ``try_files`` (a file matches: the URI becomes its name; else
"=code", "@name" or an internal redirect); ``serve_static``, the content
handlers nginx runs for a location without proxy_pass, in its order:
index (a directory URI's first index file that exists: internal redirect),
autoindex (pyngx.autoindex), static (the file; a directory without its
slash: 301 to "uri/"), else 403 for a directory URI; and a file's answer:
Content-Type from ``types`` by the URI's extension, else ``default_type``;
Last-Modified; ETag "mtime-size" in hex; 304, 412, 206 and 416 as decided
by pyngx.conditional; "Accept-Ranges: bytes" on whole answers. Files are
opened and sent by pyngx.fileio (threads, chunks).

Input: the request with its location found (app.py's content phase); the
file name of its URI comes from docroot.py (root, alias, the ".." guard).
Output: None when the answer was sent, else an ``Outcome``: ``Finish``
(404, 403, 405, 301 with Location, 412, 416, 500) for app.py to answer
(error_page applies), or a ``Redirect`` (index, try_files).
Must not: route, or read a whole file into memory.

Source: nginx docs: ngx_http_core_module (root, alias, try_files, types,
default_type, etag, log_not_found), ngx_http_index_module,
ngx_http_autoindex_module; nginx src/http/ngx_http_core_module.c
(ngx_http_map_uri_to_path, ngx_http_core_try_files_phase,
ngx_http_core_content_phase, ngx_http_set_exten),
src/http/modules/ngx_http_static_module.c, ngx_http_index_module.c,
ngx_http_autoindex_module.c.

Differs from nginx: symbolic links are followed, as with nginx's default
``disable_symlinks off`` (the only setting pyngx has); but a file name
that would leave the root or alias path through a ".." segment (made by
a rewrite, a capture, or the URI after an alias whose location has no
trailing slash) is refused with 404 and an error-log line, where nginx
opens it.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from pyngx import autoindex, conditional, fileio
from pyngx.config.model import LocationConf
from pyngx.docroot import ADD_URI_TO_ALIAS, alias_name, config_base, inside, limit_path, map_uri, root_path
from pyngx.fileio import err_text, shown
from pyngx.request import Request
from pyngx.responses import server_header
from pyngx.special import Finish, Outcome, Redirect, internal_redirect

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# Methods the static and index handlers take (others: 405); autoindex takes GET and HEAD.
_GHP = frozenset({"GET", "HEAD", "POST"})
# open() errors that mean "not found" (nginx: NGX_ENOENT, NGX_ENOTDIR, NGX_ENAMETOOLONG).
_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
# multipart/byteranges boundaries: 1, 2, ... in each worker process, kept
# across reloads, as nginx's ngx_next_temp_number counts (nginx's counter
# is shared by its workers).
_BOUNDARIES = itertools.count(1)


def _alias_alert(req: Request, loc: LocationConf, log: Any) -> Finish:
    log.error("alias_rewritten", nginx_level="alert",
              reason=f'"alias" cannot be used in location "{loc.name}" where URI was rewritten', **_context(req))
    return Finish(500)


# --- the try-files phase ------------------------------------------------------------


async def try_files(rt: Any, req: Request, log: Any) -> Outcome | None:
    """nginx's try-files phase for the request's location (``try_files`` set).

    Each file is looked for under root or alias; a name written with a
    trailing "/" must be a directory, any other a non-directory. The first
    that exists becomes the URI, and the content phase goes on in this
    location. Else the last argument acts: "=code" ends the request with
    that status, "@name" goes to the named location, a URI redirects
    internally (with the arguments it has, if any: the request's are dropped).

    Args:
        rt: the Runtime (for the config's directory).
        req: the request; its URI may change.
        log: the error log.

    Returns:
        None (go on to content), or ``Finish`` / ``Redirect``.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_try_files_phase.
    """
    loc = req.location
    assert loc is not None and loc.try_files is not None
    tf, doc = loc.try_files, loc.root
    if doc.alias and not req.valid_location:
        return _alias_alert(req, loc, log)
    base = config_base(rt.config.path)
    root = root_path(req, doc, base)
    limit = limit_path(req, doc, root, base)
    for template, test_dir in tf.files:
        name = alias_name(req, doc, template.render(req), template.constant is None)
        path = root + name
        if not inside(path, limit):
            continue
        try:
            st = await fileio.run(fileio.probe, path)
        except OSError as exc:
            if exc.errno not in _NOT_FOUND:
                log.critical("open_failed", reason=f'open() "{shown(path)}" failed {err_text(exc)}', **_context(req))
            continue
        if stat.S_ISDIR(st.st_mode) != test_dir:
            continue
        if not doc.alias:
            req.uri = name
        elif doc.strip < 0:
            if not test_dir:
                req.uri = name
                req.variables[ADD_URI_TO_ALIAS] = "1"
        else:
            req.uri = req.uri[: doc.strip] + name
        return None
    if tf.code is not None:
        return Finish(tf.code)
    target = alias_name(req, doc, tf.last.render(req), tf.last.constant is None)
    return internal_redirect(target)  # "@name", or a URI with its own arguments or none (ngx_http_split_args)


# --- the content handlers -------------------------------------------------------------


async def serve_static(rt: Any, req: Request, send: Send, receive: Receive, log: Any,
                       err_status: int = 0) -> Outcome | None:
    """Answer from the file system: nginx's index, autoindex and static handlers.

    Args:
        rt: the Runtime (for the config's directory).
        req: the request, its location found.
        send: the request's send (header filters applied).
        receive: the request's receive (watched for the client going away).
        log: the error log.
        err_status: the status an error_page chose (0: none). A file sent
            for it answers with that status: no 304, 412 or ranges unless it
            is 200, and no Last-Modified, as nginx's filters.

    Returns:
        None when the answer was sent, else the ``Outcome`` to finish with.
    """
    loc = req.location
    assert loc is not None
    base = config_base(rt.config.path)
    if req.uri.endswith("/"):
        if req.method in _GHP:
            out = await _index(req, loc, base, log)
            if out is not None:
                return out
        if loc.autoindex and req.method in ("GET", "HEAD"):
            return await _autoindex(req, loc, base, send, log, err_status)
        if req.method not in _GHP:
            return Finish(405)
        # nginx's content phase when every handler declined a directory URI.
        mapped = map_uri(req, loc, base)
        if mapped is not None:
            log.error("directory_forbidden", reason=f'directory index of "{shown(mapped[0])}" is forbidden',
                      **_context(req))
        return Finish(403)
    if req.method not in _GHP:
        return Finish(405)
    return await _file(rt, req, loc, base, send, receive, log, err_status)


async def _index(req: Request, loc: LocationConf, base: str, log: Any) -> Outcome | None:
    """The index module: the first index file that can be opened gives an
    internal redirect to URI + name; None when there is none.

    Source: nginx src/http/modules/ngx_http_index_module.c, ngx_http_index_handler.
    """
    mapped = map_uri(req, loc, base)
    if mapped is None:
        return _alias_alert(req, loc, log)
    directory, limit = mapped
    dir_tested = False
    for template in loc.index:
        name = template.render(req)
        if name.startswith("/"):
            return Redirect(name, req.args)
        path = directory + name
        if not inside(path, limit):
            continue
        try:
            await fileio.run(fileio.probe, path)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EACCES):
                return _index_error(req, loc, path, exc, log)
            if not dir_tested:
                out = await _test_dir(req, loc, directory, path, log)
                if out is not None:
                    return out
                dir_tested = True
            if exc.errno == errno.ENOENT:
                continue
            log.error("open_failed", reason=f'open() "{shown(path)}" failed {err_text(exc)}', **_context(req))
            return Finish(500)
        # Redirect, not internal_redirect: the index keeps the request's arguments.
        return Redirect(req.uri + name, req.args)
    return None


async def _test_dir(req: Request, loc: LocationConf, directory: str, path: str, log: Any) -> Outcome | None:
    """The directory of an index file that could not be opened must exist (else 404)."""
    name = directory[:-1] if directory.endswith("/") and len(directory) > 1 else directory
    try:
        st = await fileio.run(os.stat, fileio.checked(name))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return _index_error(req, loc, path, exc, log)
        if exc.errno == errno.EACCES:
            return None
        log.critical("open_failed", reason=f'open() "{shown(name)}" failed {err_text(exc)}', **_context(req))
        return Finish(500)
    if stat.S_ISDIR(st.st_mode):
        return None
    log.error("not_a_directory", nginx_level="alert", reason=f'"{shown(path)}" is not a directory', **_context(req))
    return Finish(500)


def _index_error(req: Request, loc: LocationConf, path: str, exc: OSError, log: Any) -> Finish:
    if exc.errno == errno.EACCES:
        log.error("index_forbidden", reason=f'"{shown(path)}" is forbidden {err_text(exc)}', **_context(req))
        return Finish(403)
    if loc.log_not_found:
        log.error("index_not_found", reason=f'"{shown(path)}" is not found {err_text(exc)}', **_context(req))
    return Finish(404)


async def _autoindex(req: Request, loc: LocationConf, base: str, send: Send, log: Any,
                     err_status: int) -> Outcome | None:
    """The autoindex module: the directory's listing (entries read whole first).

    Source: nginx src/http/modules/ngx_http_autoindex_module.c, ngx_http_autoindex_handler.
    """
    mapped = map_uri(req, loc, base)
    if mapped is None:
        return _alias_alert(req, loc, log)
    path = mapped[0][:-1] if len(mapped[0]) > 1 else mapped[0]
    fmt, callback = loc.autoindex_format, ""
    if fmt == "jsonp":
        callback = _arg(req.args, "callback")
        if not autoindex.valid_callback(callback):
            log.info("bad_callback", reason=f'client sent invalid callback name: "{callback}"', **_context(req))
            return Finish(400)
        fmt = "jsonp" if callback else "json"
    try:
        entries = await fileio.run(fileio.read_dir, path, log, _context(req))
    except OSError as exc:
        if exc.errno in _NOT_FOUND:
            status, level = 404, "error"
        else:
            status, level = (403, "error") if exc.errno == errno.EACCES else (500, "crit")
        log.error("opendir_failed", nginx_level=level, reason=f'opendir() "{shown(path)}" failed {err_text(exc)}',
                  **_context(req))
        return Finish(status)
    if entries is None:
        return Finish(500)
    body = b"" if req.method == "HEAD" else autoindex.render(
        fmt, req.uri.encode("utf-8", "surrogateescape"), entries, loc.autoindex_exact_size,
        loc.autoindex_localtime, callback)
    req.status = err_status or 200
    headers = [(b"server", server_header(loc.server_tokens)), (b"content-type", autoindex.CONTENT_TYPES[fmt])]
    await send({"type": "http.response.start", "status": req.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    req.body_bytes_sent = len(body)
    if body and req.protocol == "HTTP/1.1":
        # No Content-Length: HTTP/1.1 sends one chunk and the last chunk, and
        # nginx's $body_bytes_sent counts their framing too.
        req.body_bytes_sent += len(b"%x\r\n\r\n0\r\n\r\n" % len(body))
    return None


async def _file(rt: Any, req: Request, loc: LocationConf, base: str, send: Send, receive: Receive, log: Any,
                err_status: int) -> Outcome | None:
    """The static module: the file, or a 301 to "uri/" for a directory.

    Source: nginx src/http/modules/ngx_http_static_module.c, ngx_http_static_handler.
    """
    mapped = map_uri(req, loc, base)
    if mapped is None:
        return _alias_alert(req, loc, log)
    path, limit = mapped
    if not inside(path, limit):
        log.error("outside_root", reason=f'"{shown(path)}" is outside "{shown(limit)}"', **_context(req))
        return Finish(404)
    try:
        fd, st, data = await fileio.open_file(path)
    except OSError as exc:
        return _open_error(req, loc, path, exc, log)
    if stat.S_ISDIR(st.st_mode):  # nginx's redirect to the URI with a slash
        location = _escape_uri(req.uri.encode("utf-8", "surrogateescape")) + "/"
        return Finish(301, location + ("?" + req.args if req.args else ""))
    file = fileio.OpenFile(fd, data)
    try:
        if not stat.S_ISREG(st.st_mode):
            log.critical("not_a_file", reason=f'"{shown(path)}" is not a regular file', **_context(req))
            return Finish(404)
        if req.method == "POST":
            return Finish(405)
        return await _answer(rt, req, loc, file, path, st, send, receive, log, err_status)
    finally:
        file.close()


def _open_error(req: Request, loc: LocationConf, path: str, exc: OSError, log: Any) -> Finish:
    code = exc.errno
    if code in _NOT_FOUND:
        if loc.log_not_found:
            log.error("open_failed", reason=f'open() "{shown(path)}" failed {err_text(exc)}', **_context(req))
        return Finish(404)
    status = 403 if code == errno.EACCES else 500
    log.error("open_failed", nginx_level="error" if status == 403 else "crit",
              reason=f'open() "{shown(path)}" failed {err_text(exc)}', **_context(req))
    return Finish(status)


async def _answer(rt: Any, req: Request, loc: LocationConf, file: fileio.OpenFile, path: str, st: os.stat_result,
                  send: Send, receive: Receive, log: Any, err_status: int) -> Outcome | None:
    """Send an open regular file: its headers, the 304 / 412 / 206 / 416
    decisions of nginx's filters, then its bytes."""
    size, mtime = st.st_size, int(st.st_mtime)
    etag = f'"{mtime:x}-{size:x}"' if loc.etag else None
    ctype = content_type(loc, req.uri)
    status = err_status or 200
    headers = [(b"server", server_header(loc.server_tokens))]
    spans: list[bytes | tuple[int, int]] = [(0, size)]
    if status == 200:
        check = conditional.not_modified(req, loc, mtime, etag)
        if check == 412:
            return Finish(412)
        if check == 304:
            headers.append((b"last-modified", formatdate(mtime, usegmt=True).encode()))
            if etag is not None:
                headers.append((b"etag", etag.encode()))
            req.status = 304
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return None
        ranges = conditional.byte_ranges(req, loc, size, mtime, etag)
        if ranges == conditional.RANGE_NOT_SATISFIABLE:
            return Finish(416, headers=((b"content-range", b"bytes */%d" % size),))
        if isinstance(ranges, list) and len(ranges) == 1:
            status, (start, end) = 206, ranges[0]
            spans = [(start, end)]
            headers += [(b"content-type", ctype), (b"content-length", b"%d" % (end - start))]
            extra = [(b"content-range", b"bytes %d-%d/%d" % (start, end - 1, size))]
        elif isinstance(ranges, list):
            status, boundary = 206, b"%020d" % next(_BOUNDARIES)
            spans = conditional.multipart(boundary, ctype, ranges, size)
            length = sum(len(s) if isinstance(s, bytes) else s[1] - s[0] for s in spans)
            headers += [(b"content-type", b"multipart/byteranges; boundary=" + boundary),
                        (b"content-length", b"%d" % length)]
            extra = []
        else:
            headers += [(b"content-type", ctype), (b"content-length", b"%d" % size)]
            extra = [(b"accept-ranges", b"bytes")] if loc.max_ranges != 0 else []
        headers.append((b"last-modified", formatdate(mtime, usegmt=True).encode()))
    else:
        headers += [(b"content-type", ctype), (b"content-length", b"%d" % size)]
        extra = []
    if etag is not None:
        headers.append((b"etag", etag.encode()))
    headers += extra
    req.status = status
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if req.method == "HEAD":
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return None
    await fileio.stream(req, file, path, spans, send, receive, log, _context(req))
    return None


def content_type(loc: LocationConf, uri: str) -> bytes:
    """The type of the URI's extension in ``types``, else ``default_type``.

    The extension follows the last "." of the last path segment, unless that
    "." starts the segment; A-Z are looked up lower-cased.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_set_exten, ngx_http_set_content_type.
    """
    slash = uri.rfind("/")
    dot = uri.rfind(".")
    if dot > slash + 1 and dot > 1:
        ext = uri[dot + 1 :]
        found = loc.types.get(ext.lower() if ext.isascii() else ext)
        if found is not None:
            return found.encode("latin-1", "replace")
    return loc.default_type.encode("latin-1", "replace")


# --- small helpers --------------------------------------------------------------------------


# NGX_ESCAPE_URI: what nginx %-escapes in the Location of its directory redirect.
_URI_ESCAPE = frozenset(range(0x21)) | frozenset(b'"#%<>?\\^`{|}') | frozenset(range(0x7F, 0x100))


def _escape_uri(raw: bytes) -> str:
    return "".join(f"%{c:02X}" if c in _URI_ESCAPE else chr(c) for c in raw)


def _arg(args: str, name: str) -> str:
    """The raw value of argument ``name`` (nginx: ngx_http_arg), or ""."""
    for pair in args.split("&"):
        key, eq, value = pair.partition("=")
        if key == name and eq:
            return value
    return ""


def _context(req: Request) -> dict[str, str]:
    """nginx's error-log context: client, server, request, host."""
    return {
        "client": req.remote_addr,
        "server": req.server.server_names[0] if req.server is not None and req.server.server_names else "",
        "request": f"{req.method} {req.request_uri} {req.protocol}",
        "host": req.header_map.get("host", ""),
    }
