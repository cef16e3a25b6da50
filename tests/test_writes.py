"""How a connection's writes leave (pyngx.listener.Connection.protocol_send).

Each test drives one Connection over a real loopback connection, on
asyncio's loop and on uvloop's, and records what reaches its
StreamWriter: which writes went out together, and when. The bytes really
cross the socket and the client checks them.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import RawData

from pyngx.listener import COALESCE_BYTES, DRAIN_BYTES, HELD_BYTES, Connection

HEAD = b"HTTP/1.1 200 \r\ncontent-length: 9\r\n\r\n"


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())


async def _connection() -> tuple[Connection, socket.socket, list[list[bytes]]]:
    """A Connection on the accepted end of a loopback connection, the other end
    (blocking), and the list of writes (each the pieces that left in one call)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=10)
    accepted, _ = listener.accept()
    listener.close()
    accepted.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=accepted)
    writes: list[list[bytes]] = []
    write, writelines = writer.write, writer.writelines

    def record_write(data: bytes) -> None:
        writes.append([data])
        write(data)

    def record_writelines(data: Any) -> None:
        data = list(data)
        writes.append(data)
        writelines(data)

    writer.write = record_write  # type: ignore[method-assign]
    writer.writelines = record_writelines  # type: ignore[method-assign]
    conn = Connection(None, asyncio.get_running_loop(), HypercornConfig(), None, {}, reader, writer,  # type: ignore[arg-type]
                      idle=set())
    return conn, client, writes


def _receive(client: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        part = client.recv(n - len(got))
        assert part, "the connection closed early"
        got += part
    return bytes(got)


async def _pass() -> None:
    """Let the event loop finish the pass it is in (call_soon callbacks run)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_large_pieces_sent_in_one_pass_leave_in_one_write_with_the_head(loop: str) -> None:
    """A head and two large body pieces sent in one pass leave together, at the pass's end,
    and arrive in order."""

    async def main() -> None:
        conn, client, writes = await _connection()
        a, b = os.urandom(200_000), os.urandom(COALESCE_BYTES)
        await conn.protocol_send(RawData(HEAD))
        await conn.protocol_send(RawData(a))
        await conn.protocol_send(RawData(b))
        assert writes == []  # nothing left yet
        await _pass()
        assert writes == [[HEAD, a, b]]
        assert writes[0][1] is a  # handed on, not copied
        got = await asyncio.to_thread(_receive, client, len(HEAD) + len(a) + len(b))
        assert got == HEAD + a + b
        client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_held_bytes_are_bounded_and_a_small_write_takes_what_waits(loop: str) -> None:
    """A large piece that would take the held bytes past HELD_BYTES leaves at once with
    those held; a small piece (under COALESCE_BYTES) is not held and takes the held ones
    along, in order."""

    async def main() -> None:
        conn, client, writes = await _connection()
        piece = HELD_BYTES // 2
        a, b, c = os.urandom(piece), os.urandom(piece), os.urandom(piece)
        await conn.protocol_send(RawData(a))
        await conn.protocol_send(RawData(b))
        assert writes == []  # exactly HELD_BYTES wait
        await conn.protocol_send(RawData(c))
        assert writes == [[a, b, c]]  # at once, in the same pass
        d, small = os.urandom(COALESCE_BYTES), os.urandom(COALESCE_BYTES - 1)
        receiving = asyncio.create_task(asyncio.to_thread(_receive, client, 3 * piece + len(d) + len(small)))
        await asyncio.sleep(0.2)  # the socket takes the first three
        await conn.protocol_send(RawData(d))
        assert len(writes) == 1
        await conn.protocol_send(RawData(small))
        assert writes[1:] == [[d, small]]
        assert await asyncio.wait_for(receiving, 10) == a + b + c + d + small
        await _pass()
        assert len(writes) == 2  # the scheduled flush found nothing left
        client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_large_piece_is_not_held_while_the_socket_is_backed_up(loop: str) -> None:
    """While the socket's buffer holds DRAIN_BYTES or more (a client that does not read),
    a large piece goes out at once and its sender waits until the client takes the data."""

    async def main() -> None:
        conn, client, writes = await _connection()
        transport = conn.writer.transport
        sent = bytearray()
        while transport.get_write_buffer_size() < DRAIN_BYTES:
            piece = os.urandom(COALESCE_BYTES - 1)  # small: written at once, never drained here
            transport.write(piece)
            sent += piece
        big = os.urandom(COALESCE_BYTES)
        before = len(writes)
        sending = asyncio.create_task(conn.protocol_send(RawData(big)))
        await asyncio.sleep(0.2)
        assert writes[before:] == [[big]]  # went out at once (into the transport)
        assert not sending.done()  # and the sender waits for the client
        got = await asyncio.to_thread(_receive, client, len(sent) + len(big))
        await asyncio.wait_for(sending, 10)
        assert got == bytes(sent) + big
        client.close()

    run(loop, main)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_nothing_is_held_for_a_closed_connection(loop: str) -> None:
    """Once the transport is closing, a large piece is not held for a later write: it goes
    to the writer at once (which drops it, or raises and the protocol is told of the close)."""

    async def main() -> None:
        conn, client, writes = await _connection()
        events: list[object] = []

        class Protocol:  # stands in for Hypercorn's: only told of the close
            async def handle(self, event: object) -> None:
                events.append(event)

        conn.protocol = Protocol()  # type: ignore[assignment]
        conn.writer.transport.close()
        piece = os.urandom(COALESCE_BYTES)
        await conn.protocol_send(RawData(piece))
        assert conn.pending == [] and conn.held == 0
        assert writes == [[piece]]
        assert all(type(e).__name__ == "Closed" for e in events)
        client.close()

    run(loop, main)
