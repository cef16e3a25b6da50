"""add_header, proxy_hide_header, proxy_pass_header, proxy_redirect, client_max_body_size
and the other proxy header/body directives, against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params, xfail

ADD_HEADER = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        add_header X-Server "s";
        location /inherit/ { proxy_pass http://@BACKEND@; }
        location /own/ {
            proxy_pass http://@BACKEND@;
            add_header X-Added "v";
            add_header X-Var "$uri|$arg_a|$host";
            add_header X-Always "a" always;
        }
        location /dup/ { proxy_pass http://@BACKEND@; add_header X-Dup "added"; }
        location /empty/ { proxy_pass http://@BACKEND@; add_header X-Empty ""; add_header X-Empty-Var $arg_none; }
        location /cache/ { proxy_pass http://@BACKEND@; add_header Cache-Control "no-cache"; }
        location /ret/ { add_header X-R "r"; return 200 "ret\n"; }
        location /ret404/ { add_header X-R "r"; add_header X-RA "ra" always; return 404; }
        location /ret301/ { add_header X-R "r"; return 301 /x; }
        location /nested/ {
            add_header X-Outer "o";
            location /nested/in/ { proxy_pass http://@BACKEND@; }
            location /nested/own/ { proxy_pass http://@BACKEND@; add_header X-Inner "i"; }
        }
        location /dead/ { proxy_pass http://@DEAD@; add_header X-R "r"; add_header X-RA "ra" always; }
    }
""")


def h(target: str, **kw: object) -> Req:
    kw.setdefault("status", 200)
    return Req(target, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    h("/inherit/x", headers_out=("X-Server",), id="server-level-inherited"),
    h("/own/x?a=1", headers_out=("X-Added", "X-Var", "X-Always"), id="own-replaces-server-level"),
    h("/own/x?status=201", status=201, id="added-on-201"),
    h("/own/x?status=204", status=204, id="added-on-204"),
    h("/own/x?status=206", status=206, id="added-on-206"),
    h("/own/x?status=302&set_Location=/y", status=302, id="added-on-302"),
    h("/own/x?status=304", status=304, id="added-on-304"),
    h("/own/x?status=308&set_Location=/y", status=308, id="added-on-308"),
    h("/own/x?status=404", status=404, id="only-always-on-404"),
    h("/own/x?status=500", status=500, id="only-always-on-500"),
    h("/own/x?status=202", status=202, id="not-on-202"),
    h("/dup/x?set_X-Dup=backend", id="added-next-to-backend-field"),
    h("/empty/x", id="empty-value-not-added"),
    h("/cache/x?set_Cache-Control=max-age=60", id="cache-control-both"),
    h("/ret/x", headers_out=("X-R",), id="on-return-200"),
    h("/ret404/x", status=404, id="return-404-only-always"),
    h("/ret301/x", status=301, id="on-return-301"),
    h("/nested/in/x", headers_out=("X-Outer",), id="inherited-into-nested"),
    h("/nested/own/x", id="nested-own"),
    h("/dead/x", status=502, id="502-only-always"),
))
def test_add_header(differ, req):
    """add_header adds nginx's fields, on nginx's statuses, with nginx's inheritance."""
    differ(ADD_HEADER).check(req)


