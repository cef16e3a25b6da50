"""HTTP proxying end to end: pyngx as a subprocess, real backends and clients."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from pyngx.app import App
from pyngx.config.build import build
from pyngx.config.parse import Parsed, parse_string
from pyngx.runtime import FEW_READ_BUFSIZE, FEW_REQUESTS, READ_BUFSIZE, Sessions
from tests.conftest import Backend, Pyngx, free_port, start_backend, wait_for


def conf(port: int, body: str, http_extra: str = "") -> str:
    return f"""
error_log stderr info;
http {{
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name proxy.test;
        {body}
    }}
}}
"""


@pytest.fixture
def proxy(backend: Backend, run_pyngx: Callable[..., Pyngx]) -> tuple[str, Backend, Pyngx]:
    """pyngx proxying every URI to the echo backend (no client_max_body_size limit)."""
    port = free_port()
    p = run_pyngx(conf(port, f"location / {{ proxy_pass {backend.url}; client_max_body_size 0; }}"), port=port)
    return f"http://127.0.0.1:{port}", backend, p


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args], capture_output=True, timeout=timeout + 5)


class TestPassThrough:
    async def test_get_returns_backend_bytes_unchanged(self, proxy):
        """A GET through pyngx returns exactly the bytes the backend sent."""
        base, backend, _ = proxy
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/bytes/1000003") as r:
                via = await r.read()
                assert r.headers["Content-Length"] == "1000003"
            async with s.get(f"{backend.url}/bytes/1000003") as r:
                direct = await r.read()
        assert via == direct

    def test_curl_get_and_10mib_post(self, proxy, tmp_path):
        """curl's GET and a 10 MiB POST pass unchanged, the POST streamed with its Content-Length."""
        base, backend, _ = proxy
        data = tmp_path / "body.bin"
        data.write_bytes(hashlib.sha256(b"x").digest() * (10 * 1024 * 1024 // 32))
        out = curl("-X", "POST", "--data-binary", f"@{data}", f"{base}/upload?a=1")
        seen = json.loads(out.stdout)
        assert seen["body_len"] == 10 * 1024 * 1024
        assert seen["body_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
        assert backend.last.header("Content-Length") == str(10 * 1024 * 1024)
        assert backend.last.path == "/upload?a=1"

    def test_chunked_request_body(self, proxy, tmp_path):
        """A chunked request body reaches the backend whole (re-chunked by pyngx)."""
        base, backend, _ = proxy
        data = tmp_path / "body.bin"
        data.write_bytes(b"abc" * 100000)
        out = curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{data}", f"{base}/chunked")
        seen = json.loads(out.stdout)
        assert seen["body_len"] == 300000
        assert backend.last.header("Transfer-Encoding") == "chunked"

    async def test_method_and_headers_reach_backend(self, proxy):
        """Method, URI, query and the client's end-to-end headers reach the backend."""
        base, backend, _ = proxy
        async with aiohttp.ClientSession() as s:
            url = URL(f"{base}/a/%7Euser/b?x=1&y=%20", encoded=True)
            async with s.request("PATCH", url, headers={"X-Custom": "v1", "Authorization": "Bearer t"}, data=b"hi") as r:
                assert r.status == 200
        seen = backend.last
        assert seen.method == "PATCH"
        assert seen.path == "/a/%7Euser/b?x=1&y=%20"
        assert seen.header("X-Custom") == "v1"
        assert seen.header("Authorization") == "Bearer t"

    async def test_status_and_response_headers_pass(self, proxy):
        """The backend's status and end-to-end response headers reach the client."""
        base, _, _ = proxy
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/x?status=418&set_X-From-Backend=yes&set_Set-Cookie=a%3D1") as r:
                assert r.status == 418
                assert r.headers["X-From-Backend"] == "yes"
                assert r.headers["Set-Cookie"] == "a=1"
                assert r.headers["Server"].startswith("pyngx")


async def _gzip_handler(request: web.Request) -> web.Response:
    body = gzip.compress(b"hello compressed world\n" * 100)
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})


async def _set_cookie(request: web.Request) -> web.Response:
    resp = web.Response(text="cookie set")
    resp.set_cookie("session", "secret-of-client-a")
    return resp


class TestNoDecodingNoCookies:
    async def test_compressed_body_passes_undecoded(self, run_pyngx):
        """A gzip body keeps its Content-Encoding and Content-Length, bytes unchanged."""
        b, stop = start_backend([("GET", "/gz", _gzip_handler)])
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; }}"), port=port)
            async with aiohttp.ClientSession(auto_decompress=False) as s:
                async with s.get(f"http://127.0.0.1:{port}/gz", headers={"Accept-Encoding": "gzip"}) as r:
                    raw = await r.read()
                    assert r.headers["Content-Encoding"] == "gzip"
                    assert r.headers["Content-Length"] == str(len(raw))
            assert gzip.decompress(raw) == b"hello compressed world\n" * 100
        finally:
            stop()

    async def test_cookie_of_one_client_never_sent_for_another(self, run_pyngx):
        """pyngx keeps no cookie jar: client B's upstream request carries no cookie of client A."""
        b, stop = start_backend([("GET", "/login", _set_cookie)])
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; }}"), port=port)
            async with aiohttp.ClientSession() as a:
                async with a.get(f"http://127.0.0.1:{port}/login") as r:
                    assert "session" in r.headers["Set-Cookie"]
            async with aiohttp.ClientSession() as client_b:
                async with client_b.get(f"http://127.0.0.1:{port}/other") as r:
                    await r.read()
            assert b.last.path == "/other"
            assert b.last.header("Cookie") is None
        finally:
            stop()


