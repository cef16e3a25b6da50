"""The proxy header/body directives end to end: pyngx as a subprocess with a
real config, real backends (aiohttp on 127.0.0.1, a UNIX socket, TLS) and
real clients (aiohttp, raw sockets), loopback only, bounded time.

add_header, proxy_hide_header / proxy_pass_header, proxy_redirect,
proxy_cookie_domain / proxy_cookie_path, client_max_body_size,
client_body_timeout, proxy_send_timeout, proxy_pass_request_headers /
_body, proxy_set_body, proxy_method, proxy_buffering (streaming),
keepalive_timeout, proxy_pass with variables, UNIX-socket and https
upstreams (proxy_ssl_*).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.conftest import Backend, Pyngx, free_port, start_backend, wait_for


def conf(port: int, body: str, http_extra: str = "") -> str:
    return f"""
error_log stderr info;
http {{
    access_log off;
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name proxy.test;
        {body}
    }}
}}
"""


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def head_fields(response: bytes) -> tuple[int, list[tuple[str, str]]]:
    """(status, fields) of a raw response."""
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = [tuple(x.strip() for x in line.split(":", 1)) for line in head[1:]]
    return int(head[0].split()[1]), fields  # type: ignore[return-value]


def values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name.lower()]


async def get(url: str, **kw: object) -> tuple[int, aiohttp.typedefs.LooseHeaders, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.request(kw.pop("method", "GET"), url, allow_redirects=False, **kw) as r:  # type: ignore[arg-type]
            return r.status, r.headers, await r.read()


@pytest.fixture
def serve(backend: Backend, run_pyngx: Callable[..., Pyngx]) -> Callable[..., str]:
    """``serve(locations, http_extra="")``: pyngx with BACKEND replaced; returns its base URL."""

    def start(body: str, http_extra: str = "") -> str:
        port = free_port()
        run_pyngx(conf(port, body.replace("BACKEND", backend.url), http_extra), port=port)
        return f"http://127.0.0.1:{port}"

    return start


class TestAddHeader:
    async def test_added_on_nginx_statuses_only_unless_always(self, serve):
        """add_header adds to 200..308 answers; ``always`` also to 404 and 500."""
        base = serve('location / { proxy_pass BACKEND; add_header X-A "a"; add_header X-B "b" always; }')
        for status, plain in ((200, True), (201, True), (204, True), (206, True), (301, True), (304, True),
                              (307, True), (308, True), (202, False), (404, False), (500, False)):
            code, headers, _ = await get(f"{base}/x?status={status}")
            assert code == status
            assert ("X-A" in headers) is plain, status
            assert headers["X-B"] == "b", status

    async def test_on_return_error_pages_and_502(self, serve):
        """add_header applies to return, pyngx's error pages and its 502 (the latter only with always)."""
        dead = free_port()
        base = serve(f"""
            add_header X-Srv "s" always;
            location = /r {{ add_header X-R "r"; return 200 "ok"; }}
            location = /n {{ add_header X-R "r"; add_header X-RA "ra" always; return 404; }}
            location = /d {{ proxy_pass http://127.0.0.1:{dead}; add_header X-R "r"; add_header X-RA "ra" always; }}
            location = /s {{ return 200 "srv"; }}
        """)
        _, h, body = await get(f"{base}/r")
        assert (h.get("X-R"), h.get("X-Srv"), body) == ("r", None, b"ok")
        code, h, body = await get(f"{base}/n")
        assert (code, h.get("X-R"), h.get("X-RA")) == (404, None, "ra") and b"404 Not Found" in body
        code, h, _ = await get(f"{base}/d")
        assert (code, h.get("X-R"), h.get("X-RA")) == (502, None, "ra")
        _, h, _ = await get(f"{base}/s")
        assert h.get("X-Srv") == "s"

    async def test_variables_empty_values_and_replaced_fields(self, serve):
        """Values hold variables; an empty value adds nothing; ETag replaces the upstream's, others add."""
        base = serve('location / { proxy_pass BACKEND; add_header X-U "$uri|$arg_a"; add_header X-E $arg_none; '
                     'add_header ETag "\\"mine\\""; add_header X-Dup "added"; }')
        _, h, _ = await get(f"{base}/p?a=1&set_ETag=%22up%22&set_X-Dup=up")
        assert h["X-U"] == "/p|1"
        assert "X-E" not in h
        assert h.getall("ETag") == ['"mine"']
        assert h.getall("X-Dup") == ["up", "added"]


