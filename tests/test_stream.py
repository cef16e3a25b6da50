"""ChunkReader (pyngx.stream): a connection's bytes handed on as the event loop delivered them.

Each test runs the reader behind asyncio.StreamReaderProtocol on a real
loopback connection, as pyngx.listener does.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from pyngx.stream import MAX_CHUNKS, ChunkReader


async def _pair(limit: int = 2**16) -> tuple[ChunkReader, socket.socket]:
    """A ChunkReader on the accepted end of a loopback connection, and the other end (blocking)."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
    listener.close()
    conn.setblocking(False)
    reader = ChunkReader(loop, limit)
    protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: None, loop=loop)
    await loop.connect_accepted_socket(lambda: protocol, conn)
    return reader, client


async def _read_all(reader: ChunkReader, n: int) -> bytes:
    parts = []
    while not reader.at_eof():
        parts.append(await asyncio.wait_for(reader.read(n), 10))
    return b"".join(parts)


def test_chunks_are_handed_on_whole_cut_at_n_and_small_ones_joined() -> None:
    """The very bytes object fed comes out of read() when it fits; a longer one is cut at n (the
    rest comes next); several small ones waiting come out joined, up to n."""

    async def main() -> None:
        reader = ChunkReader(asyncio.get_running_loop())
        chunk = os.urandom(1000)
        reader.feed_data(chunk)
        assert await reader.read(4096) is chunk
        reader.feed_data(b"abcdef")
        assert await reader.read(0) == b""  # as StreamReader: nothing, at once
        assert await reader.read(4) == b"abcd"
        assert await reader.read(4) == b"ef"
        for piece in (b"12", b"345", b"6789"):
            reader.feed_data(piece)
        assert await reader.read(6) == b"123456"
        assert await reader.read(-1) == b"789"
        reader.feed_data(bytearray(b"copied"))  # not bytes: kept as a copy
        assert await reader.read(100) == b"copied"
        reader.feed_eof()
        assert reader.at_eof()
        assert await reader.read(100) == b""

    asyncio.run(main())


def test_a_read_waits_for_data_and_the_end() -> None:
    """read() waits until data or the end arrives; at_eof() is true only once both happened."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = ChunkReader(loop)
        pending = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)  # the read starts and waits
        assert not pending.done()
        loop.call_later(0.01, reader.feed_data, b"late")
        assert await asyncio.wait_for(pending, 5) == b"late"
        pending = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):  # one reader at a time, as StreamReader
            await reader.read(10)
        reader.feed_data(b"x")
        reader.feed_eof()
        assert await asyncio.wait_for(pending, 5) == b"x"
        assert reader.at_eof()

    asyncio.run(main())


def test_an_error_is_raised_by_read_and_line_reads_are_refused() -> None:
    """set_exception() wakes a waiting read() with the error (as StreamReader); the line and
    exact-size reads say they are not there rather than read nothing."""

    async def main() -> None:
        reader = ChunkReader(asyncio.get_running_loop())
        pending = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)
        error = ConnectionResetError(104, "reset")
        reader.set_exception(error)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(pending, 5)
        assert reader.exception() is error
        for call in (reader.readline(), reader.readuntil(b"\n"), reader.readexactly(1)):
            with pytest.raises(NotImplementedError):
                await call

    asyncio.run(main())


def test_many_tiny_chunks_pause_reading_too() -> None:
    """Bytes arriving one per chunk: reading pauses once MAX_CHUNKS are held, whatever their bytes,
    and resumes when a read has taken them (joined, up to n)."""

    async def main() -> None:
        reader, client = await _pair()
        try:
            for i in range(MAX_CHUNKS + 1):
                reader.feed_data(bytes([i % 256]))  # as the protocol would, one chunk each
            assert reader.paused and reader.size == MAX_CHUNKS + 1
            got = await asyncio.wait_for(reader.read(2**18), 5)
            assert len(got) == MAX_CHUNKS + 1 and not reader.paused
        finally:
            client.close()

    asyncio.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_over_a_connection_reading_pauses_and_resumes_and_every_byte_arrives_in_order(loop: str) -> None:
    """On asyncio's loop and on uvloop's (whose transports are not asyncio.ReadTransport): a peer that sends 4 MiB to a reader nobody reads: the transport is paused once more than
    twice the limit is held (so the reader holds at most that plus one chunk); reading resumes it,
    and the bytes arrive whole, in order; the peer's close is the end."""

    async def main() -> None:
        limit = 2**16
        reader, client = await _pair(limit)
        try:
            data = os.urandom(4 * 2**20)
            loop = asyncio.get_running_loop()
            sending = loop.run_in_executor(None, client.sendall, data)
            for _ in range(200):  # polls for at most 2 s
                if reader.paused:
                    break
                await asyncio.sleep(0.01)
            assert reader.paused
            held = reader.size
            await asyncio.sleep(0.1)
            # Nothing more was read while paused: at most twice the limit and one chunk.
            assert reader.size == held <= 2 * limit + 2**18
            received = []
            while sum(map(len, received)) < len(data):
                received.append(await asyncio.wait_for(reader.read(2**18), 10))
            await asyncio.wait_for(sending, 10)
        finally:
            client.close()
        assert await _read_all(reader, 2**18) == b""
        assert b"".join(received) == data
        assert not reader.paused

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())
