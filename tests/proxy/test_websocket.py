"""WebSocket proxying end to end: a real pyngx between real clients
(websockets, aiohttp) and real aiohttp.web WebSocket upstreams, all on
127.0.0.1 (see wsbackend.py for the upstream routes)."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import Backend, Pyngx, free_port, start_backend
from tests.proxy.wsbackend import Mailbox, Stream, routes

MiB = 1024 * 1024

#: nginx's error-log texts.
REFUSED = "connect() failed (111: Connection refused) while connecting to upstream"
UPGRADED_TIMEOUT = "upstream timed out (110: Connection timed out) while proxying upgraded connection"

#: The nginx idiom for WebSocket locations (with the literal Connection value).
IDIOM = 'proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";'


@dataclass
class Setup:
    """A running upstream and a pyngx in front of it."""

    port: int
    backend: Backend
    box: Mailbox
    stream: Stream
    pyngx: Pyngx

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def make(run_pyngx: Callable[..., Pyngx]) -> AsyncIterator[Callable[..., Setup]]:
    """Factory: ``make(location_extra=IDIOM, upstream=None, http_extra="")`` starts an upstream and pyngx.

    In ``upstream`` and ``http_extra``, "{self}" stands for the started
    upstream's address.

    ``/ws/`` proxies to the upstream's ``/ws/`` unchanged; ``/v1/`` proxies
    with a URI part (``proxy_pass UPSTREAM/ws/``).
    """
    stops: list[Callable[[], None]] = []

    def start(location_extra: str = IDIOM, upstream: str | None = None, http_extra: str = "") -> Setup:
        box = Mailbox()
        stream = Stream()
        backend, stop = start_backend(extra_routes=routes(box, stream))
        stops.append(stop)
        port = free_port()
        me = f"127.0.0.1:{backend.port}"
        target = (upstream or backend.url).replace("{self}", me)
        http_extra = http_extra.replace("{self}", me)
        conf = f"""
http {{
  {http_extra}
  server {{
    listen 127.0.0.1:{port};
    location /ws/ {{ proxy_pass {target}; {location_extra} }}
    location /v1/ {{ proxy_pass {target}/ws/; {location_extra} }}
  }}
}}
"""
        return Setup(port, backend, box, stream, run_pyngx(conf, port=port))

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Raise this process's open-file limit for tests with hundreds of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` (a file or /proc read) until true, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


async def closed(ws: ClientConnection, timeout: float = 10.0) -> ConnectionClosed:
    """Read until the connection closes; returns the ConnectionClosed."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc
    raise AssertionError("unreachable")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class TestRelay:
    async def test_text_and_binary_round_trip(self, make: Callable[..., Setup]) -> None:
        """Text and binary messages reach the upstream and come back unchanged."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            await ws.send("")
            assert await ws.recv() == ""

    async def test_aiohttp_client(self, make: Callable[..., Setup]) -> None:
        """An aiohttp client relays text and binary through pyngx as well."""
        s = make()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(s.url("/ws/echo")) as ws:
                await ws.send_str("one")
                assert (await ws.receive(timeout=10)).data == "one"
                await ws.send_bytes(b"two")
                assert (await ws.receive(timeout=10)).data == b"two"

    async def test_16_mib_message(self, make: Callable[..., Setup]) -> None:
        """A 16 MiB binary message (the limit, inclusive) goes both ways intact."""
        s = make()
        payload = os.urandom(16 * MiB)
        async with connect(s.url("/ws/echo"), proxy=None, max_size=32 * MiB, compression=None) as ws:
            await ws.send(payload)
            assert await ws.recv() == payload

    async def test_10000_messages_in_order(self, make: Callable[..., Setup]) -> None:
        """10,000 small messages sent back to back come back complete and in order."""
        s = make()
        n = 10_000
        async with connect(s.url("/ws/echo"), proxy=None, compression=None) as ws:

            async def sender() -> None:
                for i in range(n):
                    await ws.send(f"m{i}")

            task = asyncio.create_task(sender())
            got = [await ws.recv() for _ in range(n)]
            await task
        assert got == [f"m{i}" for i in range(n)]

    async def test_500_concurrent_connections(self, make: Callable[..., Setup], many_fds: None) -> None:
        """500 connections open at once through one worker all relay, and
        closing them leaves pyngx with no more sockets than before."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as warm:  # pyngx opens some fds lazily
            await warm.send("x")
            assert await warm.recv() == "x"
        await s.box.get("closed")
        baseline = open_fds(s.pyngx.pid)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            conns = await asyncio.gather(*(session.ws_connect(s.url("/ws/echo")) for _ in range(500)))
            assert open_fds(s.pyngx.pid) >= baseline + 990  # a client and an upstream socket each
            for i, conn in enumerate(conns):
                await conn.send_str(f"c{i}")
            replies = await asyncio.gather(*(conn.receive(timeout=20) for conn in conns))
            assert [r.data for r in replies] == [f"c{i}" for i in range(500)]
            await asyncio.gather(*(conn.close() for conn in conns))
        await wait_for(lambda: open_fds(s.pyngx.pid) <= baseline, timeout=15)