class TestHopByHop:
    def test_request_hop_by_hop_not_forwarded(self, proxy):
        """Connection, the fields it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-* are dropped upstream."""
        base, backend, _ = proxy
        curl(
            "-H", "Connection: keep-alive, X-Secret-Hop",
            "-H", "X-Secret-Hop: 1",
            "-H", "Keep-Alive: timeout=5",
            "-H", "TE: trailers",
            "-H", "Trailer: X-T",
            "-H", "Proxy-Authorization: Basic abc",
            "-H", "Proxy-Connection: keep-alive",
            "-H", "X-End-To-End: kept",
            f"{base}/hop",
        )
        seen = backend.last
        for name in ("X-Secret-Hop", "Keep-Alive", "TE", "Trailer", "Proxy-Authorization", "Proxy-Connection"):
            assert seen.header(name) is None, name
        assert seen.header("X-End-To-End") == "kept"

    def test_response_hop_by_hop_not_forwarded(self, proxy):
        """Hop-by-hop fields of the backend's answer, and those its Connection names, are dropped."""
        base, _, _ = proxy
        out = curl("-i", f"{base}/r?set_Keep-Alive=timeout%3D9&set_Connection=X-Drop-Me&set_X-Drop-Me=1&set_Proxy-Authenticate=Basic&set_X-Keep=1")
        head = out.stdout.split(b"\r\n\r\n")[0].decode().lower()
        assert "keep-alive: timeout" not in head
        assert "x-drop-me" not in head
        assert "proxy-authenticate" not in head
        assert "x-keep: 1" in head

    def test_host_defaults_to_proxy_host(self, proxy):
        """Without proxy_set_header Host, the backend sees Host: $proxy_host (host:port)."""
        base, backend, _ = proxy
        curl("-H", "Host: client.example", f"{base}/h")
        assert backend.last.header("Host") == f"127.0.0.1:{backend.port}"