RESPONSE_FIELDS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /hide/ { proxy_pass http://@BACKEND@; proxy_hide_header X-Secret; proxy_hide_header cache-control; }
        location /pass/ { proxy_pass http://@BACKEND@; proxy_pass_header X-Accel-Buffering; proxy_pass_header X-Pad; }
        location /hide-inherit/ {
            proxy_hide_header X-Secret;
            location /hide-inherit/in/ { proxy_pass http://@BACKEND@; }
            location /hide-inherit/own/ { proxy_pass http://@BACKEND@; proxy_hide_header X-Other; }
        }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/hide/x?set_X-Secret=1&set_X-Public=2", id="hidden"),
    h("/hide/x?set_Cache-Control=no-store", id="hidden-case-insensitive"),
    h("/pass/x?set_X-Accel-Buffering=no&set_X-Pad=1", headers_out=("X-Accel-Buffering",), id="passed"),
    h("/hide-inherit/in/x?set_X-Secret=1", id="hide-inherited"),
    h("/hide-inherit/own/x?set_X-Secret=1&set_X-Other=1", id="hide-own-level-replaces"),
))
def test_response_fields(differ, req):
    """proxy_hide_header and proxy_pass_header pick the fields nginx passes."""
    differ(RESPONSE_FIELDS).check(req)


REDIRECTS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /def/ { proxy_pass http://@BACKEND@/up/; }
        location /def-explicit/ { proxy_pass http://@BACKEND@/up/; proxy_redirect default; }
        location /off/ { proxy_pass http://@BACKEND@/up/; proxy_redirect off; }
        location /custom/ { proxy_pass http://@BACKEND@; proxy_redirect http://@BACKEND@/ /mapped/; }
        location /foreign/ { proxy_pass http://@BACKEND@; proxy_redirect http://other.test/ http://$host/o/; }
        location /regex/ { proxy_pass http://@BACKEND@; proxy_redirect ~^http://[^/]+/(.*)$ /re/$1; }
        location /iregex/ { proxy_pass http://@BACKEND@; proxy_redirect ~*^HTTP://OTHER\.TEST/(.*)$ /ire/$1; }
        location /two/ {
            proxy_pass http://@BACKEND@;
            proxy_redirect http://a.test/ /a/;
            proxy_redirect http://b.test/ /b/;
        }
        location /noport/ { proxy_pass http://@BACKEND@; proxy_redirect / /pre/; }
    }
""")

LOC = "set_Location="


@pytest.mark.parametrize("req", params(
    h(f"/def/x?status=302&{LOC}http://@BACKEND@/up/y", status=302, id="default-rewrites"),
    h(f"/def/x?status=301&{LOC}http://@BACKEND@/other", status=301, id="default-other-path-kept"),
    h(f"/def/x?status=201&{LOC}http://@BACKEND@/up/y", status=201, id="default-on-201"),
    h(f"/def/x?status=302&{LOC}/up/rel", status=302, id="default-relative-kept"),
    h(f"/def-explicit/x?status=302&{LOC}http://@BACKEND@/up/z", status=302, id="default-explicit"),
    h(f"/off/x?status=302&{LOC}http://@BACKEND@/up/y", status=302, id="off"),
    h(f"/custom/x?status=302&{LOC}http://@BACKEND@/a/b", status=302, id="custom"),
    h(f"/foreign/x?status=302&{LOC}http://other.test/p", status=302, id="custom-with-variable"),
    h(f"/regex/x?status=302&{LOC}http://anything.test/p/q", status=302, id="regex"),
    h(f"/iregex/x?status=302&{LOC}http://other.test/p", status=302, id="case-insensitive-regex"),
    h(f"/two/x?status=302&{LOC}http://b.test/p", status=302, id="second-rule"),
    h(f"/noport/x?status=302&{LOC}/rel", status=302, id="relative-rule"),
    h("/def/x?status=200&set_Refresh=5;%20url=http://@BACKEND@/up/r", id="refresh-rewritten"),
))
def test_proxy_redirect(differ, req):
    """proxy_redirect rewrites Location (and Refresh) as nginx does."""
    differ(REDIRECTS).check(req)


BODIES = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /small/ { client_max_body_size 10; proxy_pass http://@BACKEND@; }
        location /unlimited/ { client_max_body_size 0; proxy_pass http://@BACKEND@; }
        location /k/ { client_max_body_size 1k; proxy_pass http://@BACKEND@; }
        location /ret/ { client_max_body_size 10; return 200 "ret\n"; }
        location /method/ { proxy_method PUT; proxy_pass http://@BACKEND@; }
        location /setbody/ { proxy_set_body "a=$arg_a"; proxy_pass http://@BACKEND@; }
        location /nobody/ {
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_pass http://@BACKEND@;
        }
        location /noheaders/ { proxy_pass_request_headers off; proxy_pass http://@BACKEND@; }
    }
""")


@pytest.mark.parametrize("req", params(
    Req("/small/x", method="POST", body=b"x" * 10, status=200, reached=True, id="at-limit"),
    Req("/small/x", method="POST", body=b"x" * 11, status=413, reached=False, id="over-limit-413"),
    Req("/small/x", method="POST", body=b"10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n",
        headers=(("Transfer-Encoding", "chunked"),), status=413, reached=False, id="chunked-over-limit-413"),
    Req("/small/x", method="GET", body=b"x" * 11, status=413, reached=False, id="get-with-body-over-limit"),
    Req("/unlimited/x", method="POST", body=b"x" * (1024 * 1024 + 1), status=200, reached=True,
        differs=("streamed-request-body",), id="zero-is-unlimited"),
    Req("/k/x", method="POST", body=b"x" * 1024, status=200, reached=True, id="1k-at-limit"),
    Req("/k/x", method="POST", body=b"x" * 1025, status=413, reached=False, id="1k-over-limit"),
    Req("/ret/x", method="POST", body=b"x" * 11, status=413, id="limit-before-return"),
    Req("/method/x", status=200, reached=True, id="proxy-method"),
    Req("/setbody/x?a=1", status=200, reached=True, id="proxy-set-body"),
    Req("/nobody/x", method="POST", body=b"abc", status=200, reached=True, id="request-body-off"),
    Req("/noheaders/x", headers=(("X-Client", "1"), ("User-Agent", "ua")), status=200, reached=True,
        id="request-headers-off"),
))
def test_request_body(differ, req):
    """client_max_body_size and the request body/method directives act as in nginx."""
    differ(BODIES).check(req)


PROXY_VARIABLES = conf(r"""
    upstream ups { server @BACKEND@; }
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        set $backend @BACKEND@;
        location ~ ^/cap/(.*)$ { proxy_pass http://@BACKEND@/c/$1; }
        location ~ ^/capargs/(.*)$ { proxy_pass http://@BACKEND@/c/$1$is_args$args; }
        location /var/ { proxy_pass http://$backend; }
        location /varuri/ { proxy_pass http://$backend/fixed$is_args$args; }
        location /requri/ { proxy_pass http://$backend$request_uri; }
        location /ups/ { set $u ups; proxy_pass http://$u; }
        location /upsuri/ { set $u ups; proxy_pass http://$u/base$uri; }
        location /arg/ { proxy_pass http://@BACKEND@/a/$arg_p; }
        location /unix/ { set $sock @UNIX@; proxy_pass http://unix:$sock:/via-unix$uri; }
    }
""")


@pytest.mark.parametrize("req", params(
    Req("/cap/x/y?q=1", status=200, reached=True, id="regex-capture-args-dropped"),
    Req("/capargs/x?q=1", status=200, reached=True, id="regex-capture-with-args"),
    Req("/cap/a%2Fb", status=200, reached=True, id="capture-is-decoded"),
    Req("/var/x?q=1", status=200, reached=True, id="variable-host-no-uri"),
    Req("/var/a%20b/../c", status=200, reached=True, id="variable-host-no-uri-raw-target"),
    Req("/varuri/x?q=1", status=200, reached=True, id="variable-host-with-uri"),
    Req("/requri/x%20y?q=1", status=200, reached=True, id="request-uri"),
    Req("/ups/x?q=1", status=200, reached=True, id="variable-names-upstream"),
    Req("/upsuri/x", status=200, reached=True, id="variable-upstream-with-uri"),
    Req("/arg/?p=zz", status=200, reached=True, id="arg-in-uri"),
    Req("/unix/x", status=200, reached=True, id="unix-socket-variable"),
))
def test_proxy_pass_variables(differ, req):
    """proxy_pass with variables builds nginx's upstream request."""
    differ(PROXY_VARIABLES).check(req)


COOKIES_AND_ERRORS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /cookie/ {
            proxy_pass http://@BACKEND@;
            proxy_cookie_domain backend.test example.com;
            proxy_cookie_path /one/ /two/;
        }
        location /cookie-re/ {
            proxy_pass http://@BACKEND@;
            proxy_cookie_domain ~^(.+)\.internal$ $1.example.com;
            proxy_cookie_path ~*^/A(.*)$ /b$1;
        }
        location /cookie-off/ { proxy_pass http://@BACKEND@; proxy_cookie_domain off; proxy_cookie_path off; }
        location /intercept/ { proxy_pass http://@BACKEND@; proxy_intercept_errors on; }
        location /intercept-page/ { proxy_pass http://@BACKEND@; proxy_intercept_errors on; error_page 404 /page; }
        location = /page { return 200 "intercepted $uri\n"; }
        location /buffering-off/ { proxy_pass http://@BACKEND@; proxy_buffering off; }
        location /accel/ { proxy_pass http://@BACKEND@; }
        location /accel-ignored/ { proxy_pass http://@BACKEND@; proxy_ignore_headers X-Accel-Redirect; }
        location /internal-target { internal; return 200 "internal target\n"; }
    }
""")

SC = "set_Set-Cookie="


@pytest.mark.parametrize("req", params(
    Req(f"/cookie/x?{SC}a=1%3B%20Domain=backend.test%3B%20Path=/one/x", status=200, id="domain-and-path"),
    Req(f"/cookie/x?{SC}a=1%3B%20domain=.BACKEND.test%3B%20path=/one/", status=200, id="case-and-leading-dot"),
    Req(f"/cookie/x?{SC}a=1%3B%20Domain=other.test%3B%20Path=/x", status=200, id="no-match"),
    Req(f"/cookie-re/x?{SC}a=1%3B%20Domain=app.internal%3B%20Path=/ABC", status=200, id="regex-rules"),
    Req(f"/cookie-off/x?{SC}a=1%3B%20Domain=backend.test", status=200, id="off"),
    Req("/intercept/x?status=404", status=404, reached=True, id="intercept-without-error-page"),
    Req("/intercept/x?status=500", status=500, reached=True, id="intercept-500-without-error-page"),
    Req("/intercept-page/x?status=404", status=404, reached=True, id="intercept-with-error-page"),
    Req("/intercept-page/x?status=403", status=403, reached=True, id="intercept-other-code-passed"),
    Req("/buffering-off/x?chunked=1", status=200, reached=True, id="buffering-off"),
    xfail(Req("/accel/x?set_X-Accel-Redirect=/internal-target", status=200, reached=True, id="x-accel-redirect"),
          "a backend answer with 'X-Accel-Redirect: /internal-target': nginx redirects internally and sends that "
          "location's answer ('internal target'); pyngx sends the backend's body"),
    Req("/accel-ignored/x?set_X-Accel-Redirect=/internal-target", status=200, reached=True,
        id="x-accel-redirect-ignored"),
))
def test_cookies_and_intercepted_errors(differ, req):
    """proxy_cookie_*, proxy_intercept_errors and X-Accel-Redirect behave as in nginx."""
    differ(COOKIES_AND_ERRORS).check(req)
