"""Tests for pyngx.config.parse: nginx's syntax, escapes, include, dump.

The expected words, messages and line numbers are what nginx 1.22's
ngx_conf_read_token produces for the same text (checked with ``nginx -t``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyngx.config.parse import MAX_INCLUDE_DEPTH, Directive, parse, parse_string
from pyngx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def tree(directives: tuple[Directive, ...]) -> list[Any]:
    """The directives as nested (name, args, block) tuples, without file and line."""
    return [(d.name, d.args, None if d.block is None else tree(d.block)) for d in directives]


def words(text: str) -> tuple[str, ...]:
    """The words of the single simple directive in ``text``, name first."""
    (d,) = parse_string(text, "t.conf")
    return (d.name, *d.args)


def syntax_error(text: str) -> ConfigError:
    """The ConfigError that parsing ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_string(text, "t.conf")
    return info.value


class TestGrammar:
    def test_simple_directive(self) -> None:
        """A simple directive is its words up to ";"."""
        assert tree(parse_string("listen 127.0.0.1:80 default_server;")) == [
            ("listen", ("127.0.0.1:80", "default_server"), None)
        ]

    def test_block_directives_nest(self) -> None:
        """A block directive holds the directives between its braces."""
        text = "http {\n  server { listen 80; location / { } }\n}\nevents {}\n"
        assert tree(parse_string(text)) == [
            ("http", (), [("server", (), [("listen", ("80",), None), ("location", ("/",), [])])]),
            ("events", (), []),
        ]

    def test_comments_are_ignored_but_hash_inside_a_word_is_kept(self) -> None:
        """A "#" starts a comment only at the start of a word, as in nginx."""
        text = "# top\nhttp { # after brace\n  return 200 a#b; # trailing\n}\n"
        assert tree(parse_string(text)) == [("http", (), [("return", ("200", "a#b"), None)])]

    def test_quoted_words_keep_separators(self) -> None:
        """Single and double quotes keep spaces, ";", braces and "#" in one word."""
        assert words("""return 200 "a b;{}#" 'c d;{}#';""") == ("return", "200", "a b;{}#", "c d;{}#")

    def test_empty_quoted_word(self) -> None:
        """'""' is an empty argument (server_name "")."""
        assert words('server_name "" a;') == ("server_name", "", "a")

    def test_quoted_directive_name(self) -> None:
        """The name may be quoted like any word."""
        assert words('"listen" 80;') == ("listen", "80")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (r'x "a\"b";', 'a"b'),
            (r"x 'a\'b';", "a'b"),
            (r'x "a\\b";', "a\\b"),
            (r'x "a\tb";', "a\tb"),
            (r'x "a\nb";', "a\nb"),
            (r'x "a\rb";', "a\rb"),
            (r"x a\"b;", 'a"b'),
            (r"x a\tb;", "a\tb"),
            (r"x 'a\"b';", 'a"b'),
        ],
    )
    def test_escapes_become_characters(self, text: str, expected: str) -> None:
        r"""\" \' \\ \t \r \n become characters in quoted and bare words."""
        assert words(text)[1] == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (r"location ~ ^/\d+\.php$;", r"^/\d+\.php$"),
            (r'location ~ "\d{3}\s\w";', r"\d{3}\s\w"),
            (r"x a\$b;", r"a\$b"),
            (r"x '\/';", r"\/"),
        ],
    )
    def test_other_backslashes_stay(self, text: str, expected: str) -> None:
        r"""A backslash before any other character is kept (\d survives for regexes)."""
        assert words(text)[-1] == expected

    def test_backslash_escapes_a_separator_in_a_bare_word(self) -> None:
        """A backslash keeps a space or ";" inside a bare word (the backslash stays)."""
        assert words(r"x a\ b\;c;") == ("x", r"a\ b\;c")

    def test_variable_braces_in_bare_word(self) -> None:
        """ "${name}" keeps its braces in a bare word."""
        assert words("proxy_set_header X-A ${host}x$uri;") == ("proxy_set_header", "X-A", "${host}x$uri")

    def test_closing_brace_inside_bare_word_is_kept(self) -> None:
        """A "}" after the first character of a bare word belongs to the word, as in nginx."""
        assert words("return 200 a}b;") == ("return", "200", "a}b")

    def test_quoted_regex_with_braces(self) -> None:
        """A regex with {n,m} must be quoted, and then keeps its braces."""
        (loc,) = parse_string('location ~ "^/a{2,3}$" { }')
        assert loc.args == ("~", "^/a{2,3}$")
        assert loc.block == ()

    def test_unquoted_brace_in_regex_opens_a_block(self) -> None:
        """An unquoted "{" ends the word and opens a block, so "^/a{2}" fails."""
        assert syntax_error("location ~ ^/a{2} { }").message == 'unexpected end of file, expecting "}"'

    def test_quote_may_be_followed_by_separators(self) -> None:
        """A closing quote may touch ";", "{" or ")" (which then starts a new word)."""
        assert tree(parse_string('a "b";c "d"{}e "f");')) == [
            ("a", ("b",), None),
            ("c", ("d",), []),
            ("e", ("f", ")"), None),
        ]

    def test_crlf_line_endings(self) -> None:
        """CRLF files parse like LF files, with the same line numbers."""
        lines = [(d.name, d.line) for d in parse_string("a 1;\r\nb 2;\r\n\r\nc 3;\r\n")]
        assert lines == [("a", 1), ("b", 2), ("c", 4)]

    def test_line_is_where_the_directive_ends(self) -> None:
        """A directive's line is that of its ";" or "{", the line nginx reports."""
        text = "a\n  1\n  2;\nb\n{\n  c;\n}\n"
        (a, b) = parse_string(text)
        assert (a.line, b.line) == (3, 5)
        assert b.block is not None and b.block[0].line == 6

    def test_file_is_recorded(self) -> None:
        """Every directive remembers the file name it came from."""
        (d,) = parse_string("a;", "conf/x.conf")
        assert d.file == "conf/x.conf"


