"""Tests for pyngx.config.build: nginx's checks, merge and defaults.

Every message and line below is what ``nginx -t`` (1.22) prints for the
same config, except "not supported by pyngx" (pyngx's own) and the
include nesting limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyngx.config import load
from pyngx.config.model import Config, LocationConf
from pyngx.errors import ConfigError

CASES = Path(__file__).resolve().parent / "cases"


def load_text(tmp_path: Path, text: str) -> Config:
    """Write ``text`` to tmp_path/pyngx.conf and load it."""
    path = tmp_path / "pyngx.conf"
    path.write_text(text)
    return load(str(path))


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError that loading ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value


def server_block(body: str, listen: str = "127.0.0.1:8080") -> str:
    """An http block with one server holding ``body``."""
    return f"http {{\n    server {{\n        listen {listen};\n{body}\n    }}\n}}\n"


# (config text, nginx's message, line). "{dir}" stands for the config's directory.
ERRORS = [
    pytest.param("http {\n    server {\n        proxy_pas http://x;\n    }\n}\n",
                 'unknown directive "proxy_pas"', 3, id="unknown-directive"),
    pytest.param("http {\n    proxy_pass http://x;\n}\n", '"proxy_pass" directive is not allowed here', 2,
                 id="not-allowed-here"),
    pytest.param("server {\n}\n", '"server" directive is not allowed here', 1, id="server-outside-http"),
    pytest.param("http {\n    listen 80;\n}\n", '"listen" directive is not allowed here', 2, id="listen-in-http"),
    pytest.param("http {\n    proxy_pass\n        http://x;\n}\n", '"proxy_pass" directive is not allowed here', 3,
                 id="multi-line-directive-reports-the-semicolon-line"),
    pytest.param("http {\n  server {\n    listen;\n  }\n}\n", 'invalid number of arguments in "listen" directive', 3,
                 id="too-few-arguments"),
    pytest.param("http {\n  proxy_read_timeout 1s 2s;\n}\n",
                 'invalid number of arguments in "proxy_read_timeout" directive', 2, id="too-many-arguments"),
    pytest.param("http x {\n}\n", 'invalid number of arguments in "http" directive', 1, id="block-arguments"),
    pytest.param("http {\n  proxy_read_timeout 1s;\n  proxy_read_timeout 2s;\n}\n",
                 '"proxy_read_timeout" directive is duplicate', 3, id="duplicate-directive"),
    pytest.param("http {\n}\nhttp {\n}\n", '"http" directive is duplicate', 3, id="duplicate-block"),
    pytest.param("http {\n}\n}\n", 'unexpected "}"', 3, id="unexpected-close-brace"),
    pytest.param("http {\n  server {\n    listen 80 }\n}\n", 'unexpected "}"', 3, id="close-brace-after-words"),
    pytest.param("http {\n  server {\n    listen 80", 'unexpected end of file, expecting ";" or "}"', 3,
                 id="eof-in-directive"),
    pytest.param("http {\n  server {\n  }\n", 'unexpected end of file, expecting "}"', 4, id="eof-in-block"),
    pytest.param("http {\n  server;\n}\n", 'directive "server" has no opening "{"', 2, id="no-opening-brace"),
    pytest.param(server_block("        listen 80 { }"), 'directive "listen" is not terminated by ";"', 4,
                 id="not-terminated"),
    pytest.param(server_block('        return 200 "a"b;'), 'unexpected "b"', 4, id="quote-then-word"),
    pytest.param("http {\n  server {\n    listen 80800;\n  }\n}\n",
                 'invalid port in "80800" of the "listen" directive', 3, id="invalid-listen-port"),
    pytest.param("http {\n  server {\n    listen 127.0.0.1:abc;\n  }\n}\n",
                 'invalid port in "127.0.0.1:abc" of the "listen" directive', 3, id="invalid-listen-port-text"),
    pytest.param(server_block("        location / {\n            proxy_pass ftp://x;\n        }"),
                 "invalid URL prefix", 5, id="invalid-url-prefix"),
    pytest.param(server_block("        return abc;"), 'invalid return code "abc"', 4, id="invalid-return-code"),
    pytest.param(server_block("        return 1000;"), 'invalid return code "1000"', 4, id="return-code-too-big"),
    pytest.param(server_block("        location ~ ^/(a {\n        }"),
                 'pcre2_compile() failed: missing closing parenthesis in "^/(a"', 4, id="pcre2-location"),
    pytest.param(server_block("        server_name ok ~^(x;"),
                 'pcre2_compile() failed: missing closing parenthesis in "^(x"', 4, id="pcre2-server-name"),
    pytest.param(server_block("        location xx /a {\n        }"), 'invalid location modifier "xx"', 4,
                 id="invalid-location-modifier"),
    pytest.param("http {\n  server {\n    listen 8080 default_server;\n  }\n  server {\n"
                 "    server_name b;\n    listen 8080 default_server;\n  }\n}\n",
                 "a duplicate default server for 0.0.0.0:8080", 7, id="duplicate-default-server"),
    pytest.param("http {\n  server {\n    listen 8080;\n    listen *:8080;\n  }\n}\n",
                 "a duplicate listen 0.0.0.0:8080", 4, id="duplicate-listen"),
    pytest.param("http {\n  server {\n    listen [::]:8080 backlog=5;\n  }\n  server {\n"
                 "    listen [::]:8080 reuseport;\n  }\n}\n",
                 "duplicate listen options for [::]:8080", 6, id="duplicate-listen-options"),
    pytest.param(server_block("        listen 8081 backlog=0;"), 'invalid backlog "backlog=0"', 4, id="invalid-backlog"),
    pytest.param("http {\n    include missing.conf;\n}\n",
                 'open() "{dir}/missing.conf" failed (2: No such file or directory)', 2, id="missing-include"),
    pytest.param(server_block("        proxy_buffer_size 4k;"), '"proxy_buffer_size" directive is not supported by pyngx',
                 4, id="not-supported"),
    pytest.param("http {\n  proxy_read_timeout 30m1h;\n}\n", '"proxy_read_timeout" directive invalid value', 2,
                 id="invalid-time"),
    pytest.param("\ndaemon yes;\n", 'invalid value "yes" in "daemon" directive, it must be "on" or "off"', 2,
                 id="invalid-flag"),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "message", "line"), ERRORS)
    def test_message_file_and_line(self, tmp_path: Path, text: str, message: str, line: int) -> None:
        """Each fault gets nginx's message and the file and line nginx names."""
        err = config_error(tmp_path, text)
        assert err.message == message.replace("{dir}", str(tmp_path))
        assert (err.file, err.line) == (str(tmp_path / "pyngx.conf"), line)

    def test_str_is_nginx_format(self, tmp_path: Path) -> None:
        """str() reads "MESSAGE in FILE:LINE"."""
        err = config_error(tmp_path, "http {\n  bogus;\n}\n")
        assert str(err) == f'unknown directive "bogus" in {tmp_path / "pyngx.conf"}:2'

    def test_unknown_directive_hint(self, tmp_path: Path) -> None:
        """An unknown directive close to a known one gets a "did you mean" hint."""
        err = config_error(tmp_path, server_block("        location / { proxy_pas http://x; }"))
        assert err.hint == 'did you mean "proxy_pass"?'
        assert config_error(tmp_path, "zzzzzz;").hint is None

    def test_error_in_included_file_names_that_file(self, tmp_path: Path) -> None:
        """A fault inside an included file is reported at that file's line."""
        (tmp_path / "extra.conf").write_text("\nproxy_pass http://x;\n")
        err = config_error(tmp_path, "http {\n    include extra.conf;\n}\n")
        assert (err.message, err.file, err.line) == (
            '"proxy_pass" directive is not allowed here',
            str(tmp_path / "extra.conf"),
            2,
        )


