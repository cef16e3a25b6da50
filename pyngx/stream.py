"""What a client connection reads: the transport's chunks, handed on uncopied.

Owns: ``ChunkReader``, the reader that ``pyngx.listener`` gives Hypercorn's
connection in place of ``asyncio.StreamReader``. asyncio's reader copies
every byte twice on its way through (into its buffer, and out of it into
the bytes that ``read`` returns); the event loop's chunks are bytes
already, so ``ChunkReader`` keeps them in a queue and ``read`` returns
them as they are. On a request body that is two of the ten copies the
stack makes of each byte (callgrind, 64 MiB upload).

It has the part of ``asyncio.StreamReader`` that its callers use:
``asyncio.StreamReaderProtocol`` (set_transport, feed_data, feed_eof,
set_exception), ``asyncio.StreamWriter.drain`` (exception) and
Hypercorn's ``TCPServer`` (read, at_eof); with the same flow control
(reading pauses past twice ``limit`` bytes held, resumes at ``limit``),
and a bound on the number of chunks held (``MAX_CHUNKS``): a client
sending its bytes one per TCP segment would otherwise have each held as
an object of its own (about 50 bytes apiece) where StreamReader's buffer
held the byte.

Must not: parse what it reads (h11, Hypercorn do), or know about HTTP.

Source: Python docs, asyncio "Streams" (StreamReader.read, at_eof) and
"Transports and Protocols" (pause_reading, resume_reading).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any, SupportsIndex, cast


#: Reading pauses while more chunks than this are held (and resumes at half).
MAX_CHUNKS = 1024


class ChunkReader(asyncio.StreamReader):
    """A connection's incoming bytes as the transport delivered them.

    A StreamReader subclass only because asyncio.StreamWriter insists on
    one: none of StreamReader's state or code is used, and its line and
    exact-size reads, which nothing here needs, raise NotImplementedError.

    Args:
        loop: the event loop the connection runs in.
        limit: bytes held before the transport is paused is twice this,
            and it resumes when at most this many are left (asyncio's
            StreamReader's rule; bytes).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 2**16) -> None:
        super().__init__(limit, loop)
        self.loop = loop
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        #: Bytes held in ``chunks``.
        self.size = 0
        self.eof = False
        self.error: Exception | None = None
        self.transport: asyncio.ReadTransport | None = None
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # -- the protocol's side --------------------------------------------------------

    def set_transport(self, transport: asyncio.BaseTransport) -> None:
        # A reading transport (uvloop's are not registered as asyncio.ReadTransport).
        self.transport = cast(asyncio.ReadTransport, transport)

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        # bytes from the event loop; anything else (a bytearray, a memoryview)
        # could change under us, and is copied.
        chunk = data if type(data) is bytes else bytes(data)
        if not chunk:
            return
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._wake()
        if not self.paused and (self.size > 2 * self.limit or len(self.chunks) > MAX_CHUNKS) \
                and self.transport is not None:
            try:
                self.transport.pause_reading()
            except NotImplementedError:  # a transport that cannot pause: read on
                self.transport = None
            else:
                self.paused = True

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def set_exception(self, exc: Exception) -> None:
        self.error = exc
        self._wake()

    def exception(self) -> Exception | None:
        return self.error

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<ChunkReader {self.size} bytes in {len(self.chunks)} chunks{' eof' if self.eof else ''}" \
               f"{' paused' if self.paused else ''}>"

    # -- the reader's side ----------------------------------------------------------

    async def readline(self) -> bytes:
        raise NotImplementedError("ChunkReader has read() only")

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        raise NotImplementedError("ChunkReader has read() only")

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError("ChunkReader has read() only")

    def at_eof(self) -> bool:
        """True once the peer's end was fed and every byte read."""
        return self.eof and not self.chunks

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (-1: the next chunk, whatever its size; 0: b""
        at once, as StreamReader): the next chunk whole when it fits, several
        small ones joined; b"" at the end of the stream.

        Returns:
            bytes: at most ``n`` of them (any number for -1).

        Raises:
            the error the connection failed with (as StreamReader.read), or
            RuntimeError: another read is already waiting.
        """
        while True:
            if self.error is not None:
                raise self.error
            if n == 0:
                return b""
            if self.chunks or self.eof:
                break
            if self.waiter is not None:
                raise RuntimeError("read() called while another coroutine is already waiting for incoming data")
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        chunks = self.chunks
        parts: list[bytes] = []
        room = n if n > 0 else len(chunks[0]) if chunks else 0
        while chunks and room > 0:
            part = chunks.popleft()
            if len(part) > room:
                chunks.appendleft(part[room:])
                part = part[:room]
            parts.append(part)
            room -= len(part)
        if not parts:
            return b""
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.size -= len(data)
        if self.paused and self.size <= self.limit and len(chunks) <= MAX_CHUNKS // 2 \
                and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data