class TestHandshake:
    async def test_headers_forwarded(self, make: Callable[..., Setup]) -> None:
        """proxy_set_header, cookies and Authorization go upstream; the
        handshake fields are the client library's, each exactly once."""
        s = make(IDIOM + " proxy_set_header X-Real-IP $remote_addr;")
        extra = {"Cookie": "a=1; b=2", "Authorization": "Bearer t0k3n", "X-Custom": "yes"}
        async with connect(s.url("/ws/echo?x=1"), proxy=None, additional_headers=extra) as ws:
            headers = await s.box.get("headers")
            await ws.send("ping")
            assert await ws.recv() == "ping"

        def all_(name: str) -> list[str]:
            return [v for k, v in headers if k.lower() == name]

        assert all_("host") == [f"127.0.0.1:{s.backend.port}"]
        assert all_("x-real-ip") == ["127.0.0.1"]
        assert all_("cookie") == ["a=1; b=2"]
        assert all_("authorization") == ["Bearer t0k3n"]
        assert all_("x-custom") == ["yes"]
        assert [v.lower() for v in all_("upgrade")] == ["websocket"]
        assert [v.lower() for v in all_("connection")] == ["upgrade"]
        assert all_("sec-websocket-version") == ["13"]
        assert len(all_("sec-websocket-key")) == 1
        # The client offered permessage-deflate to pyngx; the upstream hop is uncompressed.
        assert all_("sec-websocket-extensions") == []

    async def test_upgrade_without_idiom(self, make: Callable[..., Setup]) -> None:
        """A location without the Upgrade/Connection idiom still proxies WebSockets (a pyngx deviation)."""
        s = make("")
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"

    async def test_proxy_pass_uri_rule(self, make: Callable[..., Setup]) -> None:
        """proxy_pass with a URI part replaces the location prefix, as for HTTP."""
        s = make()
        async with connect(s.url("/v1/echo?q=%20z"), proxy=None) as ws:
            assert await s.box.get("path") == "/ws/echo?q=%20z"
            await ws.send("x")
            assert await ws.recv() == "x"

    async def test_subprotocol_negotiated(self, make: Callable[..., Setup]) -> None:
        """The upstream's choice among the client's subprotocols reaches the client."""
        s = make()
        offered = [Subprotocol("mqtt"), Subprotocol("superchat"), Subprotocol("chat")]
        async with connect(s.url("/ws/echo"), proxy=None, subprotocols=offered) as ws:
            assert await s.box.get("protocol") == "superchat"
            assert ws.subprotocol == "superchat"
            assert ws.response is not None
            assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"

    async def test_no_common_subprotocol(self, make: Callable[..., Setup]) -> None:
        """When the upstream takes none of the offered subprotocols, neither does pyngx."""
        s = make()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(s.url("/ws/echo"), protocols=("mqtt",)) as ws:
                assert await s.box.get("protocol") is None
                assert ws.protocol is None

    async def test_101_fields_passed(self, make: Callable[..., Setup]) -> None:
        """Fields of the upstream's 101, such as Set-Cookie, reach the client."""
        s = make()
        async with connect(s.url("/ws/cookie"), proxy=None) as ws:
            assert ws.response is not None
            assert "session=abc" in ws.response.headers["Set-Cookie"]
            assert ws.response.headers["Server"].startswith("pyngx")

    async def test_refused_with_body(self, make: Callable[..., Setup]) -> None:
        """An upstream that refuses the handshake with 403 and a body gives the client that status and body."""
        s = make()
        with pytest.raises(InvalidStatus) as info:
            async with connect(s.url("/ws/refuse"), proxy=None):
                pass
        resp = info.value.response
        assert resp.status_code == 403
        assert resp.body == b"no websockets for you\n"
        assert "seen=1" in resp.headers["Set-Cookie"]
        await wait_for(lambda: '"GET /ws/refuse HTTP/1.1" 403 22 ' in s.pyngx.stdout)

    async def test_upstream_unreachable_502(self, make: Callable[..., Setup]) -> None:
        """A refused upstream connection answers the handshake with 502 and logs nginx's error."""
        s = make(upstream=f"http://127.0.0.1:{free_port()}")
        with pytest.raises(InvalidStatus) as info:
            async with connect(s.url("/ws/echo"), proxy=None):
                pass
        assert info.value.response.status_code == 502
        assert b"502 Bad Gateway" in info.value.response.body
        await wait_for(lambda: REFUSED in s.pyngx.stderr)

    async def test_upstream_silent_504(self, make: Callable[..., Setup]) -> None:
        """An upstream that accepts but never answers the handshake gives 504 after proxy_read_timeout."""
        with socket.socket() as mute:
            mute.bind(("127.0.0.1", 0))
            mute.listen(8)  # the kernel accepts; nobody reads
            s = make(IDIOM + " proxy_read_timeout 1s;", upstream=f"http://127.0.0.1:{mute.getsockname()[1]}")
            with pytest.raises(InvalidStatus) as info:
                async with connect(s.url("/ws/echo"), proxy=None, open_timeout=10):
                    pass
        assert info.value.response.status_code == 504
        await wait_for(
            lambda: "upstream timed out (110: Connection timed out) while reading response header from upstream"
            in s.pyngx.stderr
        )

    async def test_connect_timeout_504(self, make: Callable[..., Setup]) -> None:
        """proxy_connect_timeout bounds the upstream connect of the handshake (504)."""
        with socket.socket() as full:
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            port = full.getsockname()[1]
            # Fill the accept queue; further SYNs are dropped and connect() hangs.
            fillers = [socket.socket() for _ in range(3)]
            for f in fillers:
                f.setblocking(False)
                f.connect_ex(("127.0.0.1", port))
            try:
                s = make(IDIOM + " proxy_connect_timeout 1s;", upstream=f"http://127.0.0.1:{port}")
                t0 = time.monotonic()
                with pytest.raises(InvalidStatus) as info:
                    async with connect(s.url("/ws/echo"), proxy=None, open_timeout=10):
                        pass
                assert time.monotonic() - t0 < 5
            finally:
                for f in fillers:
                    f.close()
        assert info.value.response.status_code == 504
        await wait_for(
            lambda: "upstream timed out (110: Connection timed out) while connecting to upstream" in s.pyngx.stderr
        )

    async def test_access_log_line(self, make: Callable[..., Setup]) -> None:
        """The session ends in one access-log line with status 101 and the bytes sent to the client."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None, compression=None) as ws:
            await ws.send("abcd")
            assert await ws.recv() == "abcd"
            await ws.send(b"12345678")
            assert await ws.recv() == b"12345678"
        await wait_for(lambda: '"GET /ws/echo HTTP/1.1" 101 12 ' in s.pyngx.stdout)
        assert s.pyngx.stdout.count("/ws/echo") == 1


class TestUpstreamGroups:
    @pytest.fixture
    async def second(self) -> AsyncIterator[tuple[Backend, Mailbox]]:
        """Another WebSocket upstream, with its own mailbox."""
        box = Mailbox()
        backend, stop = start_backend(extra_routes=routes(box))
        yield backend, box
        stop()

    async def test_peers_take_turns(self, make: Callable[..., Setup], second: tuple[Backend, Mailbox]) -> None:
        """WebSockets to an upstream block are spread over its servers (round-robin)."""
        other, other_box = second
        peers = f"upstream ws_up {{ server {{self}}; server 127.0.0.1:{other.port}; }}"
        s = make(upstream="http://ws_up", http_extra=peers)
        async with connect(s.url("/ws/echo"), proxy=None) as one, connect(s.url("/ws/echo"), proxy=None) as two:
            for ws in (one, two):
                await ws.send("x")
                assert await ws.recv() == "x"
            assert (await s.box.get("headers")) and (await other_box.get("headers"))

    async def test_next_upstream_on_refused_connect(self, make: Callable[..., Setup],
                                                    second: tuple[Backend, Mailbox]) -> None:
        """A peer that refuses the connection is passed over for the next one, and logged."""
        other, other_box = second
        s = make(upstream="http://ws_up",
                 http_extra=f"upstream ws_up {{ server 127.0.0.1:{free_port()}; server 127.0.0.1:{other.port}; }}")
        for i in range(3):
            async with connect(s.url("/ws/echo"), proxy=None) as ws:
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            assert (await other_box.get("closed"))[0] == 1000
        await wait_for(lambda: REFUSED in s.pyngx.stderr)

    async def test_open_websocket_holds_its_peer(self, make: Callable[..., Setup]) -> None:
        """An open WebSocket counts against its peer's max_conns until it ends (no live upstreams meanwhile)."""
        s = make(upstream="http://ws_up", http_extra="upstream ws_up { server {self} max_conns=1; }")
        async with connect(s.url("/ws/echo"), proxy=None) as first:
            await first.send("x")
            assert await first.recv() == "x"
            with pytest.raises(InvalidStatus) as info:
                async with connect(s.url("/ws/echo"), proxy=None):
                    pass
            assert info.value.response.status_code == 502
        await wait_for(lambda: '"GET /ws/echo HTTP/1.1" 101 ' in s.pyngx.stdout)  # the first has ended
        async with connect(s.url("/ws/echo"), proxy=None) as third:
            await third.send("y")
            assert await third.recv() == "y"
        await wait_for(lambda: "no live upstreams while connecting to upstream" in s.pyngx.stderr)


