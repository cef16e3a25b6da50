"""``return`` in all its forms, and nginx's own error pages, against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params, xfail

RETURNS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost alias.test;

        location /r200 { return 200 "hello $uri\n"; }
        location /r200-empty { return 200; }
        location /r200-quoted { return 200 'single "quoted" text'; }
        location /r201 { return 201 "created"; }
        location /r204 { return 204; }
        location /r204-text { return 204 "dropped?"; }
        location /r301 { return 301 /target; }
        location /r301-args { return 301 /target?$args; }
        location /r301-abs { return 301 http://example.com/x; }
        location /r301-rel { return 301 relative; }
        location /r302 { return 302 /found; }
        location /r303 { return 303 /see; }
        location /r307 { return 307 /t?x=$arg_x; }
        location /r308 { return 308 /perm; }
        location /url { return http://example.com/y; }
        location /url-https { return https://example.com/z; }
        location /url-scheme { return $scheme://$host/v$uri; }
        location /r300 { return 300 "multiple"; }
        location /r300-bare { return 300; }
        location /r304 { return 304; }
        location /r400 { return 400; }
        location /r401 { return 401; }
        location /r402 { return 402; }
        location /r403 { return 403; }
        location /r404 { return 404; }
        location /r405 { return 405; }
        location /r406 { return 406; }
        location /r408 { return 408; }
        location /r409 { return 409; }
        location /r410 { return 410; }
        location /r411 { return 411; }
        location /r412 { return 412; }
        location /r413 { return 413; }
        location /r414 { return 414; }
        location /r415 { return 415; }
        location /r416 { return 416; }
        location /r418 { return 418; }
        location /r421 { return 421; }
        location /r429 { return 429; }
        location /r451 { return 451; }
        location /r494 { return 494; }
        location /r500 { return 500; }
        location /r501 { return 501; }
        location /r502 { return 502; }
        location /r503 { return 503; }
        location /r504 { return 504; }
        location /r505 { return 505; }
        location /r507 { return 507; }
        location /r599 { return 599; }
        location /r999 { return 999; }
        location /r404-text { return 404 "custom not found\n"; }
        location /r500-text { return 500 "oops"; }
        location /r403-url { return 403 /not-a-redirect; }
        location /json { default_type application/json; return 200 '{"a":1}'; }
        location /vars { return 200 "$request_uri|$args|$arg_q|$host|$request_method|$scheme|$server_protocol|$http_user_agent|$is_args|$uri|$server_name"; }
        location /tokens-off { server_tokens off; return 404; }
        location /tokens-off-redirect { server_tokens off; return 301 /x; }
        location /utf8 { return 200 "caf\xc3\xa9 ünïcödé"; }
    }
    server {
        listen 127.0.0.1:@PORT2@;
        server_name two.test;
        default_type text/html;
        return 301 https://$host$request_uri;
        location / { return 200 "never\n"; }
    }
""")