class TestLocationChecks:
    @pytest.mark.parametrize(
        ("locations", "message"),
        [
            pytest.param("location /a/ {\n location /b/ { } }", 'location "/b/" is outside location "/a/"',
                         id="nested-outside-parent"),
            pytest.param("location ^~ /a/ {\n location = /b { } }", 'location "/b" is outside location "/a/"',
                         id="nested-exact-outside-parent"),
            pytest.param("location ~ ^/a {\n location /a/b { } }", 'location "/a/b" is outside location "^/a"',
                         id="prefix-inside-regex"),
            pytest.param("location = /a {\n location /a/b { } }",
                         'location "/a/b" cannot be inside the exact location "/a"', id="inside-exact"),
            pytest.param("location @x {\n location /a { } }",
                         'location "/a" cannot be inside the named location "@x"', id="inside-named"),
            pytest.param("location /a {\n location @x { } }", 'named location "@x" can be on the server level only',
                         id="named-not-at-server-level"),
            pytest.param("location /a { }\nlocation /a { }", 'duplicate location "/a"', id="duplicate-prefix"),
            pytest.param("location /a { }\nlocation ^~ /a { }", 'duplicate location "/a"', id="duplicate-prefix-noregex"),
            pytest.param("location = /a { }\nlocation =/a { }", 'duplicate location "/a"', id="duplicate-exact"),
            pytest.param("location /p/ {\n location /p/a { } location /p/a { } }", 'duplicate location "/p/a"',
                         id="duplicate-nested"),
            pytest.param("location ~ ^/a/ {\n proxy_pass http://127.0.0.1:9/x/; }",
                         '"proxy_pass" cannot have URI part in location given by regular expression, or inside '
                         'named location, or inside "if" statement, or inside "limit_except" block',
                         id="proxy-pass-uri-in-regex"),
            pytest.param("location ~* \\.php$ {\n proxy_pass http://127.0.0.1:9/; }",
                         '"proxy_pass" cannot have URI part in location given by regular expression, or inside '
                         'named location, or inside "if" statement, or inside "limit_except" block',
                         id="proxy-pass-uri-in-caseless-regex"),
            pytest.param("location @up {\n proxy_pass http://127.0.0.1:9/; }",
                         '"proxy_pass" cannot have URI part in location given by regular expression, or inside '
                         'named location, or inside "if" statement, or inside "limit_except" block',
                         id="proxy-pass-uri-in-named"),
        ],
    )
    def test_errors(self, tmp_path: Path, locations: str, message: str) -> None:
        """Location placement faults get nginx's messages at the offending line."""
        err = config_error(tmp_path, server_block(locations))
        assert err.message == message
        assert err.line == 5

    @pytest.mark.parametrize(
        "locations",
        [
            pytest.param("location = /a { }\nlocation /a { }", id="exact-and-prefix-share-a-name"),
            pytest.param("location ~ x { }\nlocation ~ x { }", id="regex-may-repeat"),
            pytest.param("location @x { }\nlocation @x { }", id="named-may-repeat"),
            pytest.param("location ~ /r {\n location /r/s/ { proxy_pass http://127.0.0.1:9/u/; } }",
                         id="prefix-inside-literal-regex"),
            pytest.param("location ~ ^/a/ {\n proxy_pass http://127.0.0.1:9; }", id="proxy-pass-without-uri-in-regex"),
            pytest.param("location /a/ {\n location ~ \\.php$ { }\n location = /a/x { } }", id="regex-and-exact-nested"),
            pytest.param("location /a/ {\n location ^~ /a/b/ { location /a/b/c { } } }", id="three-levels"),
        ],
    )
    def test_allowed(self, tmp_path: Path, locations: str) -> None:
        """Placements that nginx accepts load without error."""
        load_text(tmp_path, server_block(locations))

    def test_location_args(self, tmp_path: Path) -> None:
        """Modifiers are split from the URI in both the one- and two-word forms."""
        config = load_text(
            tmp_path,
            server_block("location = /e { }\nlocation =/e2 { }\nlocation ^~ /n { }\nlocation ^~/n2 { }\n"
                         "location ~ r { }\nlocation ~r2 { }\nlocation ~* i { }\nlocation ~*i2 { }\n"
                         "location @named { }\nlocation / { }"),
        )
        assert config.http is not None
        got = [(loc.modifier, loc.name) for loc in config.http.servers[0].conf.locations]
        assert got == [("=", "/e"), ("=", "/e2"), ("^~", "/n"), ("^~", "/n2"), ("~", "r"), ("~", "r2"),
                       ("~*", "i"), ("~*", "i2"), ("@", "@named"), ("", "/")]