class TestClose:
    async def test_upstream_close_code_reaches_client(self, make: Callable[..., Setup]) -> None:
        """An upstream close 4001 "bye" reaches the client as 4001 "bye"."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("close 4001 bye")
            exc = await closed(ws)
        assert exc.rcvd is not None
        assert (exc.rcvd.code, exc.rcvd.reason) == (4001, "bye")

    async def test_client_close_code_reaches_upstream(self, make: Callable[..., Setup]) -> None:
        """A client close 4001 "bye" reaches the upstream as 4001 "bye"."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(4001, "bye")
        assert await s.box.get("closed") == (4001, "bye")

    async def test_client_normal_close(self, make: Callable[..., Setup]) -> None:
        """An aiohttp client's plain close reaches the upstream as 1000."""
        s = make()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(s.url("/ws/echo")) as ws:
                await ws.send_str("x")
                assert (await ws.receive(timeout=10)).data == "x"
        assert (await s.box.get("closed"))[0] == 1000

    async def test_upstream_killed(self, make: Callable[..., Setup]) -> None:
        """An upstream that vanishes mid-session closes the client with 1011 and logs an error."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.send("die")
            exc = await closed(ws)
        assert exc.rcvd is not None
        assert exc.rcvd.code in (1011, 1001)
        await wait_for(lambda: "while proxying upgraded connection" in s.pyngx.stderr)

    async def test_client_killed(self, make: Callable[..., Setup]) -> None:
        """A client that vanishes mid-session (no close frame) makes pyngx close the upstream with 1001."""
        s = make()
        ws = await connect(s.url("/ws/echo"), proxy=None)
        await ws.send("x")
        assert await ws.recv() == "x"
        ws.transport.abort()
        assert (await s.box.get("closed"))[0] == 1001

    async def test_stop_closes_both_sides(self, make: Callable[..., Setup]) -> None:
        """Stopping pyngx closes open WebSockets with 1001 on both sides."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            s.pyngx.proc.send_signal(signal.SIGTERM)
            exc = await closed(ws)
        assert exc.rcvd is not None and exc.rcvd.code == 1001
        assert (await s.box.get("closed"))[0] == 1001

    async def test_client_message_too_big(self, make: Callable[..., Setup]) -> None:
        """A client message over 16 MiB is refused with close 1009; the upstream is closed too."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None, max_size=None, compression=None) as ws:
            await ws.send(b"x" * (16 * MiB + 1))
            exc = await closed(ws)
        assert exc.rcvd is not None and exc.rcvd.code == 1009
        assert (await s.box.get("closed"))[0] == 1001

    async def test_upstream_message_too_big(self, make: Callable[..., Setup]) -> None:
        """An upstream message over 16 MiB closes the client with 1009 and ends the upstream connection."""
        s = make()
        async with connect(s.url("/ws/echo"), proxy=None, max_size=None, compression=None) as ws:
            await ws.send(f"big {16 * MiB + 1}")
            exc = await closed(ws)
        assert exc.rcvd is not None and exc.rcvd.code == 1009
        # The upstream is still writing the oversized frame when pyngx drops it.
        await s.box.get("closed")
        await wait_for(lambda: "upstream sent too big message" in s.pyngx.stderr)


class TestTimeouts:
    async def test_idle_connection_closed(self, make: Callable[..., Setup]) -> None:
        """With no message for proxy_read_timeout, pyngx closes both sides with 1001 and logs nginx's error."""
        s = make(IDIOM + " proxy_read_timeout 1s;")
        async with connect(s.url("/ws/silent"), proxy=None, ping_interval=None) as ws:
            await s.box.get("open")
            t0 = time.monotonic()
            exc = await closed(ws)
            waited = time.monotonic() - t0
        assert exc.rcvd is not None and exc.rcvd.code == 1001
        assert 0.8 < waited < 5
        assert (await s.box.get("closed"))[0] == 1001
        await wait_for(lambda: UPGRADED_TIMEOUT in s.pyngx.stderr)

    async def test_traffic_keeps_connection_open(self, make: Callable[..., Setup]) -> None:
        """Messages more often than proxy_read_timeout keep the connection open past it."""
        s = make(IDIOM + " proxy_read_timeout 1s;")
        async with connect(s.url("/ws/echo"), proxy=None, ping_interval=None) as ws:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 2.5:
                await ws.send(f"t{i}")
                assert await ws.recv() == f"t{i}"
                i += 1
                await asyncio.sleep(0.3)  # pacing the traffic, not synchronising

    async def test_client_messages_rearm_read_timeout(self, make: Callable[..., Setup]) -> None:
        """Client messages alone re-arm proxy_read_timeout (as nginx re-arms its
        upstream read timer on every event); when they stop, the connection closes."""
        s = make(IDIOM + " proxy_read_timeout 1s;")
        async with connect(s.url("/ws/sink"), proxy=None, ping_interval=None) as ws:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 2.5:
                await ws.send(f"t{i}")
                i += 1
                await asyncio.sleep(0.3)  # pacing the traffic, not synchronising
            assert ws.close_code is None  # still open after 2.5 proxy_read_timeouts
            exc = await closed(ws)
        assert exc.rcvd is not None and exc.rcvd.code == 1001
        assert (await s.box.get("closed"))[0] == 1001

    async def test_upstream_send_timeout(self, make: Callable[..., Setup]) -> None:
        """An upstream that stops reading is dropped after proxy_send_timeout; the client gets 1001."""
        s = make(IDIOM + " proxy_send_timeout 1s;")
        async with connect(s.url("/ws/deaf"), proxy=None, compression=None, ping_interval=None) as ws:
            resume = await s.box.get("resume")
            block = b"\x00" * MiB

            async def flood() -> None:
                while True:
                    await ws.send(block)

            flooder = asyncio.create_task(flood())
            try:
                exc = await closed(ws, timeout=20)
            finally:
                flooder.cancel()
                resume()
        assert exc.rcvd is not None and exc.rcvd.code == 1001
        await wait_for(lambda: UPGRADED_TIMEOUT in s.pyngx.stderr)


