"""File I/O off the event loop: a private thread pool, opening files as
nginx does, and sending a file in chunks.

Owns: ``FILE_THREADS`` threads that open, stat and read files (so a slow
disk never blocks the event loop, and never starves the loop's default
executor, which aiohttp uses for DNS); ``read_dir`` (autoindex's
entries); ``OpenFile``, a descriptor closed
only once no read is in flight; ``stream``, which sends a file ``CHUNK``
bytes at a time, reading the next chunk while the last one is sent, and
stops when the client goes away or stops reading for ``SEND_TIMEOUT``.

Input: file names, descriptors, spans. Output: stat results, bytes, ASGI
body messages.
Must not: decide statuses or headers (pyngx.static does), or read a whole
file into memory.

Why no library: starlette's FileResponse (or aiofiles under a handler of
our own) would leave every observable detail to be redone to match nginx
(its ETag is an md5 of other fields, its ranges and 304s differ), and
aiofiles is a thread pool too; a private pool keeps a slow disk from
starving the loop's default executor.

Source: nginx src/core/ngx_open_file_cache.c (ngx_open_and_stat_file:
non-blocking open, fstat), src/os/unix/ngx_files.c; nginx docs:
ngx_http_core_module, send_timeout, aio threads.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyngx import autoindex
from pyngx.request import Request

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Bytes per read and per body message.
CHUNK = 64 * 1024
#: Seconds one body message may wait for the client (nginx's send_timeout default).
SEND_TIMEOUT = 60.0
#: Threads that open, stat and read files (nginx's thread_pool default is 32).
FILE_THREADS = 16

_FILES = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="pyngx-files")


class OpenFile:
    """An opened file: its descriptor, closed once no read is in flight, or
    its bytes when it was small enough to be read at open (see ``open_file``)."""

    __slots__ = ("fd", "data", "reading")

    def __init__(self, fd: int, data: bytes | None = None) -> None:
        self.fd = fd
        self.data = data
        self.reading: Future[bytes] | None = None

    def read(self, offset: int, n: int) -> asyncio.Future[bytes]:
        """``n`` bytes at ``offset`` (fewer at the end of the file), read in a file thread."""
        if self.data is not None:
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            done.set_result(self.data[offset : offset + n])
            return done
        self.reading = _FILES.submit(os.pread, self.fd, n, offset)
        return asyncio.wrap_future(self.reading)

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.reading is not None and not self.reading.done():
            self.reading.add_done_callback(lambda _: os.close(self.fd))
        else:
            os.close(self.fd)


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a file thread."""
    return await asyncio.wrap_future(_FILES.submit(fn, *args))