class TestProxySetHeader:
    def test_variables(self, backend, run_pyngx):
        """proxy_set_header values with nginx variables are evaluated per request."""
        port = free_port()
        names = ["host", "remote_addr", "remote_port", "scheme", "request_uri", "uri", "args", "request_method",
                 "server_port", "server_name", "http_x_custom", "proxy_host", "proxy_add_x_forwarded_for"]
        sets = "\n".join(f"proxy_set_header X-V-{n} ${n};" for n in names)
        run_pyngx(conf(port, f"location /p/ {{ proxy_pass {backend.url}; {sets} proxy_set_header X-Empty $http_x_nothing; proxy_set_header X-Const \"a b\"; }}"), port=port)
        curl("--path-as-is", "-H", "Host: Proxy.Test:123", "-H", "X-Custom: cv", "-H", "X-Forwarded-For: 10.9.8.7",
             f"http://127.0.0.1:{port}/p/a%20b/../c?q=1")
        seen = backend.last
        v = {n: seen.header(f"X-V-{n}") for n in names}
        assert v["host"] == "proxy.test"
        assert v["remote_addr"] == "127.0.0.1"
        assert v["remote_port"] and v["remote_port"].isdigit()
        assert v["scheme"] == "http"
        assert v["request_uri"] == "/p/a%20b/../c?q=1"
        assert v["uri"] == "/p/c"
        assert v["args"] == "q=1"
        assert v["request_method"] == "GET"
        assert v["server_port"] == str(port)
        assert v["server_name"] == "proxy.test"
        assert v["http_x_custom"] == "cv"
        assert v["proxy_host"] == f"127.0.0.1:{backend.port}"
        assert v["proxy_add_x_forwarded_for"] == "10.9.8.7, 127.0.0.1"
        assert seen.header("X-Empty") is None
        assert seen.header("X-Const") == "a b"

    def test_set_header_replaces_client_header_and_empty_removes(self, backend, run_pyngx):
        """A set header replaces the client's field of that name; an empty value removes it."""
        port = free_port()
        run_pyngx(conf(port, f'location / {{ proxy_pass {backend.url}; proxy_set_header User-Agent "pyngx-test"; proxy_set_header Accept ""; }}'), port=port)
        curl("-A", "curl-original", "-H", "Accept: text/html", f"http://127.0.0.1:{port}/")
        assert backend.last.header_all("User-Agent") == ["pyngx-test"]
        assert backend.last.header("Accept") is None


class TestProxyPassUri:
    @pytest.mark.parametrize(
        ("location", "proxy_uri", "target", "expected"),
        [
            ("/", "", "/a/b?x=1", "/a/b?x=1"),
            ("/api/", "/v1/", "/api/users?id=2", "/v1/users?id=2"),
            ("/api/", "/", "/api/x", "/x"),
            ("/api", "/v2", "/api/x", "/v2/x"),
            ("/api/", "", "/api/x", "/api/x"),
            ("= /exact", "/target", "/exact?z=9", "/target?z=9"),
            ("/api/", "/v1/", "/api/a%20b", "/v1/a%20b"),
            ("/", "", "/a//b/../c", "/a//b/../c"),
            ("/api/", "/v1/", "/api//x/../y", "/v1/y"),
        ],
    )
    def test_uri_rule(self, backend, run_pyngx, location, proxy_uri, target, expected):
        """With a URI part the matched prefix is replaced; without one the request URI passes unchanged."""
        port = free_port()
        run_pyngx(conf(port, f"location {location} {{ proxy_pass {backend.url}{proxy_uri}; }}"), port=port)
        curl("--path-as-is", f"http://127.0.0.1:{port}{target}")
        assert backend.last.path == expected


