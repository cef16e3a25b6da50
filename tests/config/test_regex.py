"""Tests for pyngx.config.regex: nginx's PCRE2 regexes on Python's re.

The error wording follows nginx 1.22's pcre2_compile() messages (``nginx -t``).
"""

from __future__ import annotations

import pytest

from pyngx.config.regex import compile_regex, compile_server_regex
from pyngx.errors import ConfigValueError


class TestCompileRegex:
    def test_pcre_named_groups(self) -> None:
        """(?<name>...) and (?'name'...) become named groups."""
        m = compile_regex(r"^/(?<user>\w+)/(?'id'\d+)$", False).search("/bob/42")
        assert m is not None and m.groupdict() == {"user": "bob", "id": "42"}

    def test_lookbehind_is_not_a_named_group(self) -> None:
        """(?<= and (?<! stay lookbehinds."""
        assert compile_regex(r"(?<=a)b(?<!c)", False).search("ab") is not None

    def test_pcre_spellings(self) -> None:
        r"""\k<name> back-references, \z and POSIX classes work as in PCRE."""
        assert compile_regex(r"^/(?<w>[[:alpha:]]+)-\k<w>\z", False).search("/ab-ab")
        assert not compile_regex(r"^/x\z", False).search("/x\n")
        assert compile_regex(r"^/x\Z", False).search("/x\n")

    def test_caseless(self) -> None:
        """caseless is the ~* modifier."""
        assert compile_regex(r"\.JPG$", True).search("/a.jpg")
        assert not compile_regex(r"\.JPG$", False).search("/a.jpg")

    def test_server_regex_is_caseless_when_it_has_uppercase(self) -> None:
        """A server_name regex with an uppercase letter is caseless, as in nginx."""
        assert compile_server_regex(r"~^WWW\.").search("www.example.com")
        assert compile_server_regex(r"~^www\.").flags & 2 == 0  # re.IGNORECASE

    @pytest.mark.parametrize(
        ("pattern", "reason"),
        [
            ("(", "missing closing parenthesis"),
            (")", "unmatched closing parenthesis"),
            ("[", "missing terminating ] for character class"),
            ("*", "quantifier does not follow a repeatable item"),
            ("(?<a>x)(?<a>y)", "two named subpatterns have the same name (PCRE2_DUPNAMES not set)"),
        ],
    )
    def test_errors_use_pcre2_wording(self, pattern: str, reason: str) -> None:
        """Compile errors read like nginx's pcre2_compile() messages."""
        with pytest.raises(ConfigValueError) as info:
            compile_regex(pattern, False)
        assert info.value.message == f'pcre2_compile() failed: {reason} in "{pattern}"'
