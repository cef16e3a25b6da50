"""Request framing, methods and size limits (the smuggling edge) against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import H11_400, PyngxDiffers, Req, conf, params, xfail

REQUESTS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { proxy_pass http://@BACKEND@; }
        location = /ret { return 200 "ret\n"; }
    }
""")


def raw(head: str, body: bytes = b"", status: int | None = None, **kw: object) -> Req:
    data = head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body
    return Req(raw=data, status=status, id=kw.pop("id"), **kw)  # type: ignore[arg-type]


GET = "GET /x HTTP/1.1\nHost: localhost\n"
POST = "POST /x HTTP/1.1\nHost: localhost\n"

BIG_HEADER = ("a request header line over 8k (large_client_header_buffers 4 8k): nginx answers 400 with its "
              "'Request Header Or Cookie Too Large' page; pyngx passes it to the backend")
LONG_URI = ("a request line over 8k: nginx answers 414 Request-URI Too Large; pyngx passes it to the backend")
METHODS = ("TRACE: nginx answers 405 Not Allowed without passing it on; pyngx proxies the TRACE to the backend")


@pytest.mark.parametrize("req", params(
    raw(POST + "Content-Length: 3\n", b"abc", 200, reached=True, id="content-length"),
    raw(POST + "Transfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n", 200, reached=True,
        differs=("streamed-request-body",), id="chunked"),
    raw(POST + "Transfer-Encoding: chunked\n", b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", 200, reached=True,
        differs=("streamed-request-body",), id="chunked-extension-and-trailer"),
    xfail(raw(POST + "Content-Length: 3\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n", 400,
              reached=False, id="content-length-and-chunked-400"), H11_400),
    xfail(raw(POST + "Content-Length: 3\nContent-Length: 4\n", b"abcd", 400, reached=False,
              id="two-content-lengths-400"), H11_400),
    xfail(raw(POST + "Content-Length: abc\n", b"", 400, reached=False, id="bad-content-length-400"), H11_400),
    xfail(raw(POST + "Content-Length: -1\n", b"", 400, reached=False, id="negative-content-length-400"), H11_400),
    xfail(raw(POST + "Transfer-Encoding: gzip, chunked\n", b"3\r\nabc\r\n0\r\n\r\n", 501, reached=False,
              id="transfer-coding-gzip-501"),
          "Transfer-Encoding: gzip, chunked: nginx answers 501 Not Implemented (its error page); pyngx answers "
          "400 with an empty body (Hypercorn/h11)"),
    xfail(raw("POST /x HTTP/1.0\nHost: localhost\nTransfer-Encoding: chunked\n", b"3\r\nabc\r\n0\r\n\r\n", 400,
              reached=False, id="chunked-in-http10-400"), H11_400),
    raw(GET + "X-Long: " + "v" * 4000 + "\n", b"", 200, reached=True, id="4k-header"),
    xfail(raw(GET + "X-Long: " + "v" * 9000 + "\n", b"", 400, reached=False, id="9k-header-400"), BIG_HEADER),
    xfail(raw("GET /" + "u" * 9000 + " HTTP/1.1\nHost: localhost\n", b"", 414, reached=False, id="9k-uri-414"),
          LONG_URI),
    raw(GET + "".join(f"X-H{i}: {i}\n" for i in range(50)), b"", 200, reached=True, id="50-headers"),
    xfail(raw(GET + "X-Fold: a\n  b\n", b"", 400, reached=False, id="obs-fold-400"),
          "an obs-fold continuation line: nginx answers 400 with its error page; pyngx answers 400 with an empty "
          "body (Hypercorn/h11)"),
    xfail(raw(GET + "Bad Header: 1\n", b"", 400, reached=False, id="space-in-field-name-400"), H11_400),
    raw(GET + "X-Empty:\n", b"", 200, reached=True, id="empty-field-value"),
    raw(GET + "x-lower: 1\nX-MiXeD: 2\n", b"", 200, reached=True, id="field-name-case-kept"),
    raw(GET + "X-Spaces:    padded   \n", b"", 200, reached=True, id="field-value-trimmed"),
    xfail(raw(GET + "X-Latin1: caf\u00e9\n", b"", 200, reached=True, id="latin1-field-value"),
          "a field value with the byte 0xE9 (X-Latin1: caf\\xe9): nginx passes the bytes unchanged; pyngx "
          "re-encodes them as UTF-8 (caf\\xc3\\xa9)"),
    xfail(raw("TRACE /x HTTP/1.1\nHost: localhost\n", b"", 405, reached=False, id="trace-405"), METHODS),
    raw("DELETE /x HTTP/1.1\nHost: localhost\n", b"", 200, reached=True, id="delete"),
    raw("OPTIONS /x HTTP/1.1\nHost: localhost\n", b"", 200, reached=True, id="options"),
    raw("GET /x HTTP/1.0\n", b"", 200, reached=True, id="http10-no-host"),
    raw("GET /x HTTP/1.0\nHost: localhost\nConnection: keep-alive\n", b"", 200, reached=True,
        id="http10-keep-alive"),
    raw("HEAD /ret HTTP/1.1\nHost: localhost\n", b"", 200, id="head-return"),
    raw("GET /x?set_X-R=1 HTTP/1.1\nHost: localhost\nAccept-Encoding: gzip\n", b"", 200, reached=True,
        id="accept-encoding-passed"),
))
def test_request(differ, req):
    """nginx's answer to each framing, size and method edge, and what reaches the backend."""
    differ(REQUESTS).check(req)


