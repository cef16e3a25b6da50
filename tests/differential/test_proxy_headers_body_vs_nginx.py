"""proxy_cookie_domain/_path, proxy_pass with variables, proxy_intercept_errors,
proxy_ignore_headers, proxy_buffering, proxy_pass_request_body, UNIX-socket
upstreams, keepalive_timeout, client_body_timeout and proxy_send_timeout,
against the real nginx: the same config text, the same requests.

(add_header, proxy_hide_header, proxy_pass_header, proxy_redirect,
client_max_body_size, proxy_method, proxy_set_body and
proxy_pass_request_headers are in test_proxy_directives_vs_nginx.py.)
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.differential.harness import Pair, Req, conf, nginx_t, params, pyngx_t, xfail


def h(target: str, **kw: object) -> Req:
    kw.setdefault("status", 200)
    kw.setdefault("reached", True)
    return Req(target, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


def cookie(value: str) -> str:
    """A query argument that makes the backend send ``Set-Cookie: value``."""
    return "set_Set-Cookie=" + value.replace("%", "%25").replace(" ", "%20").replace(";", "%3B").replace("=", "%3D")


COOKIES = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        proxy_cookie_path /srv/ /s/;
        location /c/ {
            proxy_pass http://@BACKEND@;
            proxy_cookie_domain .backend.test front.test;
            proxy_cookie_domain ~^(?<sub>[a-z]+)\.internal$ $sub.public.test;
            proxy_cookie_domain $arg_from $arg_to;
            proxy_cookie_path /app/ /;
            proxy_cookie_path ~*^/RE(/.*)$ /re$1;
            proxy_cookie_path /$arg_p/ /mine/;
        }
        location /inh/ { proxy_pass http://@BACKEND@; }
        location /off/ { proxy_pass http://@BACKEND@; proxy_cookie_path off; }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/c/x?" + cookie("a=1; Domain=.BACKEND.test; Path=/app/x"), id="domain-and-path"),
    h("/c/x?" + cookie("a=1; domain=backend.test"), id="domain-without-dot"),
    h("/c/x?" + cookie("a=1; domain=sub.backend.test"), id="domain-must-equal"),
    h("/c/x?" + cookie("b=2;path=/re/deep;HttpOnly"), id="path-regex-caseless-rejoined"),
    h("/c/x?" + cookie("b=2;path=/RE/deep"), id="path-regex-capture"),
    h("/c/x?" + cookie("c=3; domain=shop.internal"), id="domain-regex-named-capture"),
    h("/c/x?from=a.test&to=b.test&" + cookie("d=4; Domain=A.TEST"), id="domain-variables"),
    h("/c/x?p=v1&" + cookie("e=5; Path=/v1/deep"), id="path-variables"),
    h("/c/x?" + cookie("f=6;  Path=/other ;Secure"), id="untouched-passes-as-sent"),
    h("/c/x?" + cookie("noequals; Path=/app/x"), id="no-value-untouched"),
    h("/c/x?" + cookie("g=7; Path=/app/1") + "&" + cookie("h=8; Path=/app/2"), id="each-field"),
    h("/inh/x?" + cookie("i=9; Path=/srv/x"), id="inherited"),
    h("/off/x?" + cookie("j=10; Path=/srv/x"), id="off"),
))
def test_cookie_rewrites(differ, req):
    """proxy_cookie_domain and proxy_cookie_path rewrite Set-Cookie as nginx does."""
    differ(COOKIES).check(req)


VARIABLES = conf(r"""
    upstream app { server @BACKEND@; }
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /plain/ { proxy_pass http://$arg_to; }
        location /uri/ { proxy_pass http://@BACKEND@/fixed$uri; }
        location /req/ { proxy_pass http://@BACKEND@/pre$request_uri; }
        location /slash/ { proxy_pass http://$arg_to/; }
        location /q/ { proxy_pass http://@BACKEND@?$args; }
        location ~ ^/re/(.*)$ { proxy_pass http://@BACKEND@/r/$1; }
        location /named/ { proxy_pass http://$arg_up; }
        location /bad/ { proxy_pass $arg_url; }
        location /unix/ { proxy_pass http://unix:$arg_sock:/u$uri; }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/plain/a%20b?to=@BACKEND@", id="no-uri-part-passes-request-uri"),
    h("/uri/x?q=1", id="uri-part-replaces-uri-without-args"),
    h("/req/x?q=1", id="request-uri-in-uri-part"),
    h("/slash/deep/x?to=@BACKEND@", id="slash-uri-part"),
    h("/q/x?a=1", id="args-only-uri-part"),
    h("/re/abc?z=1", id="regex-location-with-uri-part"),
    h("/named/y?up=app", id="upstream-by-name"),
    h("/named/y?up=APP", id="upstream-name-any-case"),
    h("/named/y?up=app:@BACKEND_PORT@", status=502, reached=False, id="upstream-name-with-port-needs-resolver"),
    h("/named/y?up=nowhere.invalid", status=502, reached=False, id="host-name-needs-resolver"),
    h("/bad/y?url=ftp://x", status=500, reached=False, id="invalid-url-prefix"),
    h("/bad/y?url=http://", status=500, reached=False, id="empty-host"),
    h("/unix/y?sock=@UNIX@", id="unix-socket"),
))
def test_proxy_pass_variables(differ, req):
    """proxy_pass with variables: nginx's URI rule, upstream lookup, and errors."""
    differ(VARIABLES).check(req)


INTERCEPT = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /i/ {
            proxy_pass http://@BACKEND@;
            proxy_intercept_errors on;
            error_page 404 /err;
            error_page 500 = /err;
            error_page 301 /err;
            error_page 401 /err;
        }
        location /noi/ { proxy_pass http://@BACKEND@; error_page 404 /err; }
        location /dead/ { proxy_pass http://@DEAD@; error_page 502 /err; }
        location = /err { return 200 "custom error page\n"; }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/i/x?status=404&set_X-Up=1", status=404, id="intercepted-404"),
    h("/i/x?status=500", status=200, id="intercepted-500-with-equals"),
    h("/i/x?status=301&set_Location=/else", status=301, id="intercepted-redirect"),
    xfail(h("/i/x?status=401&set_WWW-Authenticate=Basic%20realm%3Dx", status=401,
            id="intercepted-401-keeps-www-authenticate"),
          "an intercepted 401 keeps the upstream's WWW-Authenticate through error_page's internal redirect in "
          "nginx; proxy_http hands it over (SpecialResponse.headers -> Finish.headers), but app.py drops it when "
          "error_page redirects"),
    h("/i/x?status=403", status=403, id="no-error-page-passes-upstream-answer"),
    h("/i/x?status=200", id="success-passes"),
    h("/noi/x?status=404", status=404, id="off-passes-upstream-answer"),
    h("/dead/x", status=502, reached=False, id="own-502-goes-to-error-page"),
))
def test_intercept_errors(differ, req):
    """proxy_intercept_errors hands upstream statuses >= 300 with an error_page to it."""
    differ(INTERCEPT).check(req)


MISC = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /ign/ {
            proxy_pass http://@BACKEND@;
            proxy_ignore_headers X-Accel-Redirect X-Accel-Expires x-accel-limit-rate Expires Cache-Control Set-Cookie Vary;
        }
        location /xar/ { proxy_pass http://@BACKEND@; }
        location /buf/ { proxy_pass http://@BACKEND@; proxy_buffering off; proxy_request_buffering off; }
        location /nb/ { proxy_pass http://@BACKEND@; proxy_pass_request_body off; proxy_read_timeout 1s; }
        location /unix/ { proxy_pass http://unix:@UNIX@:/in/; }
        location /unix-plain/ { proxy_pass http://unix:@UNIX@; }
        location /tokens/ { server_tokens off; proxy_pass http://@DEAD@; }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/ign/x?set_X-Accel-Redirect=/elsewhere&set_Set-Cookie=a%3D1&set_Vary=Accept&set_Expires=0"
      "&set_Cache-Control=no-cache&set_X-Accel-Expires=5", id="ignored-fields"),
    xfail(h("/xar/x?set_X-Accel-Redirect=/elsewhere", status=None, id="x-accel-redirect-internal-redirect"),
          "X-Accel-Redirect: nginx redirects internally to the URI the upstream names (a second request to "
          "/elsewhere); pyngx does no X-Accel-Redirect and passes the upstream's answer (without the field)"),
    h("/buf/x?chunked=1&body=streamed", id="buffering-off"),
    Req("/buf/x", method="POST", body=b"up" * 100, status=200, reached=True, id="request-buffering-off"),
    Req("/nb/x", method="POST", body=b"abc", status=504, reached=False,
        id="request-body-off-keeps-content-length"),
    h("/unix/a?b=1", id="unix-with-uri"),
    h("/unix-plain/a?b=1", id="unix-without-uri"),
    h("/tokens/x", status=502, reached=False, id="server-tokens-off-error-page"),
))
def test_misc(differ, req):
    """proxy_ignore_headers, proxy_buffering, proxy_pass_request_body, UNIX sockets, server_tokens."""
    differ(MISC).check(req)


ADD_HEADER_IF = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / {
            add_header X-Out "o";
            if ($arg_a) { add_header X-If "i"; proxy_pass http://@BACKEND@; }
            proxy_pass http://@BACKEND@;
        }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/x?a=1", id="if-block-has-its-own"),
    h("/x", id="outside-the-if"),
))
def test_add_header_in_if(differ, req):
    """add_header inside ``if`` replaces the location's set, as a nested level does."""
    differ(ADD_HEADER_IF).check(req)


# --- connection-level behaviours: raw sockets to both daemons ------------------------------


def _read_response(sock: socket.socket) -> bytes:
    """One response's head, and its body when it has a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
            while len(body) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    return head + b"\r\n\r\n" + body


def _fields(head: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def _closed_after(sock: socket.socket) -> bool:
    """The daemon closed the connection (within the socket's timeout)."""
    try:
        return sock.recv(65536) == b""
    except (socket.timeout, ConnectionResetError):
        return False


KEEPALIVE = conf(r"""
    keepalive_timeout 30s;
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /zero/ { keepalive_timeout 0; return 200 "z\n"; }
        location /hdr/ { keepalive_timeout 30s 25; return 200 "h\n"; }
        location /plain/ { return 200 "p\n"; }
    }
""", prelude=False)


@pytest.mark.parametrize("path,close,keep_alive", [
    ("/zero/", True, None),
    ("/hdr/", False, ["timeout=25"]),
    ("/plain/", False, None),
])
def test_keepalive_timeout(differ, path, close, keep_alive):
    """keepalive_timeout 0 closes after the answer (Connection: close); a header_timeout sends Keep-Alive."""
    pair: Pair = differ(KEEPALIVE)
    for port in (pair.nports[0], pair.pports[0]):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            fields = _fields(_read_response(s))
            assert (fields.get("connection") == ["close"]) is close, (port, fields)
            assert fields.get("keep-alive") == keep_alive, (port, fields)
            if close:
                assert _closed_after(s)


TIMEOUTS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        client_max_body_size 0;
        location /body/ { client_body_timeout 500ms; proxy_pass http://@BACKEND@; }
    }
""")


def test_client_body_timeout(differ):
    """A request body that stalls past client_body_timeout: the connection closes unanswered, from both."""
    pair: Pair = differ(TIMEOUTS)
    for port in (pair.nports[0], pair.pports[0]):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            t0 = time.monotonic()
            s.sendall(b"POST /body/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc")
            assert _read_response(s) == b"", port
            assert 0.4 < time.monotonic() - t0 < 4, port


@pytest.fixture
def deaf_upstream():
    """A TCP upstream that accepts connections and never reads: (port, stop)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in conns:
        c.close()


def test_proxy_send_timeout(differ, deaf_upstream, tmp_path: Path):
    """An upstream that stops reading the request body: 504 after proxy_send_timeout, from both."""
    text = conf(f"""
        server {{
            listen 127.0.0.1:@PORT@;
            server_name localhost;
            client_max_body_size 0;
            location / {{ proxy_send_timeout 1s; proxy_read_timeout 30s; proxy_pass http://127.0.0.1:{deaf_upstream}; }}
        }}
    """)
    pair: Pair = differ(text)
    body = tmp_path / "body"
    body.write_bytes(b"q" * (64 * 1024 * 1024))
    import subprocess

    statuses = []
    for port in (pair.nports[0], pair.pports[0]):
        t0 = time.monotonic()
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "-H", "Expect:",
                              "--data-binary", f"@{body}", f"http://127.0.0.1:{port}/up"],
                             capture_output=True, text=True, timeout=40)
        statuses.append(out.stdout)
        assert time.monotonic() - t0 < 25
    assert statuses == ["504", "504"]


# --- pyngx -t against nginx -t -------------------------------------------------------------

BAD_CONFIGS = {
    "redirect-default-before-proxy-pass": "location / { proxy_redirect default; proxy_pass http://127.0.0.1:1; }",
    "redirect-default-with-variables": "location / { proxy_pass http://$host; proxy_redirect default; }",
    "redirect-default-server-level": "proxy_redirect default;",
    "redirect-off-then-rule": "location / { proxy_redirect off; proxy_redirect / /; }",
    "redirect-rule-then-off": "location / { proxy_redirect / /; proxy_redirect off; }",
    "redirect-bad-word": "location / { proxy_redirect foo; }",
    "redirect-bad-regex": "location / { proxy_redirect ~*(bad /; }",
    "add-header-bad-word": "location / { add_header X 1 sometimes; }",
    "add-header-arity": "location / { add_header X; }",
    "cookie-domain-off-then-rule": "location / { proxy_cookie_domain off; proxy_cookie_domain a b; }",
    "cookie-path-bad-word": "location / { proxy_cookie_path foo; }",
    "cookie-path-off-twice": "location / { proxy_cookie_path off; proxy_cookie_path off; }",
    "ignore-headers-bad": "location / { proxy_ignore_headers X-Accel-Redirect Foo; }",
    "body-size-bad": "location / { client_max_body_size 1x; }",
    "header-timeout-in-location": "location / { client_header_timeout 5s; }",
    "keepalive-arity": "location / { keepalive_timeout 5 6 7; }",
    "buffering-bad-flag": "location / { proxy_buffering maybe; }",
    "method-arity": "location / { proxy_method; }",
    "hide-header-arity": "location / { proxy_hide_header A B; }",
    "set-body-duplicate": 'location / { proxy_set_body a; proxy_set_body b; }',
    "intercept-duplicate": "location / { proxy_intercept_errors on; proxy_intercept_errors off; }",
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_config_errors_match_nginx(name, tmp_path):
    """pyngx -t refuses these configs with nginx's message and line."""
    text = f"events {{}}\nhttp {{\n    server {{\n        listen 127.0.0.1:1;\n        {BAD_CONFIGS[name]}\n    }}\n}}\n"
    path = tmp_path / "test.conf"
    path.write_text(text)
    n = nginx_t(path, tmp_path)
    p = pyngx_t(["-t", "-c", str(path)], tmp_path)  # as "python -m pyngx -t", without a Python start per case
    assert n.returncode == p.returncode == 1, (n.stderr, p.stderr)
    nline = next(line for line in n.stderr.splitlines() if "[emerg]" in line).split("[emerg] ", 1)[1]
    pline = next(line for line in p.stderr.splitlines() if "[emerg]" in line).split("[emerg] ", 1)[1]
    assert pline == nline