class TestWarnings:
    @pytest.mark.parametrize(
        ("servers", "warnings"),
        [
            pytest.param("server { listen 8080; server_name a; }\nserver { listen 8080; server_name a; }",
                         ['conflicting server name "a" on 0.0.0.0:8080, ignored'], id="same-name"),
            pytest.param("server { listen 8080; server_name A.com; }\nserver { listen 8080; server_name a.COM; }",
                         ['conflicting server name "a.com" on 0.0.0.0:8080, ignored'], id="names-are-lower-cased"),
            pytest.param("server { listen 8080; }\nserver { listen 8080; }",
                         ['conflicting server name "" on 0.0.0.0:8080, ignored'], id="default-empty-names"),
            pytest.param("server { listen 8080; server_name a a; }\nserver { listen 8080; server_name b; }",
                         ['conflicting server name "a" on 0.0.0.0:8080, ignored'], id="repeated-in-one-server"),
            pytest.param("server { listen 8080; server_name a a; }", [], id="single-server-is-not-checked"),
            pytest.param("server { listen 8080; server_name a; }\nserver { listen 8081; server_name a; }",
                         [], id="different-ports"),
            pytest.param("server { listen 8080; server_name a; }\nserver { listen 127.0.0.1:8080; server_name a; }",
                         [], id="different-addresses"),
            pytest.param("server { listen 8080; server_name a.com; }\nserver { listen 8080; server_name .a.com; }",
                         ['conflicting server name ".a.com" on 0.0.0.0:8080, ignored'], id="dot-name-is-also-exact"),
            pytest.param("server { listen 8080; server_name *.a.com; }\n"
                         "server { listen 8080; server_name *.a.com .a.com; }",
                         ['conflicting server name "*.a.com" on 0.0.0.0:8080, ignored',
                          'conflicting server name ".a.com" on 0.0.0.0:8080, ignored'], id="wildcards"),
            pytest.param("server { listen 8080; server_name ~x; }\nserver { listen 8080; server_name ~x; }",
                         [], id="regexes-never-conflict"),
        ],
    )
    def test_conflicting_server_names(self, tmp_path: Path, servers: str, warnings: list[str]) -> None:
        """Names repeated on one address warn as nginx does, without file and line."""
        config = load_text(tmp_path, f"http {{\n{servers}\n}}\n")
        assert list(config.warnings) == warnings


