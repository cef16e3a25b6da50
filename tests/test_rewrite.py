"""The request phases and the rewrite module end to end: pyngx as a subprocess
with real configs, real backends and clients on 127.0.0.1; plus the pure
logic of pyngx.rewrite and pyngx.access tested with plain objects.

What nginx does with the same configs is checked side by side in
tests/differential/test_rewrite_phases_vs_nginx.py (answers) and
test_rewrite_config_vs_nginx.py (config checks); this file covers what a
differential test cannot see: error-log texts, the access log, a closed
connection on HTTP/1.1, HTTP/2 and WebSocket, reloads, and the internals.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from pyngx.access import AccessRule, allowed, forwarded_addr, parse_rule, parse_trusted
from pyngx.app import internal_redirect
from pyngx.config.build import build
from pyngx.config.parse import Parsed, parse_string
from pyngx.errors import ConfigValueError
from pyngx.request import Request
from pyngx.rewrite import Condition, escape_args, parse_condition, unescape_redirect
from pyngx.special import Redirect
from tests.conftest import Backend, Pyngx, free_port, start_backend, wait_for
from tests.proxy.wsbackend import Mailbox, Stream, routes


def conf(port: int, body: str, http_extra: str = "") -> str:
    return f"""
error_log stderr info;
http {{
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name rw.test;
        {body}
    }}
}}
"""


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest.fixture
def serve(run_pyngx: Callable[..., Pyngx]) -> Callable[..., tuple[int, Pyngx]]:
    """``serve(server_body, http_extra="")``: a running pyngx; returns (port, process)."""

    def start(body: str, http_extra: str = "") -> tuple[int, Pyngx]:
        port = free_port()
        return port, run_pyngx(conf(port, body, http_extra), port=port)

    return start


class TestErrorLog:
    def test_rewrite_cycle(self, serve):
        """The 11th URI change is a 500 with nginx's "rewrite or internal redirection cycle" line."""
        port, p = serve("location / { rewrite ^/(.*)$ /x$1 last; }")
        assert get(port, "/a")[0] == 500
        wait_for(lambda: 'rewrite or internal redirection cycle while processing "/xxxxxxxxxxxa"' in p.stderr)
        assert 'request: "GET /a HTTP/1.1"' in p.stderr

    def test_internal_redirect_cycle(self, serve):
        """An error_page that redirects to itself ends in a 500 and nginx's line."""
        port, p = serve("location /c { recursive_error_pages on; error_page 404 /c; return 404; }")
        assert get(port, "/c")[0] == 500
        wait_for(lambda: 'rewrite or internal redirection cycle while internally redirecting to "/c"' in p.stderr)

    def test_missing_named_location(self, serve):
        """error_page to an unknown @name is a 500, logged as nginx does."""
        port, p = serve("location / { error_page 404 @nope; return 404; }")
        assert get(port, "/")[0] == 500
        wait_for(lambda: 'could not find named location "@nope"' in p.stderr)

    def test_access_forbidden(self, serve):
        """A deny logs "access forbidden by rule" with the request."""
        port, p = serve("location / { deny all; return 200; }\n location /p { deny all; proxy_pass http://127.0.0.1:1; }")
        assert get(port, "/p/x")[0] == 403
        wait_for(lambda: 'access forbidden by rule, client: 127.0.0.1, server: rw.test, request: "GET /p/x HTTP/1.1"'
                 in p.stderr)

    def test_rewrite_log(self, serve):
        """rewrite_log on logs each regex tried and the result at notice."""
        port, p = serve(r'location /a/ { rewrite_log on; rewrite ^/b ZZ; rewrite ^/a/(.*)$ /b/$1?k=v last; } '
                        'location /b/ { return 200 "$uri $args"; }')
        assert get(port, "/a/x") == (200, "/b/x k=v")
        wait_for(lambda: 'rewritten data: "/b/x", args: "k=v"' in p.stderr)
        assert '"^/b" does not match "/a/x"' in p.stderr
        assert '"^/a/(.*)$" matches "/a/x"' in p.stderr


