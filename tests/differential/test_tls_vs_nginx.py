"""HTTPS listeners ($scheme, $https, redirects, SNI and Host, plain HTTP to a TLS port) against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params, xfail

TLS = conf(r"""
    ssl_certificate @CERT@;
    ssl_certificate_key @KEY@;
    server {
        listen 127.0.0.1:@PORT@;
        listen 127.0.0.1:@PORT2@ ssl;
        server_name localhost;
        location / {
            proxy_pass http://@BACKEND@;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Https "[$https]";
            proxy_set_header Connection "";
        }
        location /vars { return 200 "scheme=$scheme https=[$https] port=$server_port host=$host\n"; }
        location /redirect { return 301 /target; }
        location /api/ { proxy_pass http://@BACKEND@; }
        location /to-https { return 301 https://$host$request_uri; }
    }
    server {
        listen 127.0.0.1:@PORT2@ ssl;
        server_name www.example.test;
        location / { return 200 "www server host=$host\n"; }
    }
""")


def s(target: str, status: int = 200, **kw: object) -> Req:
    """A request over TLS to @PORT2@."""
    kw.setdefault("sni", "localhost")
    return Req(target, status=status, port=2, tls=True, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    s("/vars", id="variables-over-tls"),
    Req("/vars", status=200, id="variables-over-plain"),
    s("/x?a=1", reached=True, id="proxied-over-tls"),
    s("/redirect", 301, id="redirect-keeps-https-and-port"),
    s("/api", 301, id="auto-redirect-over-tls"),
    Req("/to-https?q=1", status=301, id="plain-to-https-redirect"),
    s("/vars", sni=None, id="no-sni"),
    s("/", sni="www.example.test", host="www.example.test", id="sni-and-host-agree"),
    s("/vars", sni="www.example.test", host="localhost", id="host-wins-over-sni"),
    s("/", sni="localhost", host="www.example.test", id="host-picks-other-server"),
    xfail(Req("/vars", port=2, status=400, id="plain-http-to-tls-port"),
          "a plain-HTTP request to a TLS listener: nginx answers 400 with its 'The plain HTTP request was sent to "
          "HTTPS port' page (text/html, 261 bytes); pyngx closes the connection without an answer"),
    s("/x", method="POST", body=b"abc", reached=True, id="post-over-tls"),
))
def test_tls(differ, req):
    """Over TLS, the answer and what the backend sees are nginx's."""
    differ(TLS).check(req)


HTTP2 = conf(r"""
    ssl_certificate @CERT@;
    ssl_certificate_key @KEY@;
    server {
        listen 127.0.0.1:@PORT@ ssl http2;
        server_name localhost;
        location / { proxy_pass http://@BACKEND@; }
        location /vars { return 200 "scheme=$scheme protocol=$server_protocol host=$host https=[$https]\n"; }
        location /redirect { return 302 /target; }
        location /api/ { proxy_pass http://@BACKEND@; }
        location /admin { return 403; }
    }
""")


def h2(target: str, status: int = 200, **kw: object) -> Req:
    """A request over HTTP/2 (TLS, ALPN h2) to @PORT@."""
    kw.setdefault("sni", "localhost")
    return Req(target, status=status, http2=True, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    h2("/vars", id="variables"),
    h2("/x?a=1", reached=True, headers=(("x-client", "1"), ("user-agent", "h2test")), id="proxied"),
    h2("/redirect", 302, id="redirect"),
    h2("/api", 301, id="auto-redirect"),
    h2("/admin", 403, id="error-page"),
    h2("/%61dmin", 403, id="normalized-uri"),
    h2("/x?status=404", 404, reached=True, id="backend-404"),
    h2("/x?bytes=200000", reached=True, id="large-answer"),
    h2("/x", method="POST", body=b"abc", reached=True, differs=("streamed-request-body",), id="post"),
    h2("/x", method="HEAD", reached=True, id="head"),
    h2("/vars", host="Example.COM:99", id="authority-as-host"),
    h2("/x?set_X-Up=1", reached=True, id="response-field"),
))
def test_http2(differ, req):
    """Over HTTP/2 the answer and what the backend sees are nginx's."""
    differ(HTTP2).check(req)
