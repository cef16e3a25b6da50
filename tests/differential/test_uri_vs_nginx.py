"""URI normalization and its security edge against the real nginx.

With ``location /admin { return 403; }``, a URI that nginx normalizes to
/admin... must hit that location in pyngx too, and not slip to the backend
through another location; a URI that escapes the root is a 400.
"""

from __future__ import annotations

import pytest

from tests.differential.harness import H11_400, Req, conf, params, xfail

URIS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /admin { return 403; }
        location / { proxy_pass http://@BACKEND@; }
        location /files/ { proxy_pass http://@BACKEND@/store/; }
        location = /echo { return 200 "uri=$uri request_uri=$request_uri args=$args is_args=$is_args\n"; }
        location ~ ^/re(/.*)$ { return 200 "capture=$1\n"; }
    }
""")


def r(target: str, status: int | None = None, reached: bool | None = None, **kw: object) -> Req:
    return Req(target, status=status, reached=reached, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


def raw(line: str, status: int | None = None, **kw: object) -> Req:
    data = f"{line}\r\nHost: localhost\r\n\r\n".encode("latin-1")
    return Req(raw=data, status=status, id=kw.pop("id", line), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    # Every spelling of /admin hits the admin location.
    r("/admin", 403, False),
    r("/%61dmin", 403, False, id="escaped-letter"),
    r("/adm%69n", 403, False, id="escaped-letter-inside"),
    r("/%61%64%6D%69%6E", 403, False, id="all-escaped-uppercase-hex"),
    r("//admin", 403, False, id="double-slash"),
    r("///admin", 403, False, id="triple-slash"),
    r("/%2fadmin", 403, False, id="escaped-slash-merged"),
    r("/x/../admin", 403, False, id="dot-dot"),
    r("/x/%2e%2e/admin", 403, False, id="escaped-dot-dot"),
    r("/x/%2E%2e/admin", 403, False, id="escaped-dot-dot-mixed-case"),
    r("/./admin", 403, False, id="dot-segment"),
    r("/admin/.", 403, False, id="trailing-dot"),
    r("/admin/", 403, False, id="trailing-slash"),
    r("/admin%2f", 403, False, id="escaped-trailing-slash"),
    r("/admin;jsessionid=1", 403, False, id="semicolon"),
    r("/admin?x=1", 403, False, id="with-args"),
    r("/admin/x/..", 403, False, id="dot-dot-at-end"),
    r("/admin/x/../", 403, False, id="dot-dot-slash-at-end"),
    r("/x/y/../../admin", 403, False, id="two-dot-dots"),
    # Not /admin after normalization: goes to "/" (nginx is case-sensitive on Linux).
    r("/ADMIN", 200, True, id="uppercase-is-another-uri"),
    r("/admin/..", 200, True, id="dot-dot-leaves-admin"),
    r("/admin/../x", 200, True, id="dot-dot-leaves-admin-sub"),
    r("/x?/../admin", 200, True, id="dots-in-args-are-not-resolved"),
    r("/.admin", 200, True, id="dot-prefixed-name"),
    r("/..admin", 200, True, id="dot-dot-prefixed-name"),
    r("/admin..", 403, False, id="dots-suffix"),
    # Escaping the root, and bad escapes, are 400.
    r("/..", 400, False, id="root-parent"),
    r("/../", 400, False, id="root-parent-slash"),
    r("/../admin", 400, False, id="root-parent-admin"),
    r("/%2e%2e/admin", 400, False, id="escaped-root-parent"),
    r("/a/../../b", 400, False, id="parent-of-root"),
    r("/%2e%2e%2fadmin", 400, False, id="escaped-dot-dot-slash"),
    r("/%00", 400, False, id="nul"),
    r("/admin%00", 400, False, id="nul-after-admin"),
    r("/%zz", 400, False, id="bad-escape"),
    r("/%4", 400, False, id="short-escape"),
    r("/x%", 400, False, id="percent-at-end"),
    # What the backend sees without a URI part: the target exactly as sent.
    r("/a/./b/../c", 200, True, id="raw-target-passed-unnormalized"),
    r("///x//y", 200, True, id="raw-slashes-passed"),
    r("/a%20b%2Fc", 200, True, id="raw-escapes-passed"),
    r("/a+b?q=a+b&r=%20", 200, True, id="plus-and-args"),
    r("/caf%C3%A9", 200, True, id="escaped-utf8"),
    xfail(r("/x?", 200, True, id="empty-query"),
          "GET /x? : nginx passes the target as sent, '/x?'; pyngx drops the empty query's '?' and sends '/x' "
          "(also $request_uri)"),
    r("/x?a=1&a=2", 200, True, id="repeated-args"),
    xfail(r("/x#frag", 200, True, id="fragment"),
          "GET /x#frag : nginx passes the target as sent, '/x#frag'; pyngx sends '/x'"),
    r("/a\\..\\admin", 200, True, id="backslashes-are-not-separators"),
    # With a URI part: the normalized URI, re-escaped, replaces the prefix.
    r("/files/a", 200, True, id="uri-part"),
    r("/files/a/./b/../c", 200, True, id="uri-part-normalized"),
    r("/files/a%20b", 200, True, id="uri-part-reescaped-space"),
    r("/files/%41", 200, True, id="uri-part-unreserved-unescaped"),
    r("/files/a%3Fb", 200, True, id="uri-part-question-mark"),
    r("/files/a%23b", 200, True, id="uri-part-hash"),
    r("/files/a%25b", 200, True, id="uri-part-percent"),
    r("/files/a%2Fb", 200, True, id="uri-part-escaped-slash"),
    r("/files/caf%C3%A9", 200, True, id="uri-part-utf8"),
    r("/files//x", 200, True, id="uri-part-merged-slashes"),
    r("/files/x?a=%20&b", 200, True, id="uri-part-args-kept"),
    r("/files/a;b=c", 200, True, id="uri-part-semicolon"),
    r("/files/a+b", 200, True, id="uri-part-plus"),
    r("/files/a'b(c)*!", 200, True, id="uri-part-sub-delims"),
    # $uri, $request_uri, $args, captures
    r("/echo", 200, False),
    r("/echo?a=1", 200, False, id="echo-args"),
    r("/%65cho?a=%20", 200, False, id="echo-escaped"),
    r("/echo?%zz", 200, False, id="bad-escape-in-args-is-fine"),
    r("/echo?a=%00", 200, False, id="nul-escape-in-args-is-fine"),
    r("/echo?a=1?b=2", 200, False, id="second-question-mark"),
    r("/echo?a=1&&b=&c", 200, False, id="empty-args"),
    r("/x?a=%00&b=%zz", 200, True, id="odd-args-passed-as-sent"),
    r("/files/x?a=1?b", 200, True, id="uri-part-odd-args"),
    r("//echo", 200, False, id="echo-double-slash"),
    r("/re/a%20b/../c", 200, False, id="regex-capture-normalized"),
    # Request-line forms
    raw("GET http://localhost/admin HTTP/1.1", 403, id="absolute-form-admin"),
    raw("GET http://localhost//admin HTTP/1.1", 403, id="absolute-form-double-slash"),
    raw("GET http://localhost/x/../admin HTTP/1.1", 403, id="absolute-form-dot-dot"),
    raw("GET http://localhost HTTP/1.1", 200, id="absolute-form-no-path"),
    raw("GET http://localhost?x=1 HTTP/1.1", None, id="absolute-form-query-no-path"),
    raw("GET http://localhost:80/echo?x HTTP/1.1", 200, id="absolute-form-port"),
    raw("GET admin HTTP/1.1", 400, id="no-leading-slash"),
    xfail(raw("GET /a b HTTP/1.1", 400, id="space-in-target"), H11_400),
    xfail(raw("OPTIONS * HTTP/1.1", 400, id="options-star"),
          "OPTIONS * HTTP/1.1: nginx answers 400 (its error page); pyngx rewrites the target to / and "
          "proxies 'OPTIONS /' to the backend"),
    raw("GET /admin HTTP/1.0", 403, id="http10"),
    xfail(raw("GET /admin HTTP/2.0", 505, id="http20-on-http1"),
          "GET /admin HTTP/2.0 on an HTTP/1 listener: nginx answers 505 HTTP Version Not Supported; "
          "pyngx serves it as HTTP/1.1 (403 here)"),
    raw("GET /admin HTTP/1.9", 403, id="http19"),
    xfail(raw("get /admin HTTP/1.1", 400, id="lowercase-method"),
          "get /admin HTTP/1.1: nginx answers 400 (methods are upper-case letters); pyngx accepts the "
          "method (403 here, and proxies 'get' elsewhere)"),
))
def test_uri(differ, req):
    """nginx's URI normalization decides the location and what the backend sees."""
    differ(URIS).check(req)
