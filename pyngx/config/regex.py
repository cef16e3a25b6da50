"""nginx's regexes (PCRE2) on Python's ``re``.

Owns: ``compile_regex`` (a location, map, if, rewrite or header regex as
written in the config -> a compiled ``re.Pattern``: PCRE2 spellings that
Python lacks rewritten, PCRE2's wording for compile errors) and
``compile_server_regex`` (a ``server_name ~regex``).

Input: the pattern as written. Output: a compiled pattern, or
``ConfigValueError`` with nginx's wording.
Must not: match requests (routing.py, rewrite.py and maps.py do), or do I/O.

Source: nginx src/core/ngx_regex.c (ngx_regex_compile); PCRE2's pattern syntax.
"""

from __future__ import annotations

import re

from pyngx.errors import ConfigValueError

__all__ = ["compile_regex", "compile_server_regex"]


# PCRE2 syntax that Python's re spells differently, outside character classes.
_PCRE_ESCAPES = {"\\z": "\\Z", "\\Z": "(?=\\n?\\Z)"}
_PCRE_NAMED = re.compile(r"\(\?(?:<(?![=!])|'|P<)(\w+)[>']")
_PCRE_BACKREF = re.compile(r"\\k(?:<(\w+)>|'(\w+)'|\{(\w+)\})")
# POSIX classes inside [...] (PCRE has them, Python's re does not).
_POSIX_CLASS = re.compile(r"\[:(\w+):\]")
_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "xdigit": "0-9A-Fa-f", "word": "\\w",
    "punct": "!-/:-@\\[-`{-~", "cntrl": "\\x00-\\x1f\\x7f", "print": " -~", "graph": "!-~",
}
# Python's re messages -> PCRE2's wording for the same fault (by prefix).
_PCRE_MESSAGES = {
    "missing ), unterminated subpattern": "missing closing parenthesis",
    "unbalanced parenthesis": "unmatched closing parenthesis",
    "unterminated character set": "missing terminating ] for character class",
    "nothing to repeat": "quantifier does not follow a repeatable item",
    "multiple repeat": "quantifier does not follow a repeatable item",
    "bad escape": "unrecognized character follows \\",
    "bad character range": "range out of order in character class",
    "redefinition of group name": "two named subpatterns have the same name (PCRE2_DUPNAMES not set)",
    "unknown group name": "reference to non-existent subpattern",
    "invalid group reference": "reference to non-existent subpattern",
    "look-behind requires fixed-width pattern": "lookbehind assertion is not fixed length",
}


def _pcre_to_python(pattern: str) -> str:
    """Rewrite the PCRE2 spellings Python's re lacks (see the tables above)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            ref = _PCRE_BACKREF.match(pattern, i)
            if ref is not None:
                out.append(f"(?P={ref.group(1) or ref.group(2) or ref.group(3)})")
                i = ref.end()
                continue
            pair = pattern[i : i + 2]
            out.append(_PCRE_ESCAPES.get(pair, pair))
            i += 2
            continue
        named = _PCRE_NAMED.match(pattern, i) if ch == "(" else None
        if named is not None:
            out.append(f"(?P<{named.group(1)}>")
            i = named.end()
            continue
        if ch == "[":
            i = _pcre_class(pattern, i, out)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _pcre_class(pattern: str, i: int, out: list[str]) -> int:
    """Copy the character class at ``pattern[i]`` to ``out``; return the index after it."""
    n = len(pattern)
    j = i + 1
    out.append("[")
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    if pattern.startswith("]", j):  # a "]" first in a class is literal
        out.append("\\]")
        j += 1
    while j < n and pattern[j] != "]":
        posix = _POSIX_CLASS.match(pattern, j)
        if pattern[j] == "\\":
            out.append(pattern[j : j + 2])
            j += 2
        elif posix is not None and posix.group(1) in _POSIX_CLASSES:
            out.append(_POSIX_CLASSES[posix.group(1)])
            j = posix.end()
        else:
            out.append("\\[" if pattern[j] == "[" else pattern[j])
            j += 1
    if j < n:
        out.append("]")
        j += 1
    return j


def compile_regex(pattern: str, caseless: bool) -> re.Pattern[str]:
    """Compile an nginx (PCRE2) regex with Python's ``re``.

    PCRE2 spellings Python lacks are rewritten first: named groups
    ``(?<name>...)`` and ``(?'name'...)``, back-references ``\\k<name>``,
    ``\\k'name'`` and ``\\k{name}``, ``\\z`` and ``\\Z``, and POSIX classes such
    as ``[[:alpha:]]``.

    Args:
        pattern: the regex as written in the config.
        caseless: compile case-insensitively (``~*``, and ``(?i)``).

    Returns:
        The compiled pattern (named groups keep their names).

    Raises:
        ConfigValueError: ``pcre2_compile() failed: REASON in "PATTERN"``,
            REASON in PCRE2's words for common faults.

    Differs from nginx: Python's ``re`` dialect, not PCRE2; common PCRE
    syntax (classes, anchors, groups, named groups, lookarounds) is the same.
    Error messages lack PCRE2's ``at "..."`` offset, and faults not in
    ``_PCRE_MESSAGES`` keep Python's wording.

    Source: nginx src/core/ngx_regex.c, ngx_regex_compile.
    """
    py = _pcre_to_python(pattern)
    try:
        # re.ASCII: nginx's PCRE runs without UTF mode, so case folding and
        # \w, \d, \s cover ASCII only.
        return re.compile(py, (re.IGNORECASE if caseless else 0) | re.ASCII)
    except re.error as exc:
        reason = next((pcre for msg, pcre in _PCRE_MESSAGES.items() if exc.msg.startswith(msg)), exc.msg)
        raise ConfigValueError(f'pcre2_compile() failed: {reason} in "{pattern}"') from None


def compile_server_regex(name: str) -> re.Pattern[str]:
    """Compile a ``server_name ~regex`` (``name`` with its "~").

    The regex is caseless when it has an uppercase letter, as in nginx
    (hosts are lower-cased before matching).

    Raises:
        ConfigValueError: ``pcre2_compile() failed: ...``.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_server_name.
    """
    pattern = name[1:]
    return compile_regex(pattern, any("A" <= c <= "Z" for c in pattern))
