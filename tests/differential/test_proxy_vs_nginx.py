"""proxy_pass URL forms and what the backend receives, against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import Req, conf, params, xfail

RESPONSE_HOP = ("nginx passes the backend's Upgrade, Trailer and Proxy-Authenticate fields to the client (it hides "
                "only Date, Server, X-Pad, X-Accel-*); pyngx drops them (match nginx, or list it in DIFFERENCES.md)")

FORMS = conf(r"""
    upstream ups { server @BACKEND@; }
    upstream unix_ups { server unix:@UNIX@; }
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /a/ { proxy_pass http://@BACKEND@; }
        location /b/ { proxy_pass http://@BACKEND@/; }
        location /c/ { proxy_pass http://@BACKEND@/new/; }
        location /d/ { proxy_pass http://@BACKEND@/new; }
        location /e { proxy_pass http://@BACKEND@/new/; }
        location /f { proxy_pass http://@BACKEND@; }
        location ^~ /g/ { proxy_pass http://@BACKEND@/caret/; }
        location ~ ^/h/ { proxy_pass http://@BACKEND@; }
        location = /i { proxy_pass http://@BACKEND@/exact-target; }
        location = /i2/ { proxy_pass http://@BACKEND@/exact-slash/; }
        location /u/ { proxy_pass http://unix:@UNIX@:/sock/; }
        location /v/ { proxy_pass http://unix:@UNIX@; }
        location /up/ { proxy_pass http://ups/; }
        location /up2/ { proxy_pass http://ups; }
        location /unix-up/ { proxy_pass http://unix_ups/unix-upstream/; }
        location /upper/ { proxy_pass HTTP://@BACKEND@/Upper/; }
        location /q/ { proxy_pass http://@BACKEND@/new?fixed=1; }
        location /enc/ { proxy_pass http://@BACKEND@/a%20b/; }
        location /nested/ {
            location /nested/in/ { proxy_pass http://@BACKEND@/inner/; }
        }
        location /dead/ { proxy_pass http://@DEAD@; }
        location /byname/ { proxy_pass http://localhost:@BACKEND_PORT@/named/; }
    }
""")


def r(target: str, **kw: object) -> Req:
    kw.setdefault("status", 200)
    kw.setdefault("reached", True)
    return Req(target, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    r("/a/x?y=1", id="no-uri-part"),
    r("/a/", id="no-uri-part-root"),
    r("/b/x?y=1", id="uri-slash"),
    r("/b/", id="uri-slash-root"),
    r("/c/x/y?z", id="uri-new-slash"),
    r("/d/x", id="uri-without-slash-joins"),
    r("/e/x", id="location-without-slash-uri-with"),
    r("/e", id="location-without-slash-exact"),
    r("/ex", id="location-without-slash-longer"),
    r("/f/x", id="no-uri-location-without-slash"),
    r("/fx", id="no-uri-location-without-slash-longer"),
    r("/g/x", id="caret-with-uri"),
    r("/h/x?q", id="regex-no-uri"),
    r("/i", id="exact-with-uri"),
    r("/i?x=1", id="exact-with-uri-args"),
    r("/i2/", id="exact-slash-with-uri"),
    r("/i2", status=301, reached=False, id="exact-slash-auto-redirect"),
    r("/u/x?y=1", id="unix-with-uri"),
    r("/v/x?y=1", id="unix-without-uri"),
    r("/up/x", id="upstream-with-uri"),
    r("/up2/x", id="upstream-without-uri"),
    r("/unix-up/x?y=1", id="unix-socket-upstream"),
    r("/a/x?bytes=3000000", id="3mb-response"),
    r("/a/x?bytes=3000000&chunked=1", id="3mb-chunked-response"),
    Req("/a/x?bytes=3000000", method="HEAD", status=200, reached=True, id="3mb-head"),
    Req("/a/x?bytes=100", version="HTTP/1.0", status=200, reached=True, id="http10-client"),
    r("/upper/x", id="uppercase-scheme"),
    r("/q/x?y=1", id="uri-with-args-and-client-args"),
    r("/q/x", id="uri-with-args"),
    r("/enc/x%20y", id="escaped-uri-part"),
    r("/enc/x y".replace(" ", "%20") + "?a", id="escaped-uri-part-args"),
    r("/nested/in/x", id="nested-location-uri"),
    r("/a/x?status=201", status=201, id="backend-status-201"),
    r("/a/x?status=404", status=404, id="backend-404-passed"),
    r("/a/x?status=500", status=500, id="backend-500-passed"),
    r("/a/x?status=204", status=204, id="backend-204"),
    r("/a/x?status=304", status=304, id="backend-304"),
    r("/a/x?chunked=1", id="backend-chunked"),
    r("/a/x?body=", id="backend-empty-body"),
    Req("/a/x?chunked=1", version="HTTP/1.0", status=200, reached=True, id="backend-chunked-to-http10-client"),
    Req("/a/x", method="HEAD", status=200, reached=True, id="head"),
    Req("/a/x", method="POST", body=b"hello", status=200, reached=True, id="post"),
    Req("/b/x", method="PUT", body=b"x" * 70000, status=200, reached=True, differs=("streamed-request-body",),
        id="put-70k"),
    Req("/a/x", method="POST", body=b"a=1", headers=(("Expect", "100-continue"),), status=200, reached=True,
        id="expect-100-continue"),
    r("/dead/x", status=502, reached=False, id="dead-upstream-502"),
    r("/byname/x", id="host-name-upstream"),
    Req("/a/x", method="POST", body=b"x" * (1024 * 1024), status=200, reached=True,
        differs=("streamed-request-body",), id="body-at-default-limit"),
    Req("/a/x", method="POST", body=b"x" * (1024 * 1024 + 1), status=413, reached=False,
        id="body-over-default-limit-413"),
))
def test_proxy_pass_forms(differ, req):
    """The upstream target of each proxy_pass form, and the answer passed back, are nginx's."""
    differ(FORMS).check(req)


HEADERS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        proxy_set_header X-Server-Level "1";
        proxy_set_header Connection "";
        location /inherit/ { proxy_pass http://@BACKEND@; }
        location /xff/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header Connection "";
        }
        location /host/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
        }
        location /httphost/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
        }
        location /hostport/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Host $host:$server_port;
            proxy_set_header Connection "";
        }
        location /vars/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Connection "";
            proxy_set_header X-A "$scheme|$request_method|$uri|$args|$is_args|$request_uri|$server_port";
            proxy_set_header X-B "$remote_addr|$server_name|$host|$proxy_host|$server_protocol|$document_uri";
            proxy_set_header X-C "$arg_a|$arg_missing|$http_user_agent|$http_x_dash_name|$cookie_c|$cookie_none";
            proxy_set_header X-D "$content_length|$content_type|$query_string|$server_addr|$proxy_port";
            proxy_set_header X-E "${uri}x|$1|literal";
        }
        location /remove/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Connection "";
            proxy_set_header User-Agent "";
            proxy_set_header Accept "";
        }
        location /override/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Connection "";
            proxy_set_header User-Agent "pyngx-test";
            proxy_set_header x-lower "v";
        }
        location /empty-var/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Connection "";
            proxy_set_header X-Maybe $http_x_maybe;
        }
    }
""")

HOP = (
    ("Connection", "keep-alive, X-Named"),
    ("X-Named", "1"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Upgrade", "foo"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authorization", "Basic eDp5"),
    ("Trailer", "X-T"),
)
CLIENT = (("User-Agent", "curl/8"), ("Accept", "*/*"), ("X-Forwarded-For", "10.0.0.1"), ("Cookie", "c=cv; d=dv"))


def h(target: str, headers: tuple[tuple[str, str], ...] = (), **kw: object) -> Req:
    kw.setdefault("status", 200)
    kw.setdefault("reached", True)
    return Req(target, headers=headers, id=kw.pop("id", target), **kw)  # type: ignore[arg-type]


HOP_BY_HOP = ("nginx drops only Connection, Keep-Alive, TE, Upgrade and Expect from the client's fields (its default "
              "proxy_set_header list) and passes Proxy-Connection, Proxy-Authorization, Trailer and fields named in "
              "Connection (X-Named here); pyngx drops all RFC 9110 hop-by-hop fields (match nginx, or list it in "
              "DIFFERENCES.md)")


@pytest.mark.parametrize("req", params(
    h("/inherit/x", id="default-host-is-proxy-host"),
    h("/inherit/x", CLIENT, id="client-fields-passed"),
    h("/xff/x", id="xff-without-prior"),
    h("/xff/x", (("X-Forwarded-For", "10.0.0.1"),), id="xff-appended"),
    h("/xff/x", (("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "10.0.0.2")), id="xff-two-fields"),
    h("/xff/x", (("X-Real-IP", "1.2.3.4"),), id="x-real-ip-replaced"),
    h("/host/x", id="host-var"),
    Req("/host/x", host="Example.COM:8080", status=200, reached=True, id="host-var-lowercase-no-port"),
    Req("/host/x", host=None, version="HTTP/1.0", status=200, reached=True, id="host-var-without-host"),
    Req("/httphost/x", host="Example.COM:8080", status=200, reached=True, id="http-host-as-sent"),
    Req("/hostport/x", host="example.com:8080", status=200, reached=True, id="host-and-server-port"),
    h("/vars/p/q?a=1&b=2", (("User-Agent", "ua"), ("X-Dash-Name", "dash"), ("Cookie", "c=1")), id="variables"),
    Req("/vars/p", method="POST", body=b"abc", headers=(("Content-Type", "text/x"),), status=200, reached=True,
        id="variables-post"),
    h("/vars/%70?a=%20", id="variables-escaped"),
    h("/remove/x", CLIENT, id="empty-value-removes-client-field"),
    h("/override/x", CLIENT + (("X-Lower", "client"),), id="set-header-replaces-client-field"),
    h("/empty-var/x", id="empty-variable-value-not-sent"),
    h("/empty-var/x", (("X-Maybe", "yes"),), id="variable-value-sent"),
    h("/inherit/x", (("X-Multi", "1"), ("X-Multi", "2")), id="repeated-client-field"),
    h("/inherit/x", (("Content-Type", "text/plain"),), id="content-type-without-body"),
    h("/inherit/x", (("X-Under_Score", "1"),), id="underscore-field-dropped"),
    h("/inherit/x", (("X-Empty", ""),), id="empty-client-field"),
    h("/inherit/x", (("Expect", "100-continue"),), id="expect-dropped"),
    h("/inherit/x", (("Connection", "close"),), id="client-connection-close"),
    h("/inherit/x", (("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Upgrade", "foo")), id="nginx-hop-by-hop"),
    xfail(h("/inherit/x", HOP, id="rfc-hop-by-hop"), HOP_BY_HOP),
    xfail(h("/xff/x", (("Proxy-Authorization", "Basic eDp5"),), id="proxy-authorization"), HOP_BY_HOP),
))
def test_upstream_request_headers(differ, req):
    """The header fields the backend receives are nginx's."""
    differ(HEADERS).check(req)


DEFAULTS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { proxy_pass http://@BACKEND@; }
        location /v10/ { proxy_pass http://@BACKEND@; proxy_http_version 1.0; }
    }
""", prelude=False)


@pytest.mark.parametrize("req", params(
    Req("/x", status=200, reached=True, differs=("upstream-http-version",), id="default-version-and-connection"),
    Req("/x", headers=CLIENT, status=200, reached=True, differs=("upstream-http-version",), id="default-with-fields"),
    Req("/v10/x", status=200, reached=True, id="http10-is-nginx-default"),
    Req("/v10/x", method="POST", body=b"abc", status=200, reached=True, id="http10-post"),
))
def test_default_upstream_protocol(differ, req):
    """Without proxy_http_version, only the documented HTTP version/Connection difference remains."""
    differ(DEFAULTS).check(req)


RESPONSES = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location / { proxy_pass http://@BACKEND@; }
    }
""")


@pytest.mark.parametrize("req", params(
    h("/x?set_X-Custom=1", id="custom-field-passed"),
    h("/x?set_Server=backend", id="server-hidden"),
    h("/x?set_X-Pad=1", id="x-pad-hidden"),
    h("/x?set_X-Accel-Buffering=no", id="x-accel-hidden"),
    h("/x?set_X-Accel-Expires=5", id="x-accel-expires-hidden"),
    h("/x?set_Set-Cookie=a=1", id="set-cookie-passed"),
    h("/x?set_Set-Cookie=a=1&set_Set-Cookie=b=2", id="two-set-cookies-passed"),
    h("/x?set_X-Dup=1&set_X-Dup=2", id="repeated-field-passed"),
    h("/x?set_Cache-Control=no-store", id="cache-control-passed"),
    h("/x?set_Content-Type=application/json", id="content-type-passed"),
    h("/x?set_Location=http://@BACKEND@/y&status=302", status=302, id="location-rewritten-by-default"),
    h("/x?set_Location=http://other.test/y&status=302", status=302, id="foreign-location-passed"),
    h("/x?set_Location=/relative&status=301", status=301, id="relative-location-passed"),
    h("/x?set_Keep-Alive=timeout=1", id="keep-alive-dropped"),
    xfail(h("/x?set_Trailer=X-T", id="trailer-field"), RESPONSE_HOP),
    xfail(h("/x?set_Upgrade=foo", id="upgrade-field"), RESPONSE_HOP),
    xfail(h("/x?set_Proxy-Authenticate=Basic", id="proxy-authenticate"), RESPONSE_HOP),
    h("/x?set_Link=%3C/a%3E;rel=preload", id="link-passed"),
    h("/x?set_Vary=Accept", id="vary-passed"),
    h("/x?set_WWW-Authenticate=Basic&status=401", status=401, id="401-passed"),
    h("/x?status=503&set_Retry-After=5", status=503, id="503-passed"),
    h("/x?status=418", status=418, id="unknown-status-passed"),
    h("/x?status=299", status=299, id="unregistered-2xx"),
))
def test_response_headers(differ, req):
    """The backend's response fields reach the client as nginx passes them."""
    differ(RESPONSES).check(req)


WEBSOCKET = conf(r"""
    map $http_upgrade $connection_upgrade { default upgrade; "" close; }
    server {
        listen 127.0.0.1:@PORT@;
        server_name localhost;
        location /ws/ {
            proxy_pass http://@BACKEND@;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
        location /ws-dead/ {
            proxy_pass http://@DEAD@;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
    }
""")

WS = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
      ("Sec-WebSocket-Version", "13"))


@pytest.mark.parametrize("req", params(
    Req("/ws/x?a=1", headers=WS, status=101, reached=True, differs=("websocket-relay",), id="handshake"),
    Req("/ws/x", headers=(*WS, ("Sec-WebSocket-Protocol", "chat, other")), status=101, reached=True,
        differs=("websocket-relay",), id="handshake-subprotocol"),
    Req("/ws/x", headers=(*WS, ("Origin", "http://example.com"), ("X-Extra", "1")), status=101, reached=True,
        differs=("websocket-relay",), id="handshake-fields-passed"),
    Req("/ws/x", status=200, reached=True, id="plain-get-through-upgrade-location"),
    Req("/ws-dead/x", headers=WS, status=502, reached=False, id="handshake-502"),
))
def test_websocket_handshake(differ, req):
    """A WebSocket handshake gets nginx's answer, and the backend sees nginx's upgrade request."""
    differ(WEBSOCKET).check(req)