class TestAccessLog:
    def test_status_after_error_page(self, serve):
        """The access log has the status the client got: error_page's =code, and 444."""
        port, p = serve('location /a { error_page 404 =201 /b; return 404; } location /b { return 200 "b"; } '
                        "location /close { return 444; }")
        assert get(port, "/a") == (201, "b")
        assert raw(port, b"GET /close HTTP/1.1\r\nHost: rw.test\r\n\r\n") == b""
        req = urllib.request.Request(f"http://127.0.0.1:{port}/a", data=b"x", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert (r.status, r.read()) == (201, b"b")
        wait_for(lambda: '"GET /close HTTP/1.1" 444 0' in p.stdout and '"POST /a HTTP/1.1" 201 1' in p.stdout)
        assert '"GET /a HTTP/1.1" 201 1' in p.stdout


class TestReturn444:
    def test_http11_closed_unanswered(self, serve):
        """return 444 closes an HTTP/1.1 connection without a byte of answer, also with a body sent."""
        port, _ = serve("location / { return 444; }")
        assert raw(port, b"GET / HTTP/1.1\r\nHost: rw.test\r\n\r\n") == b""
        assert raw(port, b"POST / HTTP/1.1\r\nHost: rw.test\r\nContent-Length: 3\r\n\r\nabc") == b""
        assert raw(port, b"GET / HTTP/1.0\r\n\r\n") == b""

    def test_after_a_keepalive_request(self, serve):
        """On a kept-alive connection, the 444 request ends it after the first answer."""
        port, _ = serve('location /ok { return 200 "ok"; } location / { return 444; }')
        out = raw(port, b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok")
        assert out.count(b"HTTP/1.1") == 1

    def test_http2_stream_reset(self, run_pyngx):
        """On HTTP/2 (h2c) the stream is reset with PROTOCOL_ERROR and the connection stays, as with nginx 1.22."""
        port = free_port()
        text = f"""http {{ server {{ listen 127.0.0.1:{port} http2;
                    location /ok {{ return 200 "ok"; }} location / {{ return 444; }} }} }}"""
        try:
            run_pyngx(text, port=port)
        except RuntimeError as exc:
            pytest.skip(f"h2c listen not available: {exc}")
        base = f"http://127.0.0.1:{port}"
        out = subprocess.run(["curl", "-sv", "--http2-prior-knowledge", f"{base}/x", f"{base}/ok"],
                             capture_output=True, text=True, timeout=30)
        assert "HTTP/2 stream 1 was not closed cleanly: PROTOCOL_ERROR" in out.stderr
        assert "Connection #0 to host 127.0.0.1 left intact" in out.stderr
        ok = subprocess.run(["curl", "-s", "--http2-prior-knowledge", f"{base}/ok"], capture_output=True, text=True,
                            timeout=30)
        assert ok.stdout == "ok"

    async def test_websocket_handshake_closed(self, serve):
        """A WebSocket handshake answered by return 444 sees the connection close."""
        port, _ = serve("location / { return 444; }")
        with pytest.raises(InvalidMessage):
            async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10):
                pass


class TestWebSocket:
    @pytest.fixture
    async def ws(self, run_pyngx):
        """An aiohttp WebSocket upstream (tests/proxy/wsbackend.py) and pyngx before it."""
        box = Mailbox()
        backend, stop = start_backend(extra_routes=routes(box, Stream()))
        port = free_port()
        body = f"""
            location /chat/ {{
                rewrite ^/chat/(.*)$ /ws/$1 break;
                proxy_pass {backend.url};
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
            }}
            location /closed/ {{ deny all; proxy_pass {backend.url}; }}
        """
        http = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
        run_pyngx(conf(port, body, http), port=port)
        yield port, backend, box
        stop()

    async def test_rewrite_and_connection_upgrade_map(self, ws):
        """A rewritten WebSocket location with the $connection_upgrade map relays messages."""
        port, _, box = ws
        async with connect(f"ws://127.0.0.1:{port}/chat/echo") as c:
            await c.send("hello")
            assert await c.recv() == "hello"
        headers = {k.lower(): v for k, v in await box.get("headers")}
        assert headers["connection"].lower() == "upgrade"
        assert await box.get("path") == "/ws/echo"

    async def test_plain_request_gets_connection_close(self, ws):
        """Without Upgrade, the map gives "close", as nginx's idiom means."""
        port, backend, _ = ws
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/chat/plain") as r:
                assert r.status == 200
        assert backend.last.path == "/ws/plain"
        assert backend.last.header("Connection") == "close"

    async def test_denied_handshake(self, ws):
        """deny answers a WebSocket handshake with 403, before any upstream."""
        port, _, _ = ws
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/closed/echo"):
                pass
        assert info.value.response.status_code == 403


class TestReload:
    def test_map_and_if_change_on_reload(self, serve):
        """A reload with another map and if takes effect; the old config served until then."""
        port, p = serve('location / { if ($arg_x) { return 200 "if:$m"; } return 200 "m:$m"; }',
                        "map $arg_y $m { default old; }")
        assert get(port, "/?x=1") == (200, "if:old")
        p.conf.write_text(conf(port, 'location / { if ($arg_x) { return 201 "if2:$m"; } return 200 "m:$m"; }',
                               "map $arg_y $m { default new; a A; }"))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: get(port, "/?x=1") == (201, "if2:new"))
        assert get(port, "/?y=a") == (200, "m:A")