class TestSyntaxErrors:
    @pytest.mark.parametrize(
        ("text", "message", "line", "column"),
        [
            ("listen 80", 'unexpected end of file, expecting ";" or "}"', 1, None),
            ("listen 80\n", 'unexpected end of file, expecting ";" or "}"', 2, None),
            ("http {\n  server {\n", 'unexpected end of file, expecting "}"', 3, None),
            ('return 200 "abc;\n}\n', 'unexpected end of file, expecting ";" or "}"', 3, None),
            ("return 200 a\\", 'unexpected end of file, expecting ";" or "}"', 1, None),
            ("events {}\n}\n", 'unexpected "}"', 2, 1),
            ("http {\n  listen 80 }\n", 'unexpected "}"', 2, 13),
            ("http { ; }", 'unexpected ";"', 1, 8),
            ("http {\n  { }\n}", 'unexpected "{"', 2, 3),
            ('return 200 "a"b;', 'unexpected "b"', 1, 15),
            ("return 200 'a'b;", 'unexpected "b"', 1, 15),
            ('return 200 "a"}', 'unexpected "}"', 1, 15),
            ('return 200 "a"#c;', 'unexpected "#"', 1, 15),
            ('return 200\n"a\nb"c;', 'unexpected "c"', 3, 3),
        ],
    )
    def test_message_and_position(self, text: str, message: str, line: int, column: int | None) -> None:
        """Syntax errors use nginx's wording and line, plus the column when nginx has one."""
        err = syntax_error(text)
        assert (err.message, err.file, err.line, err.column) == (message, "t.conf", line, column)

    def test_str_has_file_line_and_column(self) -> None:
        """str() of a syntax error reads "MESSAGE in FILE:LINE:COLUMN"."""
        assert str(syntax_error("a;\n}")) == 'unexpected "}" in t.conf:2:1'