def headers(loc: LocationConf) -> list[tuple[str, str]]:
    """A location's proxy_set_header as (field, template text) pairs."""
    return [(name, value.text) for name, value in loc.proxy_set_header]


class TestMerge:
    CONFIG = """
http {
    proxy_set_header X-Http 1;
    proxy_set_header X-Both http;
    proxy_read_timeout 10s;
    server {
        listen 127.0.0.1:8080;
        location /inherits/ {
            location /inherits/nested/ { }
        }
        location /own/ {
            proxy_set_header X-Own 1;
            proxy_read_timeout 5s;
            location /own/nested/ { }
            location /own/reset/ { proxy_set_header X-Reset 1; }
        }
    }
    server {
        listen 127.0.0.1:8081;
        proxy_set_header X-Server 1;
        proxy_read_timeout 20s;
        proxy_connect_timeout 3s;
        location / {
            proxy_pass http://127.0.0.1:9;
            location /nested/ { }
        }
    }
}
"""

    @pytest.fixture
    def config(self, tmp_path: Path) -> Config:
        """The merge test config, loaded."""
        return load_text(tmp_path, self.CONFIG)

    def test_proxy_set_header_inherits_when_a_level_has_none(self, config: Config) -> None:
        """A level without proxy_set_header takes its parent's whole set."""
        assert config.http is not None
        inherits = config.http.servers[0].conf.locations[0]
        assert headers(inherits) == [("X-Http", "1"), ("X-Both", "http")]
        assert headers(inherits.locations[0]) == [("X-Http", "1"), ("X-Both", "http")]

    def test_proxy_set_header_at_a_level_replaces_the_outer_set(self, config: Config) -> None:
        """Any proxy_set_header at a level replaces, not extends, the outer set (as nginx)."""
        assert config.http is not None
        own = config.http.servers[0].conf.locations[1]
        assert headers(own) == [("X-Own", "1")]
        assert headers(own.locations[0]) == [("X-Own", "1")]
        assert headers(own.locations[1]) == [("X-Reset", "1")]
        second = config.http.servers[1]
        assert headers(second.conf) == [("X-Server", "1")]
        assert headers(second.conf.locations[0]) == [("X-Server", "1")]

    def test_timeouts_inherit_per_directive(self, config: Config) -> None:
        """Each timeout comes from the innermost level that sets it, else the default."""
        assert config.http is not None
        first, second = config.http.servers
        own = first.conf.locations[1]
        assert (first.conf.proxy_read_timeout, first.conf.locations[0].proxy_read_timeout) == (10.0, 10.0)
        assert (own.proxy_read_timeout, own.locations[0].proxy_read_timeout) == (5.0, 5.0)
        nested = second.conf.locations[0].locations[0]
        assert (nested.proxy_read_timeout, nested.proxy_connect_timeout, nested.proxy_send_timeout) == (20.0, 3.0, 60.0)
        assert own.proxy_connect_timeout == 60.0

    def test_proxy_pass_is_not_inherited(self, config: Config) -> None:
        """A nested location does not inherit its parent's proxy_pass."""
        assert config.http is not None
        outer = config.http.servers[1].conf.locations[0]
        assert outer.proxy_pass is not None and outer.proxy_pass.port == 9
        assert outer.locations[0].proxy_pass is None

    def test_return_is_not_inherited(self, tmp_path: Path) -> None:
        """A server-level return stays at the server level."""
        config = load_text(tmp_path, server_block("        return 204;\n        location / { }"))
        assert config.http is not None
        srv = config.http.servers[0]
        (op,) = srv.conf.script
        assert op.ret.code == 204
        assert srv.conf.locations[0].script == ()

    def test_access_log_at_a_level_replaces_the_outer_one(self, tmp_path: Path) -> None:
        """access_log follows the same replace-not-extend rule; "off" gives none."""
        text = ("http {\n  access_log /tmp/a.log;\n  server {\n    listen 8080;\n"
                "    location /x { access_log off; }\n    location /y { }\n  }\n}\n")
        config = load_text(tmp_path, text)
        assert config.http is not None
        x, y = config.http.servers[0].conf.locations
        assert x.access_log == ()
        assert [a.path for a in y.access_log] == ["/tmp/a.log"]


