"""Tests for pyngx.routing (location and server selection) and URI normalization.

The expected location for every (config, URI) pair, the server for every
Host, and every normalized URI are what nginx 1.22 chooses for the same
config and request (checked against a running nginx).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyngx.config.build import build
from pyngx.config.model import Config, ServerConf
from pyngx.config.parse import Parsed, parse_string
from pyngx.request import BadURI, normalize_uri
from pyngx.routing import AGAIN, DECLINED, OK, REDIRECT, RouteTable, parse_host

UPSTREAM = "proxy_pass http://127.0.0.1:9"


def load_string(text: str) -> Config:
    """Build a Config from config text, without a file."""
    return build(Parsed(parse_string(text, "test.conf"), ()), Path("test.conf"))


def describe(result: tuple[str, object, object]) -> str:
    """A location result as "MODIFIER NAME", "301 MODIFIER NAME", or "(server)"."""
    rc, loc, _ = result
    if loc is None:
        return "(server)"
    text = f"{loc.modifier} {loc.name}".strip()  # type: ignore[attr-defined]
    return f"301 {text}" if rc == REDIRECT else text


# Location sets: the locations of one server each (in nginx syntax).
LOCATIONS: dict[str, str] = {
    # The example from nginx's documentation of "location".
    "docs": r"""
        location = / { }
        location / { }
        location /documents/ { }
        location ^~ /images/ { }
        location ~* \.(gif|jpg|jpeg)$ { }
    """,
    "exact": r"""
        location = /exact { }
        location /exact { }
        location ~ ^/exact { }
    """,
    "noregex": r"""
        location ^~ /a/ { }
        location /a/b/ { }
        location ~ \.txt$ { }
    """,
    "regex-order": r"""
        location ~ /x { }
        location ~ /x/y { }
        location ~* /X/Y/Z { }
    """,
    "nested": r"""
        location /a/ {
            location /a/b/ { }
            location ~ \.php$ { }
        }
        location ~ \.(php)$ { }
        location ~ /a/c { }
    """,
    "nested-noregex": r"""
        location /n/ {
            location ^~ /n/static/ { }
            location ~ \.css$ { }
        }
        location ~ \.(css)$ { }
    """,
    "outer-noregex": r"""
        location ^~ /p/ {
            location /p/q/ { }
            location ~ \.js$ { }
        }
        location ~ \.(js)$ { }
    """,
    "regex-nested": r"""
        location ~ /r {
            location /r/s/ { }
            location ~ \.png$ { }
        }
        location ~ ^/t/ {
            location ~ \.md$ { }
        }
    """,
    "redirect": rf"""
        location /api/ {{ {UPSTREAM}; }}
        location / {{ }}
        location = /exact/ {{ {UPSTREAM}; }}
        location /noproxy/ {{ }}
        location ~ ^/api$ {{ }}
        location /b/ {{ {UPSTREAM}; }}
        location = /b {{ }}
        location /c/ {{ {UPSTREAM}; }}
        location /c {{ }}
    """,
    "redirect-nested": rf"""
        location /d {{
            location /d/ {{ {UPSTREAM}; }}
        }}
        location /e/ {{
            location /e/f/ {{ {UPSTREAM}; }}
        }}
    """,
    "case": r"""
        location /Case/ { }
        location ~* ^/case/(?<rest>.*)$ { }
    """,
}

# (location set, normalized URI, the location nginx chooses).
LOCATION_CASES = [
    # exact match wins over everything
    ("docs", "/", "= /"),
    ("docs", "/index.html", "/"),
    ("docs", "/documents/document.html", "/documents/"),
    ("docs", "/images/1.gif", "^~ /images/"),
    ("docs", "/documents/1.jpg", r"~* \.(gif|jpg|jpeg)$"),
    ("docs", "/documents/1.JPG", r"~* \.(gif|jpg|jpeg)$"),
    ("docs", "/x.Jpeg", r"~* \.(gif|jpg|jpeg)$"),
    ("docs", "/documents", "/"),
    ("docs", "/images", "/"),
    ("docs", "/images/", "^~ /images/"),
    ("exact", "/exact", "= /exact"),
    ("exact", "/exact/x", "~ ^/exact"),
    ("exact", "/exactly", "~ ^/exact"),
    ("exact", "/other", "(server)"),
    ("exact", "/Exact", "(server)"),
    # the longest prefix decides; ^~ on it (only) skips regexes
    ("noregex", "/a/x.txt", "^~ /a/"),
    ("noregex", "/a/b/x.txt", r"~ \.txt$"),
    ("noregex", "/a/b/x", "/a/b/"),
    ("noregex", "/a/b", "^~ /a/"),
    ("noregex", "/b.txt", r"~ \.txt$"),
    # regexes in file order, first match wins, unanchored search
    ("regex-order", "/x/y/z", "~ /x"),
    ("regex-order", "/q/x/y", "~ /x"),
    ("regex-order", "/X/y", "(server)"),
    ("regex-order", "/X/Y/Z", "~* /X/Y/Z"),
    ("regex-order", "/x/Y/z", "~ /x"),
    # nested locations
    ("nested", "/a/x", "/a/"),
    ("nested", "/a/b/x", "/a/b/"),
    ("nested", "/a/x.php", r"~ \.php$"),
    ("nested", "/a/b/x.php", r"~ \.php$"),
    ("nested", "/x.php", r"~ \.(php)$"),
    ("nested", "/a/c/x", "~ /a/c"),
    # a nested ^~ skips the nested regexes only: the outer level's still run
    ("nested-noregex", "/n/static/x", "^~ /n/static/"),
    ("nested-noregex", "/n/static/x.css", r"~ \.(css)$"),
    ("nested-noregex", "/n/x.css", r"~ \.css$"),
    ("nested-noregex", "/x.css", r"~ \.(css)$"),
    # an outer ^~ skips the outer regexes, not the nested ones
    ("outer-noregex", "/p/q/x.js", r"~ \.js$"),
    ("outer-noregex", "/p/x.js", r"~ \.js$"),
    ("outer-noregex", "/p/q/x", "/p/q/"),
    ("outer-noregex", "/x.js", r"~ \.(js)$"),
    # after a regex matches, its nested regexes are searched; prefix
    # locations nested in a regex are never matched (nginx builds no tree)
    ("regex-nested", "/r/a", "~ /r"),
    ("regex-nested", "/r/a.png", r"~ \.png$"),
    ("regex-nested", "/r/s/a", "~ /r"),
    ("regex-nested", "/r/s/a.png", r"~ \.png$"),
    ("regex-nested", "/x/r/a", "~ /r"),
    ("regex-nested", "/t/a.md", r"~ \.md$"),
    ("regex-nested", "/t/a", "~ ^/t/"),
    ("regex-nested", "/a.md", "(server)"),
    # auto-redirect: "uri/" with proxy_pass answers "uri" with a 301
    ("redirect", "/api", "301 /api/"),
    ("redirect", "/api/", "/api/"),
    ("redirect", "/api/x", "/api/"),
    ("redirect", "/exact", "301 = /exact/"),
    ("redirect", "/exact/", "= /exact/"),
    ("redirect", "/noproxy", "/"),
    ("redirect", "/apix", "/"),
    ("redirect", "/b", "= /b"),
    ("redirect", "/c", "/c"),
    ("redirect", "/cc", "/c"),
    ("redirect-nested", "/d", "301 /d/"),
    ("redirect-nested", "/d/x", "/d/"),
    ("redirect-nested", "/dx", "/d"),
    ("redirect-nested", "/e/f", "301 /e/f/"),
    ("redirect-nested", "/e/g", "/e/"),
    # prefixes are case-sensitive, ~* is not
    ("case", "/Case/x", "~* ^/case/(?<rest>.*)$"),
    ("case", "/CASE/x", "~* ^/case/(?<rest>.*)$"),
    ("case", "/Case", "(server)"),
]


def server_config(locations: str) -> Config:
    """A config with one server holding ``locations``."""
    return load_string(f"http {{ server {{ listen 127.0.0.1:8080; {locations} }} }}")


class TestLocationMatching:
    @pytest.mark.parametrize(
        ("name", "uri", "expected"), LOCATION_CASES, ids=[f"{n}:{u}" for n, u, _ in LOCATION_CASES]
    )
    def test_nginx_chooses(self, name: str, uri: str, expected: str) -> None:
        """The location for the URI is the one nginx chooses."""
        config = server_config(LOCATIONS[name])
        assert config.http is not None
        srv = config.http.servers[0]
        assert describe(RouteTable(config).location(srv, uri)) == expected

    def test_result_codes(self) -> None:
        """OK for exact and regex, AGAIN for a prefix, DECLINED for nothing, REDIRECT for auto-redirect."""
        config = server_config(LOCATIONS["exact"] + LOCATIONS["redirect"].replace("location / { }", ""))
        assert config.http is not None
        routes, srv = RouteTable(config), config.http.servers[0]
        assert [routes.location(srv, u)[0] for u in ("/exact", "/exact/", "/api/x", "/zzz", "/api")] == [
            OK, OK, AGAIN, DECLINED, REDIRECT
        ]

    def test_regex_match_carries_captures(self) -> None:
        """A regex location returns its match, with named captures."""
        config = server_config(LOCATIONS["case"])
        assert config.http is not None
        rc, loc, match = RouteTable(config).location(config.http.servers[0], "/CASE/rest/of")
        assert loc is not None and loc.modifier == "~*"
        assert match is not None and match.group("rest") == "rest/of" and match.group(1) == "rest/of"

    def test_static_locations_inside_a_regex_are_never_matched(self) -> None:
        """Exact and prefix locations nested in a regex location never match, as in nginx."""
        config = server_config(r"location ~ ^/(r)/ { location ~ (x)$ { } } location ~ /r { location = /r { } }")
        assert config.http is not None
        routes, srv = RouteTable(config), config.http.servers[0]
        assert describe(routes.location(srv, "/r")) == "~ /r"
        rc, loc, match = routes.location(srv, "/r/s/x")
        assert describe((rc, loc, match)) == "~ (x)$"
        assert match is not None and match.group(1) == "x"
        rc, loc, match = routes.location(srv, "/r/s/")
        assert describe((rc, loc, match)) == "~ ^/(r)/"
        assert match is not None and match.group(1) == "r"

    def test_named_locations_are_never_matched(self) -> None:
        """@name locations are not searched."""
        config = server_config("location @x { } location ~ x { }")
        assert config.http is not None
        assert describe(RouteTable(config).location(config.http.servers[0], "/@x")) == "~ x"


# Servers on one address, in file order; each returns its own name.
SERVERS = r"""
http {
    server { listen 127.0.0.1:8080; server_name first; }
    server { listen 127.0.0.1:8080; server_name "" nohost; }
    server { listen 127.0.0.1:8080; server_name example.com; }
    server { listen 127.0.0.1:8080; server_name *.example.com; }
    server { listen 127.0.0.1:8080; server_name *.a.example.com; }
    server { listen 127.0.0.1:8080; server_name example.*; }
    server { listen 127.0.0.1:8080; server_name www.example.*; }
    server { listen 127.0.0.1:8080; server_name .dot.org; }
    server { listen 127.0.0.1:8080; server_name ~^(?<sub>[a-z]+)\.re\.net$; }
    server { listen 127.0.0.1:8080; server_name ~^WWW\.; }
    server { listen 127.0.0.1:8081; server_name other; }
    server { listen 127.0.0.1:8081; server_name default; listen 127.0.0.1:8082 default_server; }
    server { listen 127.0.0.1:8082; server_name later; }
}
"""


class TestServerSelection:
    @pytest.fixture(scope="class")
    @classmethod
    def routes(cls) -> tuple[Config, RouteTable]:
        """The server-selection config and its route table."""
        config = load_string(SERVERS)
        return config, RouteTable(config)

    def pick(self, routes: tuple[Config, RouteTable], host: str | None, port: int = 8080) -> str:
        """The first server_name of the server chosen for ``host`` on 127.0.0.1:port."""
        _, table = routes
        group = table.group(("127.0.0.1", port))
        assert group is not None
        parsed = parse_host(host) if host is not None else ""
        assert parsed is not None
        srv, _ = group.find(parsed)
        return srv.server_names[0] or srv.server_names[1]

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("example.com", "example.com"),
            ("EXAMPLE.com:8080", "example.com"),
            ("example.com.", "example.com"),
            ("x.example.com", "*.example.com"),
            ("x.y.example.com", "*.example.com"),
            ("x.a.example.com", "*.a.example.com"),
            (".example.com", "*.example.com"),
            ("example.org", "example.*"),
            ("example.co.uk", "example.*"),
            ("www.example.org", "www.example.*"),
            ("example", "first"),
            ("dot.org", ".dot.org"),
            ("x.dot.org", ".dot.org"),
            ("abc.re.net", r"~^(?<sub>[a-z]+)\.re\.net$"),
            ("ABC.re.net", r"~^(?<sub>[a-z]+)\.re\.net$"),
            ("www.zzz", r"~^WWW\."),
            ("unknown", "first"),
            (None, "nohost"),
            ("[::1]:8080", "first"),
        ],
    )
    def test_name_order(self, routes: tuple[Config, RouteTable], host: str | None, expected: str) -> None:
        """Exact, then longest *.wildcard, then longest wildcard.*, then regexes, then the default."""
        assert self.pick(routes, host) == expected

    def test_regex_captures(self, routes: tuple[Config, RouteTable]) -> None:
        """A regex server name returns its match for $1 and named captures."""
        _, table = routes
        group = table.group(("127.0.0.1", 8080))
        assert group is not None
        _, match = group.find("abc.re.net")
        assert match is not None and match.group("sub") == "abc"

    def test_first_server_is_the_default(self, routes: tuple[Config, RouteTable]) -> None:
        """Without default_server, the first server on the address takes unknown hosts."""
        assert self.pick(routes, "nope", 8081) == "other"

    def test_default_server_wins_over_first(self, routes: tuple[Config, RouteTable]) -> None:
        """default_server on the address takes unknown hosts even when it is not first."""
        assert self.pick(routes, "nope", 8082) == "default"
        assert self.pick(routes, "later", 8082) == "later"

    def test_unknown_address(self, routes: tuple[Config, RouteTable]) -> None:
        """An address nobody listens on has no server group."""
        assert routes[1].group(("127.0.0.1", 9999)) is None

    def test_wildcard_listen_serves_any_local_address(self) -> None:
        """A "listen 8080" server group answers for any local IPv4 address."""
        table = RouteTable(load_string("http { server { listen 8080; server_name w; } }"))
        group = table.group(("10.1.2.3", 8080))
        assert group is not None and group.default.server_names == ("w",)

    @pytest.mark.parametrize(
        ("value", "host"),
        [
            ("example.com", "example.com"),
            ("EXAMPLE.COM:8080", "example.com"),
            ("example.com.", "example.com"),
            ("example.com:abc", "example.com"),
            ("a:b:c", "a"),
            ("[::1]:80", "[::1]"),
            ("[::1", "[::1"),
            ("[::1]x", "[::1]"),
            (".example.com", ".example.com"),
            ("a\\b", "a\\b"),
            ("CAF\u00c9", "caf\u00c9"),
        ],
    )
    def test_parse_host_normalizes(self, value: str, host: str) -> None:
        """Host loses its port and one trailing dot; ASCII letters are lower-cased."""
        assert parse_host(value) == host

    @pytest.mark.parametrize(
        "value", ["", ":80", ".", "example.com..", "ex..ample", "a b", "a/b", "a\tb", "x\x7f", "a\x00b"]
    )
    def test_parse_host_rejects(self, value: str) -> None:
        """Empty hosts, "..", "/", spaces and control characters are invalid (400)."""
        assert parse_host(value) is None


class TestNormalize:
    @pytest.mark.parametrize(
        ("raw", "uri"),
        [
            (b"/", "/"),
            (b"/admin", "/admin"),
            (b"/%61dmin", "/admin"),
            (b"//admin", "/admin"),
            (b"/a//b///c", "/a/b/c"),
            (b"/x/../admin", "/admin"),
            (b"/admin/.", "/admin/"),
            (b"/a/./b", "/a/b"),
            (b"/./", "/"),
            (b"/%2e", "/"),
            (b"/a/b/..", "/a/"),
            (b"/a/%2e%2e/", "/"),
            (b"/a/.%2E/b", "/b"),
            (b"/a//../b", "/b"),
            (b"/a%2Fb", "/a/b"),
            (b"/a%2F..%2Fb", "/b"),
            (b"/a%3Fb", "/a?b"),
            (b"/a%25b", "/a%b"),
            (b"/a%23b", "/a#b"),
            (b"/a%20b", "/a b"),
            (b"/a/.b", "/a/.b"),
            (b"/a/..b", "/a/..b"),
            (b"/a/...", "/a/..."),
            (b"/%C3%A9", "/\u00e9"),
        ],
    )
    def test_normalizes_as_nginx(self, raw: bytes, uri: str) -> None:
        """Escapes are decoded, slashes merged, "." and ".." resolved, as nginx does."""
        assert normalize_uri(raw) == uri

    @pytest.mark.parametrize(
        "raw", [b"/..", b"/../x", b"/.%2e", b"/a/../../b", b"/%zz", b"/%4", b"/%", b"/a%g0", b"/a%00b", b"x"]
    )
    def test_bad_uri(self, raw: bytes) -> None:
        """Going above the root, a bad escape or %00 is a BadURI (400)."""
        with pytest.raises(BadURI):
            normalize_uri(raw)