class TestBackpressure:
    async def test_slow_client_bounds_memory(self, make: Callable[..., Setup]) -> None:
        """A fast upstream streaming 200 MiB to a slow client is slowed down;
        pyngx's RSS stays under 150 MiB and the upstream never runs far ahead."""
        s = make()
        count, size = 200, MiB
        received = 0
        rss_max = 0
        lead_max = 0
        async with connect(
            s.url(f"/ws/stream?count={count}&size={size}"), proxy=None, max_size=2 * MiB, compression=None,
            max_queue=4,
        ) as ws:
            for i in range(count):
                received += len(await ws.recv())
                lead_max = max(lead_max, s.stream.sent - received)
                if i % 10 == 0:
                    rss_max = max(rss_max, s.pyngx.rss_kib())
                await asyncio.sleep(0.005)  # the slow reader
            exc = await closed(ws)
        assert received == count * size
        assert exc.rcvd is not None and exc.rcvd.code == 1000
        assert rss_max < 150 * 1024, f"pyngx RSS reached {rss_max} KiB"
        # Without backpressure the upstream would be done (200 MiB ahead) almost at once.
        assert lead_max < 64 * MiB, f"upstream ran {lead_max / MiB:.0f} MiB ahead"


NGINX_CONF = """
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location /ws/ {{ proxy_pass {upstream}; {extra} }}
  }}
}}
"""


