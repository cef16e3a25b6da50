"""The header rules of pyngx.proxy.headers as pure logic: plain objects, no I/O."""

from __future__ import annotations

import pytest

from pyngx.config.model import RewriteRule
from pyngx.config.regex import compile_regex
from pyngx.proxy.headers import RequestHeaderPlan, rewrite, rewrite_cookie
from pyngx.request import Request
from pyngx.variables import Template


def request(headers: list[tuple[bytes, bytes]] | None = None, args: str = "") -> Request:
    return Request("GET", "/p?" + args if args else "/p", "/p", args, headers or [], "http", "HTTP/1.1",
                   ("127.0.0.1", 5000), ("127.0.0.1", 8080))


def literal(pattern: str, replacement: str) -> RewriteRule:
    return RewriteRule(None, Template(pattern), Template(replacement))


def regex(pattern: str, replacement: str, caseless: bool = False) -> RewriteRule:
    rx = compile_regex(pattern, caseless)
    return RewriteRule(rx, None, Template(replacement, frozenset(rx.groupindex)))


class TestRewrite:
    @pytest.mark.parametrize("rules,value,prefix,expected", [
        ((literal("http://a/", "/b/"),), "http://a/x", 0, "/b/x"),
        ((literal("http://a/", "/b/"),), "HTTP://a/x", 0, None),  # literal rules are case-sensitive
        ((literal("http://z/", "/z/"), literal("http://a/", "/b/")), "http://a/x", 0, "/b/x"),
        ((regex(r"^http://([^/]+)/(.*)$", "https://$1/$2"),), "http://h/p", 0, "https://h/p"),
        ((regex(r"^HTTP://(?<name>[^/]+)", "/$name", caseless=True),), "http://h/p", 0, "/h"),  # whole value replaced
        ((literal("http://a/", "/b/"),), "5; url=http://a/r", 7, "5; url=/b/r"),
    ])
    def test_first_matching_rule(self, rules, value, prefix, expected):
        """The first rule that matches value[prefix:] rewrites it; literal rules replace their prefix."""
        assert rewrite(rules, value, prefix, request()) == expected


class TestRewriteCookie:
    @pytest.mark.parametrize("value,expected", [
        ("a=1; Domain=.Old.Test; Path=/app/x", "a=1; Domain=.new.test; Path=/x"),
        ("a=1;domain=old.test;secure", "a=1; domain=new.test; secure"),
        ("a=1; Domain=sub.old.test", None),  # a literal domain must equal the whole domain
        ("novalue; Path=/app/x", None),  # nginx leaves a cookie without "=" alone
        ("a=1;  Path = /app/y ", "a=1; Path=/y"),
        ("a=1; Max-Age=5", None),
    ])
    def test_domain_and_path(self, value, expected):
        """domain= and path= are rewritten and the field is joined again with "; "; else it is left as sent."""
        domains = (literal("old.test", "new.test"),)
        paths = (literal("/app/", "/"),)
        assert rewrite_cookie(value, domains, paths, request()) == expected


class TestRequestHeaderPlan:
    def test_pass_request_headers_off_and_lengths(self):
        """Without the client's fields only the set ones go up, with the body's Content-Length;
        proxy_set_header Content-Length replaces the computed one."""
        req = request([(b"X-Client", b"1"), (b"Content-Length", b"3")])
        plan = RequestHeaderPlan((("X-Set", Template("s")),), "1.1", pass_request_headers=False)
        assert plan.build(req) == [("X-Set", "s"), ("Content-Length", "3")]  # Host: $proxy_host, empty here
        assert plan.build(req, "7")[-1] == ("Content-Length", "7")
        assert ("Content-Length", "3") not in plan.build(req, None)
        own = RequestHeaderPlan((("Content-Length", Template("")),), "1.1")
        assert [n for n, _ in own.build(req)] == ["X-Client"]