def r(target: str, status: int, **kw: object) -> Req:
    return Req(target, status=status, reached=False, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


TITLE_494 = ("return 494: nginx answers status 400 with its 'Request Header Or Cookie Too Large' page (title "
             "'400 Request Header Or Cookie Too Large', heading '400 Bad Request' and a second line); pyngx "
             "answers status 494")
NO_HOST = ("a redirect for an HTTP/1.0 request without Host: nginx puts the address the connection came in on "
           "in Location (http://127.0.0.1:PORT/target); pyngx puts the first server_name (http://localhost:PORT/target)")


@pytest.mark.parametrize("req", params(
    r("/r200", 200),
    r("/r200/x?y", 200, id="r200-sub"),
    r("/r200-empty", 200),
    r("/r200-quoted", 200),
    r("/r201", 201),
    r("/r204", 204),
    r("/r204-text", 204),
    r("/r301", 301),
    r("/r301-args?a=1&b=2", 301, id="r301-args"),
    r("/r301-abs", 301),
    r("/r301-rel", 301),
    r("/r302", 302),
    r("/r303", 303),
    r("/r307?x=7", 307, id="r307-arg"),
    r("/r308", 308),
    r("/url", 302),
    r("/url-https", 302),
    r("/url-scheme/p", 302, id="url-scheme"),
    r("/r300", 300),
    r("/r300-bare", 300),
    r("/r304", 304),
    r("/r401", 401),
    xfail(r("/r494", 400), TITLE_494),
    *[r(f"/r{c}", c) for c in (400, 402, 403, 404, 405, 406, 409, 410, 411, 412, 413, 414, 415, 416, 418,
                               421, 429, 451, 500, 501, 502, 503, 504, 505, 507, 599, 999)],
    r("/r404-text", 404),
    r("/r500-text", 500),
    r("/r403-url", 403),
    r("/json", 200),
    Req("/vars?q=1", host="Alias.Test:99", headers=(("User-Agent", "ua/1"),), status=200, id="variables"),
    r("/tokens-off", 404),
    r("/tokens-off-redirect", 301),
    r("/utf8", 200),
    Req("/r301", host="Example.COM:8080", status=301, id="redirect-host-port-replaced-by-listen-port"),
    Req("/r301", host="[::1]:8080", status=301, id="redirect-ipv6-host"),
    xfail(Req("/r301", host=None, version="HTTP/1.0", status=301, id="redirect-without-host"), NO_HOST),
    Req("/r200", method="HEAD", status=200, id="head-return-text"),
    Req("/r404", method="HEAD", status=404, id="head-error-page"),
    Req("/r301", method="HEAD", status=301, id="head-redirect"),
    Req("/r200", method="POST", body=b"ignored", status=200, id="post-body-discarded"),
    Req("/r200", version="HTTP/1.0", status=200, id="http10"),
    Req("/x?a=1", port=2, host="Two.Test", status=301, id="server-level-return"),
    Req("/", port=2, host=None, version="HTTP/1.0", status=301, id="server-level-return-no-host"),
))
def test_return(differ, req):
    """Each return form gives nginx's status, Location, Content-Type and body."""
    differ(RETURNS).check(req)


ERRORS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { proxy_pass http://@BACKEND@; }
        location /dead/ { proxy_pass http://@DEAD@; }
        location /slow/ { proxy_pass http://@BACKEND@; proxy_read_timeout 300ms; }
        location /tokens/ { proxy_pass http://@DEAD@; server_tokens off; }
        location /html-type/ { default_type text/html; proxy_pass http://@DEAD@; }
    }
""")


@pytest.mark.parametrize("req", params(
    Req("/dead/x", status=502, reached=False, id="502-connection-refused"),
    Req("/dead/x", method="HEAD", status=502, reached=False, id="502-head"),
    Req("/dead/x", method="POST", body=b"abc", status=502, reached=False, id="502-post"),
    Req("/tokens/x", status=502, reached=False, id="502-server-tokens-off"),
    Req("/html-type/x", status=502, reached=False, id="502-default-type-ignored"),
    Req("/slow/x?sleep=1", status=504, reached=True, id="504-read-timeout"),
    Req("/x?status=502", status=502, reached=True, id="backend-502-passed-as-is"),
    Req("/x?status=404&body=nope", status=404, reached=True, id="backend-404-body-passed"),
))
def test_error_pages(differ, req):
    """502/504 pages pyngx makes itself are nginx's pages."""
    differ(ERRORS).check(req)


REDIRECT_KNOBS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name canonical.test localhost;
        location /relative/ { absolute_redirect off; return 301 /target; }
        location /relative-dir/ { absolute_redirect off; location /relative-dir/api/ { proxy_pass http://@BACKEND@; } }
        location /noport/ { port_in_redirect off; return 302 /target; }
        location /name/ { server_name_in_redirect on; return 302 /target; }
        location /api/ { port_in_redirect off; proxy_pass http://@BACKEND@; }
    }
""")


@pytest.mark.parametrize("req", params(
    r("/relative/", 301, id="absolute-redirect-off"),
    r("/relative-dir/api", 301, id="absolute-redirect-off-auto-redirect"),
    r("/noport/", 302, id="port-in-redirect-off"),
    Req("/name/", host="other.test", status=302, id="server-name-in-redirect"),
    r("/api", 301, id="port-in-redirect-off-auto-redirect"),
))
def test_redirect_knobs(differ, req):
    """absolute_redirect, port_in_redirect and server_name_in_redirect shape Location as in nginx."""
    differ(REDIRECT_KNOBS).check(req)


BROKEN_UPSTREAMS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { proxy_pass http://@RAW@; }
    }
""")


LAX = ("a malformed upstream answer that nginx 1.22 passes on (an HTTP/0.9 answer or bad status line as raw "
       "bytes, two Content-Lengths (the last wins), Content-Length with chunked, a field line without a colon, a "
       "204 with Content-Length; a bad chunk size ends the client connection with nothing sent): pyngx answers "
       "502 with its error page. pyngx is stricter: match nginx, or list it in DIFFERENCES.md")
STRICT = ("nginx answers 502 for an upstream answer whose header is over proxy_buffer_size (4k: a 5000-byte field) "
          "or has an obs-fold line; pyngx passes it on (200)")
BROKEN: list[tuple[str, int, str | None]] = [
    ("ok", 200, None),
    ("close-at-once", 502, None),
    ("garbage", -1, LAX),
    ("http09", -1, LAX),
    ("bad-status", -1, LAX),
    ("no-length", 200, None),
    ("http10", 200, None),
    ("short-body", 200, None),
    ("two-lengths", 200, LAX),
    ("length-and-chunked", 200, LAX),
    ("bad-chunk", 0, LAX),
    ("space-in-name", 502, None),
    ("no-colon", 200, LAX),
    ("lf-only", 200, None),
    ("status-only", 200, None),
    ("continue", 200, None),
    ("status-999", 999, None),
    ("status-600", 600, None),
    ("big-header", 502, STRICT),
    ("empty-reason", 404, None),
    ("fold", 502, STRICT),
    ("204-with-body", 204, LAX),
    ("304-with-length", 304, None),
    ("chunked-trailer", 200, None),
    ("gzip-te", 200, None),
    ("utf8-header", 200, None),
]


@pytest.mark.parametrize("req", params(*[
    xfail(Req(f"/{key}", status=status, id=key), bug) if bug else Req(f"/{key}", status=status, id=key)
    for key, status, bug in BROKEN
]))
def test_broken_upstream_answers(differ, req):
    """What nginx makes of a malformed or unusual upstream answer, pyngx makes too."""
    differ(BROKEN_UPSTREAMS).check(req)