class TestAgainstNginx:
    """The same upstream behind nginx and behind pyngx, the same exchanges."""

    @pytest.fixture
    async def both(self, make: Callable[..., Setup], run_nginx: Callable[..., object]) -> tuple[Setup, str]:
        """(pyngx setup, nginx base URL) in front of one upstream."""
        extra = IDIOM + " proxy_set_header X-Real-IP $remote_addr;"
        s = make(extra)
        port = free_port()
        run_nginx(NGINX_CONF.format(port=port, upstream=s.backend.url, extra=extra), port)
        return s, f"ws://127.0.0.1:{port}"

    async def test_round_trip_and_upstream_close(self, both: tuple[Setup, str]) -> None:
        """Messages and an upstream close 4001 "bye" reach the client alike through both."""
        s, nginx = both
        seen = []
        for base in (s.url(""), nginx):
            async with connect(base + "/ws/echo", proxy=None) as ws:
                await ws.send("héllo")
                text = await ws.recv()
                await ws.send(b"\x00\xff")
                data = await ws.recv()
                await ws.send("close 4001 bye")
                exc = await closed(ws)
            assert exc.rcvd is not None
            seen.append((text, data, exc.rcvd.code, exc.rcvd.reason))
        assert seen[0] == seen[1] == ("héllo", b"\x00\xff", 4001, "bye")

    async def test_client_close(self, both: tuple[Setup, str]) -> None:
        """A client close 4001 "bye" reaches the upstream alike through both."""
        s, nginx = both
        seen = []
        for base in (s.url(""), nginx):
            async with connect(base + "/ws/echo", proxy=None) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                await ws.close(4001, "bye")
            seen.append(await s.box.get("closed"))
        assert seen[0] == seen[1] == (4001, "bye")

    async def test_refusal(self, both: tuple[Setup, str]) -> None:
        """A refused handshake gives the client the same status, body and Set-Cookie through both."""
        s, nginx = both
        seen = []
        for base in (s.url(""), nginx):
            with pytest.raises(InvalidStatus) as info:
                async with connect(base + "/ws/refuse", proxy=None):
                    pass
            r = info.value.response
            seen.append((r.status_code, r.body, r.headers.get("Set-Cookie")))
        assert seen[0] == seen[1]

    async def test_upstream_request_fields(self, both: tuple[Setup, str]) -> None:
        """The upstream gets the same Host, proxy_set_header value, cookie,
        Authorization and Upgrade from both (nginx relays the client's key,
        pyngx makes its own)."""
        s, nginx = both
        seen = []
        extra = {"Cookie": "a=1", "Authorization": "Basic dTpw"}
        for base in (s.url(""), nginx):
            async with connect(base + "/ws/echo", proxy=None, additional_headers=extra) as ws:
                headers = await s.box.get("headers")
                await ws.send("x")
                assert await ws.recv() == "x"
            wanted = ("host", "x-real-ip", "cookie", "authorization", "upgrade", "sec-websocket-version")
            seen.append({k.lower(): v.lower() for k, v in headers if k.lower() in wanted})
        assert seen[0] == seen[1]