def get(target: str, status: int = 200, **kw: object) -> Req:
    return Req(target, status=status, **kw)  # type: ignore[arg-type]


CONNECTIONS = {
    "two-gets": [get("/x?n=1"), get("/ret")],
    "proxied-then-return-then-proxied": [get("/x?n=1"), get("/ret"), get("/x?n=2")],
    "post-then-get": [Req("/x", method="POST", body=b"abc", status=200), get("/x?n=2")],
    "head-then-get": [Req("/x", method="HEAD", status=200), get("/ret")],
    "chunked-answer-then-get": [get("/x?chunked=1"), get("/ret")],
    "404-then-get": [get("/x?status=404", 404), get("/ret")],
    "http10-keep-alive": [Req("/ret", version="HTTP/1.0", headers=(("Connection", "keep-alive"),), status=200),
                          Req("/ret", version="HTTP/1.0", status=200)],
    "connection-close-ends-it": [Req("/ret", headers=(("Connection", "close"),), status=200), get("/ret", 0)],
    "http10-ends-it": [Req("/ret", version="HTTP/1.0", status=200), get("/ret", 0)],
}


KEEP_ALIVE_10 = ("HTTP/1.0 with 'Connection: keep-alive': nginx keeps the connection open and answers the next "
                 "request on it; pyngx (h11) closes the connection after the first answer")
PIPELINED_AFTER_CLOSE = ("a request that ends the connection (Connection: close, or HTTP/1.0) with a second request "
                         "pipelined behind it in the same packet: nginx answers the first (200) and closes; pyngx "
                         "answers the first with 400 and an empty body (h11 rejects the bytes that follow)")
XFAILS = {
    ("http10-keep-alive", False): KEEP_ALIVE_10,
    ("http10-keep-alive", True): PIPELINED_AFTER_CLOSE,
    ("connection-close-ends-it", True): PIPELINED_AFTER_CLOSE,
    ("http10-ends-it", True): PIPELINED_AFTER_CLOSE,
}


def _connection_params() -> list[object]:
    out = []
    for name in CONNECTIONS:
        for pipelined in (False, True):
            marks = []
            if (name, pipelined) in XFAILS:
                marks = [pytest.mark.xfail(strict=True, reason=XFAILS[name, pipelined], raises=PyngxDiffers)]
            out.append(pytest.param(name, pipelined, id=f"{name}-{'pipelined' if pipelined else 'sequential'}",
                                    marks=marks))
    return out


@pytest.mark.parametrize(("name", "pipelined"), _connection_params())
def test_requests_on_one_connection(differ, name, pipelined):
    """Several requests on one client connection get nginx's answers, in order."""
    differ(REQUESTS).check_connection(CONNECTIONS[name], pipelined)