# --- pure logic -------------------------------------------------------------------------


def request(uri: str = "/", args: str = "", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request("GET", uri + ("?" + args if args else ""), uri, args, headers or [], "http", "HTTP/1.1",
                   ("127.0.0.1", 5000), ("127.0.0.1", 80))


def server_conf(body: str, http: str = "") -> object:
    config = build(Parsed(parse_string(f"http {{ {http} server {{ listen 127.0.0.1:1; {body} }} }}"), ()), Path("t"))
    assert config.http is not None
    return config.http.servers[0]


class TestInternalRedirect:
    def test_uri_with_args(self):
        """internal_redirect splits "/uri?args" and leaves "@name" whole."""
        assert internal_redirect("/a/b?x=1&y") == Redirect("/a/b", "x=1&y")
        assert internal_redirect("/a") == Redirect("/a", "")
        assert internal_redirect("@fallback") == Redirect("@fallback")


class TestEscaping:
    def test_escape_args_set(self):
        """Captures put into arguments are escaped with nginx 1.22's NGX_ESCAPE_ARGS set."""
        assert escape_args(' #%&+;?"\'<>\\^`{|}~!*()=:@,$/é[]\x01\x7f') == (
            "%20%23%25%26%2B%3B%3F%22'%3C%3E%5C%5E%60%7B%7C%7D~!*()=:@,$/%C3%A9[]%01%7F")

    def test_unescape_redirect(self):
        """A redirect decodes what needs no escape, up to the first "?"."""
        assert unescape_redirect("/%41%25%20%26%3C?%41") == "/A%25%20&%3C?%41"


class TestConditions:
    def test_forms(self):
        """Each condition form parses into its operator."""
        assert parse_condition(("($uri)",)).op == ""
        assert parse_condition(("(", "$uri", "=", "/a", ")")).other is not None
        assert parse_condition(("($uri", "!~*", "^/A)")).op == "!~*"
        assert parse_condition(("(!-x", "/bin/sh)")).op == "!-x"

    def test_errors(self):
        """nginx's messages for conditions it refuses."""
        for args, message in [(("$uri)",), 'invalid condition "$uri)"'), (("($uri", "?", "b)"), 'unexpected "?" in condition'),
                              (("(-q", "/x)"), 'invalid condition "-q"'), (("($a$b)",), 'unknown "a$b" variable')]:
            with pytest.raises(ConfigValueError) as info:
                parse_condition(args)
            assert info.value.message == message

    def test_regex_sets_captures_and_failure_clears_them(self):
        """A match sets $1..; a failed script regex resets them, as nginx."""
        r = request("/ab")
        assert parse_condition(("($uri", "~", "^/(a)(?<rest>.)$)",)).test(r)
        assert r.captures[1:] == ("a", "b") and r.variables["rest"] == "b"
        assert not parse_condition(("($uri", "~", "^/z(.)$)",)).test(r)
        assert r.captures == () and r.variables["rest"] == "b"

    def test_file_tests(self, tmp_path: Path):
        """-f, -d, -e, -x and their negations look at the file system each time."""
        f = tmp_path / "f"
        f.write_text("x")
        r = request()
        cond = Condition("-f", parse_condition(("(-f", f"{f})")).value)
        assert cond.test(r)
        f.unlink()
        assert not cond.test(r)
        assert parse_condition(("(!-e", f"{f})")).test(r)
        assert parse_condition(("(-d", f"{tmp_path})")).test(r)


class TestMapsAndVariables:
    def test_map_is_lazy_and_cached(self):
        """A map's value is computed on first use and kept for the request; volatile ones are not kept."""
        srv = server_conf('return 200 "$m $v";', "map $arg_a $m { default d; 1 one; } "
                                                  "map $arg_a $v { volatile; default d; 1 one; }")
        op = srv.conf.script[0]  # type: ignore[attr-defined]
        r = request("/", "a=1")
        assert op.ret.text.render(r) == "one one"
        r.args = "a=2"
        assert op.ret.text.render(r) == "one d"
        assert r.variables == {"m": "one"}

    def test_set_overrides_map_and_captures_share_names(self):
        """set, a map and a named capture of the same name are one variable, as in nginx."""
        srv = server_conf('set $x "set"; return 200 "$x";', "map $uri $x { default map; }")
        r = request("/")
        srv.conf.script[0].run(r, None)  # type: ignore[attr-defined]
        assert srv.conf.script[1].ret.text.render(r) == "set"  # type: ignore[attr-defined]


class TestAccessLogic:
    def test_first_match_wins(self):
        """allow/deny: the first rule covering the address decides; none covering allows."""
        rules = (parse_rule(False, "10.0.0.1"), parse_rule(True, "10.0.0.0/8"), parse_rule(False, "all"))
        assert not allowed(rules, "10.0.0.1")
        assert allowed(rules, "10.9.9.9")
        assert not allowed(rules, "192.168.1.1")
        assert allowed((parse_rule(False, "1.2.3.4"),), "5.6.7.8")

    def test_mapped_ipv6_and_unix(self):
        """An IPv4-mapped IPv6 client meets the IPv4 rules; "unix:" covers UNIX-socket clients."""
        assert not allowed((parse_rule(False, "10.0.0.0/8"),), "::ffff:10.1.2.3")
        assert not allowed((AccessRule(False, None, unix=True),), "")
        assert allowed((AccessRule(False, None, unix=True),), "10.0.0.1")

    def test_forwarded_addresses(self):
        """realip's walk from the right through trusted addresses."""
        trusted = parse_trusted("127.0.0.1") + parse_trusted("10.0.0.0/8")
        xff = "1.1.1.1, 2.2.2.2:99, 10.1.1.1"
        assert forwarded_addr("127.0.0.1", xff, trusted, False) == ("10.1.1.1", 0)
        assert forwarded_addr("127.0.0.1", xff, trusted, True) == ("2.2.2.2", 99)
        assert forwarded_addr("192.0.2.1", xff, trusted, True) is None
        assert forwarded_addr("127.0.0.1", "bogus", trusted, True) is None
        assert forwarded_addr("127.0.0.1", "[::1]:80", trusted, False) == ("::1", 80)