def probe(path: str) -> os.stat_result:
    """open() and fstat() as nginx's open_cached_file does, then close: what exists and can be opened."""
    fd = os.open(checked(path), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _open_fd(path: str) -> tuple[int, os.stat_result, bytes | None]:
    """open() without blocking on a FIFO, and fstat(). A directory is closed
    at once (fd -1); so is a regular file of at most ``CHUNK`` bytes, read
    whole first (fd -1 and its bytes: one trip to a thread for most files)."""
    fd = os.open(checked(path), os.O_RDONLY | os.O_NONBLOCK)
    data = None
    try:
        st = os.fstat(fd)
        keep = not stat.S_ISDIR(st.st_mode)
        if stat.S_ISREG(st.st_mode) and st.st_size <= CHUNK:
            data, keep = os.pread(fd, st.st_size, 0), False
    except BaseException:
        os.close(fd)
        raise
    if keep:
        return fd, st, None
    os.close(fd)
    return -1, st, data


def checked(path: str) -> str:
    """``path``, or ENOENT for a name with a NUL byte (no file can have one)."""
    if "\0" in path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return path


async def open_file(path: str) -> tuple[int, os.stat_result, bytes | None]:
    """``_open_fd`` in a file thread; the descriptor is closed if the request is cancelled meanwhile.

    Returns:
        (descriptor or -1, stat, the bytes of a small file or None).

    Raises:
        OSError: open(), fstat() or the read of a small file failed.
    """
    job = _FILES.submit(_open_fd, path)
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        job.add_done_callback(_close_later)
        raise


def _close_later(job: Future[tuple[int, os.stat_result, bytes | None]]) -> None:
    if not job.cancelled() and job.exception() is None and job.result()[0] >= 0:
        os.close(job.result()[0])


def _reads(spans: list[bytes | tuple[int, int]]) -> Iterator[bytes | tuple[int, int]]:
    """The spans as literal bytes and (offset, length) reads of at most CHUNK bytes."""
    for span in spans:
        if isinstance(span, bytes):
            yield span
            continue
        start, end = span
        while start < end:
            n = min(CHUNK, end - start)
            yield (start, n)
            start += n


async def stream(req: Request, file: OpenFile, path: str, spans: list[bytes | tuple[int, int]], send: Send,
                 receive: Receive, log: Any, ctx: dict[str, str]) -> None:
    """Send the spans (literal bytes, and (start, end) of the file): each
    read runs while the bytes before it are sent; counts
    ``req.body_bytes_sent``; ``ctx`` is the error log's request context.

    Stops early, leaving the answer cut (the server then closes the
    connection), when the client goes away, when a send waits longer than
    ``SEND_TIMEOUT``, or when a read fails or finds the file shorter.
    """
    total = sum(len(s) if isinstance(s, bytes) else s[1] - s[0] for s in spans)
    if total == 0:  # an empty file: the answer still needs its end
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    gone: asyncio.Task[None] | None = None
    if total > CHUNK:
        gone = asyncio.get_running_loop().create_task(_client_gone(receive))
    items = _reads(spans)
    prefix = b""
    item = next(items, None)
    while isinstance(item, bytes):  # literal bytes before the first read (multipart)
        prefix += item
        item = next(items, None)
    pending = file.read(*item) if item is not None else None
    try:
        while item is not None:
            assert pending is not None and not isinstance(item, bytes)
            try:
                data = await pending
            except OSError as exc:
                log.critical("read_failed", reason=f'pread() "{shown(path)}" failed {err_text(exc)}', **ctx)
                return
            if len(data) != item[1]:
                log.error("read_short", nginx_level="alert",
                          reason=f'pread() read only {len(data)} of {item[1]} from "{shown(path)}"', **ctx)
                return
            body = prefix + data
            item = next(items, None)
            while isinstance(item, bytes):  # literal bytes go out with the data before them
                body += item
                item = next(items, None)
            pending = file.read(*item) if item is not None else None  # read ahead while sending
            if gone is not None and gone.done():
                return
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await send({"type": "http.response.body", "body": body, "more_body": item is not None})
            except TimeoutError:
                log.info("send_timeout", reason="client timed out (110: Connection timed out) while sending "
                         "response to client", **ctx)
                return
            req.body_bytes_sent += len(body)
            prefix = b""
    finally:
        if gone is not None:
            gone.cancel()


async def _client_gone(receive: Receive) -> None:
    """Return when the client has gone away (Hypercorn's http.disconnect)."""
    while (await receive())["type"] not in ("http.disconnect", "websocket.disconnect"):
        pass


def read_dir(path: str, log: Any, ctx: dict[str, str]) -> list[autoindex.Entry] | None:
    """The entries of directory ``path`` as nginx's autoindex reads them,
    hidden ones left out (call it in a file thread); None after an error
    nginx answers 500 to. ``ctx`` is the error log's request context.

    Raises:
        OSError: the directory cannot be opened.
    """
    entries = []
    with os.scandir(os.fsencode(path)) as it:
        for de in it:
            if de.name.startswith(b"."):
                continue
            try:
                st = os.stat(de.path)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ELOOP):
                    log.critical("stat_failed", reason=f'stat() "{shown(de.path)}" failed {err_text(exc)}',
                                 **ctx)
                    if exc.errno == errno.EACCES:
                        continue
                    return None
                try:
                    st = os.lstat(de.path)
                except OSError as exc2:
                    log.critical("lstat_failed", reason=f'lstat() "{shown(de.path)}" failed {err_text(exc2)}',
                                 **ctx)
                    return None
            entries.append(autoindex.Entry(de.name, stat.S_ISDIR(st.st_mode), stat.S_ISREG(st.st_mode),
                                           int(st.st_mtime), st.st_size))
    return entries


def err_text(exc: OSError) -> str:
    """nginx's "(errno: message)" suffix of an error-log line."""
    return f"({exc.errno}: {exc.strerror})"


def shown(path: str | bytes) -> str:
    """A file name for the log: bytes that are not UTF-8 as \\xNN."""
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")