class TestInclude:
    def test_glob_is_relative_to_the_main_file_and_sorted(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A relative include glob resolves against the main file's directory, in sorted order."""
        conf = tmp_path / "etc"
        (conf / "sites").mkdir(parents=True)
        (conf / "sites" / "b.conf").write_text("b;\n")
        (conf / "sites" / "a.conf").write_text("\n\na;\n")
        (conf / "sites" / "skip.txt").write_text("skip;\n")
        (conf / "pyngx.conf").write_text("http {\n  include sites/*.conf;\n  c;\n}\n")
        monkeypatch.chdir(tmp_path)  # not the config's directory
        parsed = parse(conf / "pyngx.conf")
        (http,) = parsed.directives
        assert http.block is not None
        assert [(d.name, Path(d.file).name, d.line) for d in http.block] == [
            ("a", "a.conf", 3),
            ("b", "b.conf", 1),
            ("c", "pyngx.conf", 3),
        ]
        assert [p.name for p in parsed.files] == ["pyngx.conf", "a.conf", "b.conf"]

    def test_nested_include_is_relative_to_the_main_file_too(self, tmp_path: Path) -> None:
        """An include inside an included file also resolves against the main file's directory."""
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "one.conf").write_text("include sub/two.conf;\n")
        (tmp_path / "sub" / "two.conf").write_text("two;\n")
        (tmp_path / "pyngx.conf").write_text("include sub/one.conf;\n")
        assert tree(parse(tmp_path / "pyngx.conf").directives) == [("two", (), None)]

    def test_absolute_include(self, tmp_path: Path) -> None:
        """An absolute include path is used as it is."""
        (tmp_path / "abs.conf").write_text("x 1;\n")
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir" / "pyngx.conf").write_text(f"include {tmp_path / 'abs.conf'};\n")
        assert tree(parse(tmp_path / "dir" / "pyngx.conf").directives) == [("x", ("1",), None)]

    def test_glob_matching_nothing_is_fine(self, tmp_path: Path) -> None:
        """A glob that matches no file includes nothing and is no error, as in nginx."""
        (tmp_path / "pyngx.conf").write_text("include conf.d/*.conf;\na;\n")
        assert tree(parse(tmp_path / "pyngx.conf").directives) == [("a", (), None)]

    def test_missing_file_names_the_absolute_path_and_the_include(self, tmp_path: Path) -> None:
        """A missing include file fails with nginx's open() message at the include's file:line."""
        main = tmp_path / "pyngx.conf"
        main.write_text("http {\n    include missing.conf;\n}\n")
        with pytest.raises(ConfigError) as info:
            parse(str(main))
        err = info.value
        assert err.message == f'open() "{tmp_path / "missing.conf"}" failed (2: No such file or directory)'
        assert (err.file, err.line) == (str(main), 2)

    def test_missing_main_file_has_no_location(self, tmp_path: Path) -> None:
        """A missing main file gives the open() message alone."""
        with pytest.raises(ConfigError) as info:
            parse(tmp_path / "nope.conf")
        assert str(info.value) == f'open() "{tmp_path / "nope.conf"}" failed (2: No such file or directory)'

    def test_include_loop_fails_with_depth_error(self, tmp_path: Path) -> None:
        """A file that includes itself fails once the nesting passes the limit."""
        (tmp_path / "pyngx.conf").write_text("include loop.conf;\n")
        (tmp_path / "loop.conf").write_text("a;\ninclude loop.conf;\n")
        with pytest.raises(ConfigError) as info:
            parse(tmp_path / "pyngx.conf")
        err = info.value
        assert err.message == f"include nesting too deep (more than {MAX_INCLUDE_DEPTH} levels)"
        assert (Path(err.file or "").name, err.line) == ("loop.conf", 2)

    def test_syntax_error_names_the_included_file(self, tmp_path: Path) -> None:
        """A syntax error inside an included file is reported in that file."""
        (tmp_path / "bad.conf").write_text("a;\nb {\n")
        (tmp_path / "pyngx.conf").write_text("include bad.conf;\n")
        with pytest.raises(ConfigError) as info:
            parse(tmp_path / "pyngx.conf")
        assert (info.value.message, info.value.file, info.value.line) == (
            'unexpected end of file, expecting "}"',
            str(tmp_path / "bad.conf"),
            3,
        )

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("include;", 'invalid number of arguments in "include" directive'),
            ("include a b;", 'invalid number of arguments in "include" directive'),
            ("include a { }", 'directive "include" is not terminated by ";"'),
        ],
    )
    def test_include_shape_errors(self, text: str, message: str) -> None:
        """include takes exactly one argument and no block."""
        assert syntax_error(text).message == message


ROUND_TRIP = r"""
# a comment that dump() drops
worker_processes auto;
events { worker_connections 64; }
http {
    access_log off;
    proxy_set_header X-Quote "say \"hi\" it's";
    proxy_set_header X-Tab "a\tb";
    proxy_set_header X-Backslash 'C:\\dir\\n';
    proxy_set_header X-Empty "";
    proxy_set_header X-Vars ${host}-$uri;
    server {
        listen [::1]:8080 default_server;
        server_name example.com "" ~^(?<sub>\w+)\.example\.net$;
        location ~ "^/a{2,3}/(\d+)$" { return 200 "x;y{z}#w"; }
        location ~* \.(gif|jpg)$ { return 204; }
        location ^~ /static/ { location = /static/x { return 301 https://a/b?c=d&e; } }
        location @named { return 200 'single'; }
        location / { proxy_pass http://127.0.0.1:9000; }
    }
}
"""


class TestRoundTrip:
    @pytest.mark.parametrize(
        "text",
        [
            pytest.param(ROUND_TRIP, id="rich"),
            pytest.param((ROOT / "conf" / "pyngx.conf").read_text(), id="conf/pyngx.conf"),
            pytest.param("a 'x\\\\ny' \"\\\\t\" b\\c;\n", id="backslashes"),
        ],
    )
    def test_parse_dump_parse_gives_the_same_tree(self, text: str) -> None:
        """parse -> dump -> parse gives the same names, args and blocks."""
        first = parse_string(text)
        dumped = "".join(d.dump() for d in first)
        assert tree(parse_string(dumped)) == tree(first)

    def test_dump_is_nginx_syntax(self) -> None:
        """dump() writes one directive per line, blocks indented by four spaces."""
        (d,) = parse_string('http { server_name "a b" c; events { } }')
        assert d.dump() == 'http {\n    server_name "a b" c;\n    events {\n    }\n}\n'