class TestDefaults:
    @pytest.mark.parametrize(("euid", "port"), [(0, 80), (1000, 8000)])
    def test_listen_default_depends_on_root(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, euid: int, port: int
    ) -> None:
        """A server without listen gets *:80 as root, else *:8000, as nginx."""
        monkeypatch.setattr(os, "geteuid", lambda: euid)
        config = load_text(tmp_path, "http {\n  server { }\n}\n")
        assert config.http is not None
        (lst,) = config.http.servers[0].listens
        assert (lst.host, lst.port, lst.default_server) == ("0.0.0.0", port, False)

    def test_server_and_location_defaults(self, tmp_path: Path) -> None:
        """Unset values take the table's defaults."""
        config = load_text(tmp_path, "http {\n  server { listen 8080; location / { } }\n}\n")
        assert config.http is not None
        srv = config.http.servers[0]
        loc = srv.conf.locations[0]
        assert srv.server_names == ("",)
        assert (loc.proxy_connect_timeout, loc.proxy_read_timeout, loc.proxy_send_timeout) == (60.0, 60.0, 60.0)
        assert (loc.proxy_pass, loc.script, loc.proxy_set_header) == (None, (), ())
        assert (loc.proxy_http_version, loc.default_type, loc.server_tokens) == ("1.1", "text/plain", True)
        assert [(a.path, a.format) for a in loc.access_log] == [("stdout", "combined")]

    def test_main_defaults(self, tmp_path: Path) -> None:
        """An empty file is a valid config with no http block."""
        config = load_text(tmp_path, "")
        assert config.http is None
        assert (config.worker_processes, config.worker_connections, config.daemon, config.pid) == (1, 512, False, None)
        assert (config.error_log.path, config.error_log.level) == ("stderr", "error")

    def test_files_and_text(self, tmp_path: Path) -> None:
        """The config records the files read and the effective text for -T."""
        (tmp_path / "inc.conf").write_text("worker_processes 2;\n")
        config = load_text(tmp_path, "include inc.conf;\n")
        assert [p.name for p in config.files] == ["pyngx.conf", "inc.conf"]
        assert config.text == "worker_processes 2;\n"
        assert config.worker_processes == 2


def golden_cases() -> list[Path]:
    """Every directory under tests/config/cases."""
    return sorted(p for p in CASES.iterdir() if p.is_dir())


class TestGoldenCases:
    def test_there_is_one_case_per_error_kind(self) -> None:
        """The golden set covers at least ten error kinds."""
        assert len(golden_cases()) >= 10

    @pytest.mark.parametrize("case", golden_cases(), ids=lambda p: p.name)
    def test_error_matches_expected(self, case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Loading the case's pyngx.conf fails with exactly expected_error.txt."""
        monkeypatch.chdir(case)
        with pytest.raises(ConfigError) as info:
            load("pyngx.conf")
        assert str(info.value) == (case / "expected_error.txt").read_text().strip()