class TestErrors:
    def test_no_location_is_404(self, run_pyngx):
        """A URI that no location matches gets nginx's 404 page."""
        port = free_port()
        run_pyngx(conf(port, "location /only/ { return 200 ok; }"), port=port)
        out = curl("-i", f"http://127.0.0.1:{port}/other")
        assert out.stdout.startswith(b"HTTP/1.1 404")
        assert b"<center><h1>404 Not Found</h1></center>" in out.stdout

    def test_unreachable_backend_is_502_with_log(self, run_pyngx):
        """A refused upstream connection gives 502 and an error-log line saying why."""
        port, dead = free_port(), free_port()
        p = run_pyngx(conf(port, f"location / {{ proxy_pass http://127.0.0.1:{dead}; }}"), port=port)
        out = curl("-i", f"http://127.0.0.1:{port}/x")
        assert out.stdout.startswith(b"HTTP/1.1 502")
        assert b"502 Bad Gateway" in out.stdout
        wait_for(lambda: "connect() failed (111: Connection refused) while connecting to upstream" in p.stderr)
        wait_for(lambda: f'upstream: "http://127.0.0.1:{dead}/x"' in p.stderr)

    def test_read_timeout_is_504(self, backend, run_pyngx):
        """A backend slower than proxy_read_timeout gives 504 and a log line."""
        port = free_port()
        p = run_pyngx(conf(port, f"location / {{ proxy_pass {backend.url}; proxy_read_timeout 300ms; }}"), port=port)
        t0 = time.monotonic()
        out = curl("-i", f"http://127.0.0.1:{port}/slow/5")
        assert out.stdout.startswith(b"HTTP/1.1 504")
        assert time.monotonic() - t0 < 4
        wait_for(lambda: "upstream timed out (110: Connection timed out) while reading response header from upstream" in p.stderr)

    def test_read_timeout_mid_body_cuts_the_response(self, run_pyngx):
        """An upstream that stalls mid-body past proxy_read_timeout: the client's
        response ends short (the connection closes) and nginx's error line is logged."""
        release = threading.Event()

        async def stall(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse()
            resp.content_length = 20000
            await resp.prepare(request)
            await resp.write(b"x" * 10000)
            while not release.is_set():
                await asyncio.sleep(0.01)
            return resp

        b, stop = start_backend([("GET", "/stall", stall)])
        try:
            port = free_port()
            p = run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; proxy_read_timeout 300ms; }}"), port=port)
            t0 = time.monotonic()
            out = curl("-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", f"http://127.0.0.1:{port}/stall")
            assert out.stdout == b"200 10000"
            assert out.returncode != 0  # curl: transfer closed with bytes remaining
            assert time.monotonic() - t0 < 4
            wait_for(lambda: "upstream timed out (110: Connection timed out) while reading upstream" in p.stderr)
        finally:
            release.set()
            stop()

    def test_slow_client_is_not_a_read_timeout(self, backend, run_pyngx):
        """proxy_read_timeout times the upstream only: a client that stops reading
        for longer than it (the upstream waits on pyngx) still gets every byte."""
        port = free_port()
        run_pyngx(conf(port, f"location / {{ proxy_pass {backend.url}; proxy_read_timeout 300ms; }}"), port=port)
        n = 64 * 2**20
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = c.recv(65536)
            time.sleep(1.2)  # four read timeouts long
            while chunk := c.recv(2**20):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) == n

    def test_connect_timeout_is_504(self, run_pyngx):
        """An upstream whose accept queue is full times out on connect: 504."""
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        bport = blackhole.getsockname()[1]
        fillers = []
        try:
            # Fill the accept queue so that further SYNs are dropped.
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", bport))
                except BlockingIOError:
                    pass
                fillers.append(c)
            port = free_port()
            p = run_pyngx(conf(port, f"location / {{ proxy_pass http://127.0.0.1:{bport}; proxy_connect_timeout 500ms; }}"), port=port)
            out = curl("-i", f"http://127.0.0.1:{port}/x", timeout=15)
            assert out.stdout.startswith(b"HTTP/1.1 504")
            wait_for(lambda: "while connecting to upstream" in p.stderr)
        finally:
            for c in fillers:
                c.close()
            blackhole.close()

    def test_backend_closing_early_is_502(self, run_pyngx):
        """A backend that closes without answering gives 502, never a hang."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        bport = srv.getsockname()[1]

        def closer() -> None:
            for _ in range(4):
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.close()

        t = threading.Thread(target=closer, daemon=True)
        t.start()
        try:
            port = free_port()
            p = run_pyngx(conf(port, f"location / {{ proxy_pass http://127.0.0.1:{bport}; }}"), port=port)
            out = curl("-i", f"http://127.0.0.1:{port}/x", timeout=15)
            assert out.stdout.startswith(b"HTTP/1.1 502")
            wait_for(lambda: "upstream prematurely closed connection" in p.stderr)
        finally:
            srv.close()


class TestReturnAndLogs:
    def test_return_forms(self, run_pyngx):
        """return with text, with a relative redirect (made absolute) and with only a code."""
        port = free_port()
        p = run_pyngx(conf(port, """
            location = /t { return 200 "text $uri\\n"; }
            location = /r { return 301 /new; }
            location = /u { return https://example.com/x; }
            location = /c { return 403; }
            location = /n { return 204; }
        """), port=port)
        base = f"http://127.0.0.1:{port}"
        out = curl("-i", f"{base}/t").stdout
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"text /t\n")
        assert b"content-type: text/plain" in out.lower()
        out = curl("-i", f"{base}/r").stdout.decode()
        assert out.startswith("HTTP/1.1 301") and f"location: http://127.0.0.1:{port}/new" in out.lower()
        out = curl("-i", f"{base}/u").stdout.decode()
        assert out.startswith("HTTP/1.1 302") and "location: https://example.com/x" in out.lower()
        out = curl("-i", f"{base}/c").stdout
        assert out.startswith(b"HTTP/1.1 403") and b"403 Forbidden" in out
        assert curl("-i", f"{base}/n").stdout.startswith(b"HTTP/1.1 204")
        assert p.stderr.count("Traceback") == 0

    async def test_clients_leaving_a_slow_answer_are_499(self, proxy):
        """Clients that go away while the upstream is still answering are noticed
        (after the disconnect watch's 0.25 s), logged with nginx's 499, and the
        upstream request is dropped at once, not when the backend answers."""
        base, _, p = proxy

        async def leave(i: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
            writer.write(f"GET /slow/5?left={i} HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.5 + 0.1 * i)
            writer.close()
            await writer.wait_closed()

        t0 = time.monotonic()
        await asyncio.gather(*(leave(i) for i in range(5)))
        wait_for(lambda: sum(" 499 " in ln for ln in p.stdout.splitlines() if "left=" in ln) == 5, timeout=4)
        assert time.monotonic() - t0 < 4.5  # the backend answers after 5 s
        assert p.stderr.count("Traceback") == 0

    def test_access_log_combined(self, proxy):
        """Each request gives one access-log line in nginx's combined format."""
        base, _, p = proxy
        curl("-A", "agent/1.0", "-e", "http://ref.example/", f"{base}/logged?q=1")
        wait_for(lambda: "/logged" in p.stdout)
        line = [ln for ln in p.stdout.splitlines() if "/logged" in ln]
        assert len(line) == 1
        assert re.fullmatch(
            r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /logged\?q=1 HTTP/1\.1" 200 \d+ '
            r'"http://ref\.example/" "agent/1\.0"',
            line[0],
        ), line[0]


def _pieces(data: bytes, step: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A backend handler for /body/{n}: the first n bytes of ``data``, written in pieces of
    ``step`` bytes (none for HEAD), with a Content-Length when the query has length=1, else
    chunked."""

    async def body(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        resp = web.StreamResponse()
        if request.query.get("length") == "1":
            resp.content_length = n
        await resp.prepare(request)
        for i in range(0, n if request.method == "GET" else 0, step):
            await resp.write(data[i:min(n, i + step)])
        await resp.write_eof()
        return resp

    return body


class TestInFlight:
    """The worker's count of requests being proxied (Sessions.in_flight), which picks each
    request's upstream read buffer. Driven in-process through pyngx's ASGI app, against a
    real backend, so that the count can be read while requests run."""

    PORT = 8080  # never bound: requests come in through the ASGI call

    @classmethod
    def _app(cls, backend: Backend) -> App:
        text = f"""
error_log stderr error;
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{cls.PORT};
        location / {{ proxy_pass {backend.url}; }}
        location /refused/ {{ proxy_pass http://127.0.0.1:{free_port()}/; }}
    }}
}}
"""
        app = App(build(Parsed(parse_string(text, "test.conf"), ()), Path("test.conf")))
        app.sessions.start()
        return app

    @classmethod
    async def _get(cls, app: App, path: str, gone_after: float | None = None,
                   seen: list[int] | None = None) -> list[dict[str, Any]]:
        """GET ``path`` through the app; the client goes away after ``gone_after`` seconds if
        given. Returns what the app sent; ``seen`` gets the count as the answer starts."""
        sent: list[dict[str, Any]] = []
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(gone_after if gone_after is not None else 3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and seen is not None:
                seen.append(app.sessions.in_flight)
            sent.append(message)

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "headers": [(b"host", b"proxy.test")],
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", cls.PORT)}
        await app(scope, receive, send)
        return sent

    async def test_the_count_follows_requests_and_picks_each_buffer(self):
        """1 while one answer streams; with three requests held by the backend, the first two
        went up with FEW_READ_BUFSIZE and the third with READ_BUFSIZE; back to 0 after an
        answer, a refused upstream (502) and a client that went away before its answer."""
        release = threading.Event()

        async def held(request: web.Request) -> web.Response:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
            return web.Response(text="held\n")

        class Recording(Sessions):
            def __init__(self) -> None:
                super().__init__()
                self.chosen: list[int] = []

            def read_bufsize(self) -> int:
                self.chosen.append(size := super().read_bufsize())
                return size

        async def until(predicate: Callable[[], bool]) -> None:
            while not predicate():  # polled: bounded by the caller's asyncio.timeout
                await asyncio.sleep(0.01)

        b, stop = start_backend([("GET", "/held", held)])
        app = self._app(b)
        app.sessions = sessions = Recording()
        sessions.start()
        try:
            async with asyncio.timeout(30):
                seen: list[int] = []
                sent = await self._get(app, "/bytes/300000", seen=seen)
                assert sent[0]["status"] == 200 and seen == [1]
                assert sessions.in_flight == 0 and sessions.chosen == [FEW_READ_BUFSIZE]

                sessions.chosen.clear()
                waiting = []
                for n in range(1, 4):  # one at a time, so that each goes up with n in flight
                    waiting.append(asyncio.create_task(self._get(app, "/held")))
                    await until(lambda: len(sessions.chosen) == n)
                assert sessions.in_flight == 3
                assert sessions.chosen == [FEW_READ_BUFSIZE, FEW_READ_BUFSIZE, READ_BUFSIZE]
                release.set()
                assert all(r[0]["status"] == 200 for r in await asyncio.gather(*waiting))
                assert sessions.in_flight == 0

                sent = await self._get(app, "/refused/x")
                assert sent[0]["status"] == 502 and sessions.in_flight == 0

                sent = await self._get(app, "/slow/2", gone_after=0.2)
                assert sent == [] and sessions.in_flight == 0
        finally:
            release.set()
            await sessions.aclose()
            stop()

    def test_read_buffer_is_larger_only_while_few_requests_are_proxied(self):
        """Sessions.read_bufsize: FEW_READ_BUFSIZE up to FEW_REQUESTS requests in flight, then READ_BUFSIZE."""
        sessions = Sessions()
        assert FEW_READ_BUFSIZE > READ_BUFSIZE
        for n in range(1, FEW_REQUESTS + 1):
            sessions.in_flight = n
            assert sessions.read_bufsize() == FEW_READ_BUFSIZE
        sessions.in_flight = FEW_REQUESTS + 1
        assert sessions.read_bufsize() == READ_BUFSIZE


class TestStreaming:
    def _rss_sampler(self, p: Pyngx) -> tuple[list[int], threading.Event, threading.Thread]:
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                samples.append(p.rss_kib())

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        return samples, done, t

    def test_1gib_upload_and_download_stream_with_bounded_rss(self, backend, run_pyngx):
        """1 GiB passes up and down through pyngx while its RSS stays below 100 MiB."""
        port = free_port()
        p = run_pyngx(conf(port, f"location / {{ proxy_pass {backend.url}; access_log off; client_max_body_size 0; }}"),
                      port=port)
        samples, done, t = self._rss_sampler(p)
        try:
            gib = 1024 * 1024 * 1024
            up = subprocess.run(
                f"head -c {gib} /dev/zero | curl -sS --max-time 120 -T - -H 'Content-Length: {gib}' "
                f"http://127.0.0.1:{port}/upload",
                shell=True, capture_output=True, timeout=150,
            )
            seen = json.loads(up.stdout)
            assert seen["body_len"] == gib
            down = subprocess.run(
                ["curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w", "%{size_download}", f"http://127.0.0.1:{port}/bytes/{gib}"],
                capture_output=True, timeout=150,
            )
            assert down.stdout == str(gib).encode()
        finally:
            done.set()
            t.join()
        peak = max(samples)
        print(f"pyngx peak RSS while streaming 1 GiB up and down: {peak / 1024:.1f} MiB")
        assert peak < 100 * 1024, f"peak RSS {peak} KiB"

    async def test_bodies_with_and_without_length_arrive_whole(self, run_pyngx):
        """Multi-MiB answers, with a Content-Length and without one (chunked),
        in pieces that match no buffer size, reach the client byte for byte;
        HEAD of one gives its length and no body."""
        data = random.Random(7).randbytes(12 * 2**20 + 1)

        b, stop = start_backend([("*", "/body/{n}", _pieces(data, 100_003))])  # GET and HEAD
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; }}"), port=port)
            async with aiohttp.ClientSession() as s:
                for n in (2**20, len(data)):
                    for length in ("1", "0"):
                        async with asyncio.timeout(30):
                            async with s.get(f"http://127.0.0.1:{port}/body/{n}?length={length}") as r:
                                got = await r.read()
                                assert (r.headers.get("Transfer-Encoding") == "chunked") == (length == "0")
                        assert len(got) == n and hashlib.sha256(got).digest() == hashlib.sha256(data[:n]).digest()
                async with asyncio.timeout(30):
                    async with s.head(f"http://127.0.0.1:{port}/body/{len(data)}?length=1") as r:
                        assert r.status == 200 and r.headers["Content-Length"] == str(len(data))
                        assert await r.read() == b""
        finally:
            stop()

    async def test_answers_streaming_alone_and_many_at_once_arrive_whole(self, run_pyngx):
        """Large answers reach their clients byte for byte, with and without a Content-Length:
        one alone (it goes up with FEW_READ_BUFSIZE, see TestInFlight), one to a client that
        reads slowly, and eight at once (most with READ_BUFSIZE)."""
        data = random.Random(11).randbytes(6 * 2**20 + 7)

        b, stop = start_backend([("GET", "/body/{n}", _pieces(data, 300_007))])
        digest = hashlib.sha256(data).digest()
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; }}"), port=port)
            url = f"http://127.0.0.1:{port}/body/{len(data)}"
            async with aiohttp.ClientSession() as s:

                async def fetch(length: str, slow: bool = False) -> None:
                    async with s.get(f"{url}?length={length}") as r:
                        parts = []
                        while part := await r.content.read(2**20 if slow else -1):
                            parts.append(part)
                            if slow:
                                await asyncio.sleep(0.05)
                        got = b"".join(parts)
                    assert len(got) == len(data) and hashlib.sha256(got).digest() == digest

                async with asyncio.timeout(60):
                    for length in ("1", "0"):
                        await fetch(length)
                        await fetch(length, slow=True)
                        await asyncio.gather(*(fetch(length) for _ in range(8)))
        finally:
            stop()

    async def test_chunks_arrive_as_backend_flushes(self, run_pyngx):
        """A streamed response reaches the client chunk by chunk, before the backend ends it."""
        gate = asyncio.Event()
        release = threading.Event()

        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b"data: first\n\n")
            while not release.is_set():
                await asyncio.sleep(0.01)
            await resp.write(b"data: second\n\n")
            return resp

        b, stop = start_backend([("GET", "/sse", stream)])
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; }}"), port=port)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/sse") as r:
                    first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
                    assert first == b"data: first\n\n"
                    release.set()
                    second = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
                    assert second == b"data: second\n\n"
            del gate
        finally:
            release.set()
            stop()