class TestHideAndPassHeader:
    async def test_hide_pass_and_inheritance(self, serve):
        """proxy_hide_header hides; an inner level with its own list replaces the outer one; X-Accel-* are hidden."""
        base = serve("""
            proxy_hide_header X-Secret;
            location /in/ { proxy_pass BACKEND; }
            location /own/ { proxy_pass BACKEND; proxy_hide_header X-Other; proxy_pass_header X-Accel-Charset; }
        """)
        q = "set_X-Secret=1&set_X-Other=2&set_X-Accel-Buffering=no&set_X-Accel-Charset=utf-8&set_X-Pad=p"
        _, h, _ = await get(f"{base}/in/x?{q}")
        assert [n for n in ("X-Secret", "X-Other", "X-Accel-Buffering", "X-Accel-Charset", "X-Pad") if n in h] == ["X-Other"]
        _, h, _ = await get(f"{base}/own/x?{q}")
        assert [n for n in ("X-Secret", "X-Other", "X-Accel-Buffering", "X-Accel-Charset", "X-Pad") if n in h] == [
            "X-Secret", "X-Accel-Charset"]

    def test_pass_server_and_date(self, serve):
        """proxy_pass_header Server and Date let the upstream's through, once each; by default pyngx sends its own."""
        base = serve("""
            location /pass/ { proxy_pass BACKEND; proxy_pass_header Server; proxy_pass_header Date; }
            location /own/ { proxy_pass BACKEND; }
        """)
        port = int(base.rsplit(":", 1)[1])
        date = "Mon,%2001%20Jan%202001%2000:00:00%20GMT"
        q = f"set_Server=backend/9&set_Date={date}"
        _, fields = head_fields(raw(port, f"GET /pass/x?{q} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()))
        assert values(fields, "Server") == ["backend/9"]
        assert values(fields, "Date") == ["Mon, 01 Jan 2001 00:00:00 GMT"]
        _, fields = head_fields(raw(port, f"GET /own/x?{q} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()))
        assert values(fields, "Server")[0].startswith("pyngx")
        assert len(values(fields, "Date")) == 1 and values(fields, "Date") != ["Mon, 01 Jan 2001 00:00:00 GMT"]


class TestProxyRedirect:
    async def test_default_off_custom_regex_refresh(self, serve, backend):
        """The default rule maps the proxy_pass URL back to the location; off keeps it; rules and regexes rewrite
        Location (made absolute when relative) and Refresh."""
        base = serve("""
            location /one/ { proxy_pass BACKEND/two/; }
            location /off/ { proxy_pass BACKEND/two/; proxy_redirect off; }
            location /re/ { proxy_pass BACKEND; proxy_redirect ~*^http://([^/]+)/(?<rest>.*)$ https://$1/x/$rest; }
            location /rule/ { proxy_pass BACKEND; proxy_redirect http://a.test/ /mapped/; proxy_redirect default; }
        """)
        port = int(base.rsplit(":", 1)[1])
        up = backend.url
        _, h, _ = await get(f"{base}/one/p?status=302&set_Location={up}/two/q")
        assert h["Location"] == f"http://127.0.0.1:{port}/one/q"
        _, h, _ = await get(f"{base}/one/p?set_Refresh=3;%20url={up}/two/r")
        assert h["Refresh"] == "3; url=/one/r"
        _, h, _ = await get(f"{base}/off/p?status=302&set_Location={up}/two/q")
        assert h["Location"] == f"{up}/two/q"
        _, h, _ = await get(f"{base}/re/p?status=301&set_Location=HTTP://h.test/a/b")
        assert h["Location"] == "https://h.test/x/a/b"
        _, h, _ = await get(f"{base}/rule/p?status=302&set_Location=http://a.test/z", headers={"Host": "front.test"})
        assert h["Location"] == f"http://front.test:{port}/mapped/z"
        _, h, _ = await get(f"{base}/rule/p?status=302&set_Location={up}/rule/y")
        assert h["Location"] == f"http://127.0.0.1:{port}/rule/y"

    def test_default_after_proxy_pass_only(self, tmp_path):
        """``proxy_redirect default`` before proxy_pass, or with variables in it, fails -t with nginx's message."""
        from tests.conftest import pyngx_cmd

        for loc, message in (
            ("proxy_redirect default; proxy_pass http://127.0.0.1:1;",
             '"proxy_redirect default" should be placed after the "proxy_pass" directive'),
            ("proxy_pass http://$host; proxy_redirect default;",
             '"proxy_redirect default" cannot be used with "proxy_pass" directive with variables'),
            ("proxy_redirect off; proxy_redirect / /;", '"proxy_redirect" directive is duplicate'),
            ("proxy_redirect foo;", 'invalid parameter "foo"'),
        ):
            path = tmp_path / "c.conf"
            path.write_text(conf(1, f"location / {{ {loc} }}"))
            out = pyngx_cmd("-t", "-c", str(path))
            assert out.returncode == 1 and message in out.stderr, out.stderr


class TestCookies:
    async def test_domain_and_path_rewrites(self, serve):
        """proxy_cookie_domain and proxy_cookie_path rewrite domain= and path=; untouched cookies pass as sent."""
        base = serve("""
            location / {
                proxy_pass BACKEND;
                proxy_cookie_domain .backend.test front.test;
                proxy_cookie_domain ~^(?<sub>[a-z]+)\\.internal$ $sub.public.test;
                proxy_cookie_path /app/ /;
                proxy_cookie_path ~*^/RE(/.*)$ /re$1;
            }
        """)
        cases = {
            "a=1; Domain=.BACKEND.test; Path=/app/x": "a=1; Domain=.front.test; Path=/x",
            "b=2;path=/re/deep;HttpOnly": "b=2; path=/re/deep; HttpOnly",
            "c=3; domain=shop.internal": "c=3; domain=shop.public.test",
            "d=4;  Path=/other ;Secure": "d=4;  Path=/other ;Secure",
        }
        for sent, want in cases.items():
            _, h, _ = await get(f"{base}/x", params={"set_Set-Cookie": sent})
            assert h["Set-Cookie"] == want, sent


class TestRequestBody:
    def test_client_max_body_size(self, serve, backend):
        """A Content-Length or a chunked body over the limit gets 413 with Connection: close before the
        upstream sees a request; 0 disables the check; the limit applies to return too."""
        base = serve("""
            location /s/ { client_max_body_size 10; proxy_pass BACKEND; }
            location /k/ { client_max_body_size 1k; proxy_pass BACKEND; }
            location /z/ { client_max_body_size 0; proxy_pass BACKEND; }
            location /r/ { client_max_body_size 10; return 200 "r"; }
        """)
        port = int(base.rsplit(":", 1)[1])

        def post(path: str, body: bytes, chunked: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
            if chunked:
                head = f"POST {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                data = head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
            else:
                data = f"POST {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            out = raw(port, data)
            status, fields = head_fields(out)
            return status, fields, out

        assert post("/s/x", b"x" * 10)[0] == 200
        seen = len(backend.seen)
        status, fields, out = post("/s/x", b"x" * 11)
        assert status == 413 and values(fields, "Connection") == ["close"] and b"413 Request Entity Too Large" in out
        status, _, _ = post("/s/x", b"y" * 40, chunked=True)
        assert status == 413
        assert post("/k/x", b"x" * 1024)[0] == 200
        assert post("/k/x", b"x" * 1025)[0] == 413
        assert post("/z/x", b"x" * (2 * 1024 * 1024))[0] == 200
        assert post("/r/x", b"x" * 11)[0] == 413
        assert all(s.body_len <= 1024 or s.path.startswith("/z/") for s in backend.seen[seen:])
        assert not any(s.path.startswith("/s/") for s in backend.seen[seen:])

    def test_client_body_timeout(self, backend, run_pyngx):
        """A body that stalls longer than client_body_timeout closes the connection unanswered (408 in the
        access log, as nginx); the upstream never sees a whole request."""
        port = free_port()
        p = run_pyngx(conf(port, f"location / {{ client_body_timeout 500ms; proxy_pass {backend.url}; "
                                 f"access_log stdout; }}"), port=port)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            out = s.recv(65536)
        assert out == b""
        assert 0.4 < time.monotonic() - t0 < 5
        wait_for(lambda: '"POST /slow HTTP/1.1" 408 ' in p.stdout)
        assert not any(seen.path == "/slow" for seen in backend.seen)

    def test_proxy_send_timeout(self, run_pyngx, tmp_path):
        """An upstream that stops reading the body gets cut after proxy_send_timeout; the client gets 504."""
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        accepted: list[socket.socket] = []

        def accept() -> None:
            try:
                accepted.append(srv.accept()[0])  # and never read
            except OSError:
                pass

        threading.Thread(target=accept, daemon=True).start()
        try:
            port = free_port()
            p = run_pyngx(conf(port, f"location / {{ client_max_body_size 0; proxy_send_timeout 500ms; "
                                     f"proxy_pass http://127.0.0.1:{srv.getsockname()[1]}; }}"), port=port)
            body = tmp_path / "big"
            body.write_bytes(b"z" * (64 * 1024 * 1024))
            t0 = time.monotonic()
            out = curl_post(port, body)
            assert out.startswith(b"HTTP/1.1 504"), out[:200]
            assert time.monotonic() - t0 < 10
            wait_for(lambda: "upstream timed out (110: Connection timed out) while sending request to upstream"
                     in p.stderr)
        finally:
            srv.close()
            for c in accepted:
                c.close()

    def test_pass_request_body_headers_set_body_method(self, serve, backend):
        """proxy_pass_request_body off sends no body; proxy_set_body sends its text with its length;
        proxy_method changes the method; proxy_pass_request_headers off sends only the set fields."""
        base = serve("""
            location /nobody/ { proxy_pass_request_body off; proxy_set_header Content-Length ""; proxy_pass BACKEND; }
            location /set/ { proxy_set_body "a=$arg_a"; proxy_method PUT; proxy_pass BACKEND; }
            location /nh/ { proxy_pass_request_headers off; proxy_set_header X-Set 1; proxy_pass BACKEND; }
        """)
        port = int(base.rsplit(":", 1)[1])
        raw(port, b"POST /nobody/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc")
        assert (backend.last.method, backend.last.body_len, backend.last.header("Content-Length")) == ("POST", 0, None)
        raw(port, b"POST /set/x?a=7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n\r\n")
        seen = backend.last
        assert (seen.method, seen.body_len, seen.header("Content-Length"), seen.header("Transfer-Encoding")) == (
            "PUT", 3, "3", None)
        raw(port, b"GET /nh/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Client: 1\r\nUser-Agent: ua\r\n\r\n")
        assert sorted(k.lower() for k, _ in backend.last.headers) == ["host", "x-set"]


class TestStreaming:
    @pytest.mark.parametrize("location_extra,query", [
        ("proxy_buffering on;", ""),
        ("", "?accel=no"),
    ])
    async def test_each_event_arrives_before_the_next_is_sent(self, run_pyngx, location_extra, query):
        """Server-sent events reach the client one by one: each before the backend writes the next
        (with proxy_buffering on, and with X-Accel-Buffering: no)."""
        released = [threading.Event() for _ in range(3)]

        async def events(request: web.Request) -> web.StreamResponse:
            headers = {"Content-Type": "text/event-stream"}
            if request.query.get("accel"):
                headers = {"Content-Type": "text/plain", "X-Accel-Buffering": "no"}
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)
            for i, gate in enumerate(released):
                await resp.write(f"data: {i}\n\n".encode())
                while not gate.is_set():  # the test sets it when event i arrived
                    await asyncio.sleep(0.005)
            return resp

        b, stop = start_backend([("GET", "/events", events)])
        try:
            port = free_port()
            run_pyngx(conf(port, f"location / {{ proxy_pass {b.url}; {location_extra} }}"), port=port)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/events{query}") as r:
                    assert "X-Accel-Buffering" not in r.headers
                    for i, gate in enumerate(released):
                        line = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10)
                        assert line == f"data: {i}\n\n".encode()
                        gate.set()
        finally:
            for gate in released:
                gate.set()
            stop()


class TestKeepalive:
    def test_zero_closes_and_header_timeout(self, serve):
        """keepalive_timeout 0 answers with Connection: close and closes; a header_timeout gives Keep-Alive."""
        base = serve("""
            location /zero/ { keepalive_timeout 0; return 200 "z"; }
            location /hdr/ { keepalive_timeout 30s 25; return 200 "h"; }
        """)
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /zero/ HTTP/1.1\r\nHost: a\r\n\r\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        status, fields = head_fields(out)
        assert status == 200 and values(fields, "Connection") == ["close"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /hdr/ HTTP/1.1\r\nHost: a\r\n\r\n")
            status, fields = head_fields(s.recv(65536))
        assert values(fields, "Keep-Alive") == ["timeout=25"]

    def test_http_level_timeout_closes_idle_connections(self, serve):
        """The http-level keepalive_timeout closes an idle client connection after that long."""
        base = serve('location / { return 200 "k"; }', http_extra="keepalive_timeout 1s;")
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            out = b""
            while not out.endswith(b"\r\n\r\nk"):
                out += s.recv(65536)
            assert out.startswith(b"HTTP/1.1 200")
            t0 = time.monotonic()
            assert s.recv(65536) == b""  # closed by pyngx
            assert 0.5 < time.monotonic() - t0 < 5


class TestProxyPassVariables:
    async def test_uri_rules_and_upstream_lookup(self, serve, backend, run_pyngx):
        """With variables, a URI part replaces the whole URI; without one the request URI passes; the host
        may name an upstream block, an IP address, or nothing a resolver-less nginx could reach (502)."""
        port = free_port()
        hostport = backend.url[len("http://"):]
        p = run_pyngx(conf(port, f"""
            location /plain/ {{ proxy_pass http://$arg_to; }}
            location /uri/ {{ proxy_pass http://{hostport}/fixed$uri; }}
            location /req/ {{ proxy_pass http://{hostport}/pre$request_uri; }}
            location /named/ {{ proxy_pass http://$arg_up; }}
            location /bad/ {{ proxy_pass $arg_url; }}
        """, http_extra=f"upstream app {{ server {hostport}; }}"), port=port)
        base = f"http://127.0.0.1:{port}"
        code, _, body = await get(f"{base}/plain/a%20b?to={hostport}")
        assert code == 200 and json.loads(body)["path"] == f"/plain/a%20b?to={hostport}"
        assert backend.last.header("Host") == hostport
        await get(f"{base}/uri/x?q=1")
        assert backend.last.path == "/fixed/uri/x"
        await get(f"{base}/req/x?q=1")
        assert backend.last.path == "/pre/req/x?q=1"
        code, _, _ = await get(f"{base}/named/y?up=app")
        assert code == 200 and backend.last.path == "/named/y?up=app" and backend.last.header("Host") == "app"
        code, _, body = await get(f"{base}/named/y?up=nowhere.invalid")
        assert code == 502 and b"502 Bad Gateway" in body
        wait_for(lambda: "no resolver defined to resolve nowhere.invalid" in p.stderr)
        code, _, _ = await get(f"{base}/bad/y?url=ftp://x")
        assert code == 500
        wait_for(lambda: 'invalid URL prefix in "ftp://x"' in p.stderr)


@pytest.fixture
def unix_backend(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An aiohttp backend on a UNIX socket that answers with the path it got."""
    path = str(tmp_path / "up.sock")
    seen: list[str] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text=f"unix {request.raw_path}")

    def run() -> None:
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{t:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.UnixSite(runner, path).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10)
    yield path, seen
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


class TestUnixAndHttpsUpstreams:
    async def test_unix_socket(self, unix_backend, run_pyngx):
        """``proxy_pass http://unix:/path:/uri`` reaches a UNIX-socket upstream with nginx's URI rule."""
        path, seen = unix_backend
        port = free_port()
        run_pyngx(conf(port, f"location /u/ {{ proxy_pass http://unix:{path}:/in/; }} "
                             f"location / {{ proxy_pass http://unix:{path}; }}"), port=port)
        code, _, body = await get(f"http://127.0.0.1:{port}/u/a?b=1")
        assert (code, body) == (200, b"unix /in/a?b=1")
        code, _, body = await get(f"http://127.0.0.1:{port}/top")
        assert (code, body) == (200, b"unix /top")

    async def test_https_upstream(self, run_pyngx, tmp_path):
        """An https upstream works unverified by default; proxy_ssl_verify checks it against
        proxy_ssl_trusted_certificate (502 for another CA); proxy_ssl_server_name sends proxy_ssl_name as SNI."""
        ca, other = trustme.CA(), trustme.CA()
        cert = ca.issue_cert("backend.test")
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
        names: list[str | None] = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        ctx.sni_callback = lambda sock, name, c: names.append(name)  # type: ignore[assignment,misc]

        async def hello(request: web.Request) -> web.Response:
            return web.Response(text=f"tls {request.path}")

        ready = threading.Event()
        loop = asyncio.new_event_loop()
        holder: dict[str, int] = {}

        def run() -> None:
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_get("/{t:.*}", hello)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
            loop.run_until_complete(site.start())
            holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())

        t = threading.Thread(target=run, daemon=True)
        t.start()
        assert ready.wait(10)
        up = f"https://127.0.0.1:{holder['port']}"
        try:
            port = free_port()
            run_pyngx(conf(port, f"""
                location /plain/ {{ proxy_pass {up}; }}
                location /ok/ {{ proxy_pass {up}; proxy_ssl_verify on; proxy_ssl_trusted_certificate {tmp_path}/ca.pem;
                                 proxy_ssl_name backend.test; proxy_ssl_server_name on; }}
                location /bad/ {{ proxy_pass {up}; proxy_ssl_verify on;
                                  proxy_ssl_trusted_certificate {tmp_path}/other.pem; proxy_ssl_name backend.test; }}
            """), port=port)
            base = f"http://127.0.0.1:{port}"
            assert (await get(f"{base}/plain/x"))[::2] == (200, b"tls /plain/x")
            assert names == [None]  # no SNI by default (proxy_ssl_server_name off), none for an IP anyway
            assert (await get(f"{base}/ok/x"))[::2] == (200, b"tls /ok/x")
            assert names[-1] == "backend.test"
            assert (await get(f"{base}/bad/x"))[0] == 502
        finally:
            loop.call_soon_threadsafe(loop.stop)
            t.join(10)


def curl_post(port: int, body: Path) -> bytes:
    """POST a file with curl (which keeps sending while it waits); returns the raw head and body."""
    import subprocess

    out = subprocess.run(["curl", "-sS", "-i", "--max-time", "20", "-H", "Expect:", "--data-binary", f"@{body}",
                          f"http://127.0.0.1:{port}/up"], capture_output=True, timeout=30)
    return out.stdout


class TestInterceptErrors:
    async def test_upstream_errors_go_to_error_page(self, serve):
        """With proxy_intercept_errors on, an upstream status that has an error_page is answered by it;
        other statuses, and all with it off, pass as the upstream sent them."""
        base = serve("""
            location /i/ { proxy_pass BACKEND; proxy_intercept_errors on; error_page 404 500 /oops; }
            location /o/ { proxy_pass BACKEND; error_page 404 /oops; }
            location = /oops { return 200 "our page\\n"; }
        """)
        code, h, body = await get(f"{base}/i/x?status=404&set_X-Up=1")
        assert (code, body, h.get("X-Up")) == (404, b"our page\n", None)
        code, _, body = await get(f"{base}/i/x?status=500")
        assert (code, body) == (500, b"our page\n")
        code, _, body = await get(f"{base}/i/x?status=403")
        assert code == 403 and json.loads(body)["path"] == "/i/x?status=403"
        code, _, body = await get(f"{base}/o/x?status=404")
        assert code == 404 and json.loads(body)["path"] == "/o/x?status=404"
