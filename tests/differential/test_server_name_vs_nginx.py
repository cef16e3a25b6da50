"""Server selection (listen + server_name + Host) against the real nginx."""

from __future__ import annotations

import pytest

from tests.differential.harness import H11_400, Req, conf, params, xfail

NAMES = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name first.test;
        location / { return 200 "first host=$host server_name=$server_name\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name example.com www.example.com;
        location / { return 200 "exact host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name *.example.com;
        location / { return 200 "head-wildcard host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name *.deep.example.com;
        location / { return 200 "longer head-wildcard\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name example.* www.example.*;
        location / { return 200 "tail-wildcard host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name .dot.test;
        location / { return 200 "dot-wildcard host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^(?<sub>[a-z]+)\.regex\.test$;
        location / { return 200 "named-regex host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^(\d+)\.num\.test$;
        location / { return 200 "numbered-regex $1\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~example\.com$ ~^example;
        location / { return 200 "regex-loses-to-wildcards\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^(www\.)?(.+)\.capture\.test$;
        location / { return 200 "numbered captures 1=$1 2=$2\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name "";
        location / { return 200 "empty-name host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name _ underscore_name.test;
        location / { return 200 "underscore host=$host\n"; }
    }
""")


ABSOLUTE = ("the host of an absolute-form target selects the server and sets $host in nginx (RFC 9112 3.2.2: "
            "the Host field is then ignored); pyngx uses the Host field")

def host(h: str | None, **kw: object) -> Req:
    return Req("/", host=h, status=kw.pop("status", 200), id=kw.pop("id", f"host={h!r}"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("req", params(
    host("example.com"),
    host("www.example.com"),
    host("EXAMPLE.COM", id="uppercase-host"),
    host("Example.Com:8080", id="mixed-case-with-port"),
    host("example.com.", id="trailing-dot"),
    host("example.com:8080"),
    host("example.com:", id="empty-port"),
    host("example.com:notaport", id="non-numeric-port"),
    host("foo.example.com"),
    host("a.b.example.com"),
    host("x.deep.example.com", id="longest-head-wildcard"),
    host("deep.example.com", id="head-wildcard-parent"),
    host("example.org"),
    host("www.example.net"),
    host("example", id="tail-wildcard-needs-more"),
    host("dot.test", id="dot-wildcard-bare"),
    host("a.dot.test", id="dot-wildcard-sub"),
    host("abc.regex.test"),
    host("ABC.Regex.Test", id="regex-against-lowercased"),
    host("123.num.test"),
    host("www.shop.capture.test", id="numbered-captures"),
    host("shop.capture.test", id="numbered-captures-empty-group"),
    host("12a.num.test", id="regex-no-match"),
    host("unknown.test", id="unknown-goes-to-first"),
    host("127.0.0.1", id="ip-host"),
    host("_", id="underscore-literal"),
    host("underscore_name.test", id="underscore-in-name"),
    host("[::1]", id="ipv6-literal"),
    host("[::1]:8080", id="ipv6-literal-port"),
    host("xn--bcher-kva.example.com", id="punycode"),
    Req("/", host=None, version="HTTP/1.0", status=200, id="no-host-http10"),
    xfail(Req("/", host=None, status=400, id="no-host-http11"), H11_400),
    host("", status=400, id="empty-host"),
    host("a..b", status=400, id="double-dot"),
    host("a/b", status=400, id="slash"),
    host("a\\b", id="backslash"),
    host(".", status=400, id="only-dot"),
    host(":80", status=400, id="only-port"),
    host("exa mple.com", status=400, id="space"),
    xfail(Req("/", host="example.com", headers=(("Host", "foo.example.com"),), status=400, id="duplicate-host"),
          H11_400),
    xfail(Req("http://foo.example.com/", host="example.com", status=200, id="absolute-form-wins-over-host"),
          ABSOLUTE),
    xfail(Req("http://example.org:9/x", host=None, status=400, id="absolute-form-without-host-http11"), H11_400),
    xfail(Req("http://example.org:9/x", host=None, version="HTTP/1.0", status=200,
              id="absolute-form-without-host-http10"), ABSOLUTE),
    xfail(Req("HTTP://Example.COM/", host="unknown.test", status=200, id="absolute-form-uppercase"), ABSOLUTE),
    Req("http://example.com/", host="example.com", status=200, id="absolute-form-same-host"),
))
def test_server_name(differ, req):
    """The server chosen for a Host, and $host/$server_name/captures, are nginx's."""
    differ(NAMES).check(req)


NAMED_CAPTURE = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        server_name ~^(www\.)?(?<dom>[a-z]+)\.capture\.test$;
        location / { return 200 "dom=$dom\n"; }
    }
""")


@pytest.mark.parametrize("req", params(
    Req("/", host="www.shop.capture.test", status=200, id="named-capture-variable"),
))
def test_regex_server_name_named_capture(differ, req):
    """A named capture of a regex server_name is a variable in that server."""
    differ(NAMED_CAPTURE).check(req)


DEFAULTS = conf(r"""
    server {
        listen 127.0.0.1:@PORT@;
        listen 127.0.0.1:@PORT2@;
        server_name a.test;
        location / { return 200 "a host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT2@ default_server;
        server_name b.test;
        location / { return 200 "b host=$host\n"; }
    }
    server {
        listen 127.0.0.1:@PORT@;
        server_name c.test;
        location / { return 200 "c host=$host\n"; }
    }
""")


@pytest.mark.parametrize("req", params(
    Req("/", host="a.test", status=200, id="name-a-port1"),
    Req("/", host="c.test", status=200, id="name-c-port1"),
    Req("/", host="other.test", status=200, id="first-is-default-port1"),
    Req("/", host=None, version="HTTP/1.0", status=200, id="no-host-port1"),
))
def test_default_server_port1(differ, req):
    """Without default_server, the first server of an address takes unknown names."""
    differ(DEFAULTS).check(req)


@pytest.mark.parametrize("req", params(
    Req("/", host="other.test", port=2, status=200, id="default-server-port2"),
    Req("/", host="a.test", port=2, status=200, id="name-a-port2"),
    Req("/", host="b.test", port=2, status=200, id="name-b-port2"),
    Req("/", host="c.test", port=2, status=200, id="name-c-not-on-port2"),
    Req("/", host=None, version="HTTP/1.0", port=2, status=200, id="no-host-port2"),
))
def test_default_server_port2(differ, req):
    """default_server wins over the first server of its address, for unknown names only."""
    differ(DEFAULTS).check(req)
