"""The rewrite module's scripts: rewrite, return, set, if and break.

Owns: the compiled forms of the rewrite module's directives (``Rewrite``,
``ReturnOp``, ``SetOp``, ``BreakOp`` and ``IfOp`` with its ``Condition``),
which build.py keeps in file order as a level's ``script`` (nginx compiles
them into one code array per level), and ``run_script``, which runs a
script for a request as nginx's script engine does in the server rewrite
and location rewrite phases, with nginx's escaping of captures.

Input: directive arguments at load time; a ``Request`` per run.
Output: frozen ops; a run changes the request's URI, args, variables,
captures and current conf (an ``if`` block's), and may end in an outcome
(pyngx.special).
Must not: import asyncio or aiohttp, send anything, or find locations
(app.py runs the phases).

Source: nginx docs: ngx_http_rewrite_module; nginx
src/http/modules/ngx_http_rewrite_module.c, src/http/ngx_http_script.c.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pyngx import maps
from pyngx.config.regex import compile_regex
from pyngx.errors import ConfigValueError
from pyngx.request import Request
from pyngx.special import REDIRECT_CODES, Finish, Outcome, Respond
from pyngx.variables import _VAR_RE, CHANGEABLE, Getter, Template, lookup

if TYPE_CHECKING:
    from pyngx.config.model import LocationConf, Return

#: A log callable for ``rewrite_log``: message -> None.
Log = Callable[[str], None]


# --- escaping, as nginx's script engine does it --------------------------------------

# nginx 1.22's NGX_ESCAPE_ARGS set: controls, space, '"', "#", "%", "&", "+",
# ";", "<", ">", "?", "\", "^", "`", "{", "|", "}", DEL and non-ASCII bytes.
_ARGS_ESCAPE = frozenset(range(0x21)) | frozenset(b'"#%&+;<>?\\^`{|}') | frozenset(range(0x7F, 0x100))
# What NGX_UNESCAPE_REDIRECT decodes: %XX above "%" and below DEL, except the
# characters a URL must not hold as they are.
_REDIRECT_KEEP = frozenset(b'"<>\\^`{|}')
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def escape_args(value: str) -> str:
    """%-escape a capture put into arguments or a redirect (NGX_ESCAPE_ARGS)."""
    raw = value.encode("utf-8", "surrogateescape")
    return "".join(f"%{b:02X}" if b in _ARGS_ESCAPE else chr(b) for b in raw)


def unescape_redirect(url: str) -> str:
    """Decode the %XX escapes of a rewrite's redirect that need none, up to
    the first "?" (nginx: ngx_unescape_uri, NGX_UNESCAPE_REDIRECT)."""
    path, q, rest = url.partition("?")

    def one(m: re.Match[str]) -> str:
        ch = int(m.group(1), 16)
        return chr(ch) if 0x25 < ch < 0x7F and ch not in _REDIRECT_KEEP else m.group(0)

    return _PERCENT.sub(one, path) + q + rest


# --- the ops of a script ------------------------------------------------------------


def _invalid(word: str) -> ConfigValueError:
    return ConfigValueError(f'invalid condition "{word}"')


_FILE_TESTS: dict[str, Callable[[os.stat_result], bool]] = {
    "f": lambda st: stat.S_ISREG(st.st_mode),
    "d": lambda st: stat.S_ISDIR(st.st_mode),
    "e": lambda st: True,
    "x": lambda st: st.st_mode & stat.S_IXUSR == stat.S_IXUSR,
}
_SINGLE_VARIABLE = re.compile(r"\$\w+")


@dataclass(frozen=True, slots=True)
class Condition:
    """The condition of an ``if``.

    Attributes:
        op: "" (a variable, false when "" or "0"), "=", "!=", "~", "~*",
            "!~", "!~*", or a file test: "-f", "!-f", "-d", "!-d", "-e",
            "!-e", "-x", "!-x".
        value: the variable (comparisons) or the path (file tests).
        other: the right side of "=" and "!=" (may hold variables).
        regex: the regex of the "~" forms.
    """

    op: str
    value: Template
    other: Template | None = None
    regex: re.Pattern[str] | None = None

    def test(self, r: Request) -> bool:
        """Evaluate for ``r``; a regex match sets ``$1``.. and named captures."""
        op, value = self.op, self.value.render(r)
        if not op:
            return value not in ("", "0")
        if self.other is not None:
            return (value == self.other.render(r)) == (op == "=")
        if self.regex is not None:
            m = self.regex.search(value)
            if m is not None:
                r.set_match(m)
            else:
                r.captures = ()  # nginx: a script regex that fails resets $1..$9
            return (m is not None) != op.startswith("!")
        try:
            found = _FILE_TESTS[op[-1]](os.stat(value))
        except (OSError, ValueError):
            found = False
        return found != op.startswith("!")


def parse_condition(args: tuple[str, ...]) -> Condition:
    """The condition of ``if (condition) { ... }`` from its words.

    Args:
        args: the words between "if" and "{", parentheses included, e.g.
            ("($http_host", "=", "a)") or ("(", "-f", "$x", ")").

    Raises:
        ConfigValueError: ``invalid condition "X"``, ``unexpected "X" in
            condition``, ``unknown "X" variable``, a regex that does not compile.

    Source: nginx src/http/modules/ngx_http_rewrite_module.c,
    ngx_http_rewrite_if_condition.
    """
    v = list(args)
    last = len(v) - 1
    if not v[0].startswith("("):
        raise _invalid(v[0])
    if v[0] == "(":
        cur = 1
    else:
        cur, v[0] = 0, v[0][1:]
    if not v[last].endswith(")"):
        raise _invalid(v[last])
    if v[last] == ")":
        last -= 1
    else:
        v[last] = v[last][:-1]
    p = v[cur] if cur < len(v) else ""
    if len(p) > 1 and p[0] == "$":
        if cur != last and cur + 2 != last:
            raise _invalid(p)
        if not _SINGLE_VARIABLE.fullmatch(p):
            raise ConfigValueError(f'unknown "{p[1:]}" variable')
        variable = Template(p)
        if cur == last:
            return Condition("", variable)
        op = v[cur + 1]
        if op in ("=", "!="):
            return Condition(op, variable, other=Template(v[last]))
        if op in ("~", "~*", "!~", "!~*"):
            return Condition(op, variable, regex=compile_regex(v[last], op.endswith("*")))
        raise ConfigValueError(f'unexpected "{op}" in condition')
    if (len(p) == 2 and p[0] == "-") or (len(p) == 3 and p.startswith("!-")):
        if cur + 1 != last or p[-1] not in _FILE_TESTS:
            raise _invalid(p)
        return Condition(p, Template(v[last]))
    raise _invalid(p)


_FLAGS = ("last", "break", "redirect", "permanent")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """``rewrite regex replacement [flag]``.

    Attributes:
        regex: matched against the URI ($uri).
        parts: the replacement: literal text, capture numbers ($1) and
            variable getters, in order.
        args_at: index in ``parts`` where the arguments begin (after the
            replacement's first literal "?"), or None.
        status: 301 or 302 for a redirect, else 0.
        flag: "last", "break", "redirect", "permanent" or "".
        add_args: append the request's arguments (no trailing "?").
    """

    regex: re.Pattern[str]
    parts: tuple[str | int | Getter, ...]
    args_at: int | None
    status: int
    flag: str
    add_args: bool

    def render(self, r: Request) -> tuple[str, str | None]:
        """(URI part, arguments part or None) of the replacement for ``r``.

        As nginx, a capture goes into the arguments, or into a redirect,
        %-escaped when the request's URI had %-escapes or "+"; elsewhere,
        and for named captures, it goes in as matched.
        """
        quote = r.quoted_uri or r.plus_in_uri
        head: list[str] = []
        tail: list[str] | None = None
        out = head
        for i, p in enumerate(self.parts):
            if i == self.args_at:
                out = tail = []
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, int):
                value = r.captures[p] if p < len(r.captures) else ""
                out.append(escape_args(value) if quote and (self.status or tail is not None) else value)
            else:
                out.append(p(r))
        if self.args_at is not None and tail is None:
            tail = []
        return "".join(head), None if tail is None else "".join(tail)

    def run(self, r: Request, log: Log | None) -> bool | Outcome:
        m = self.regex.search(r.uri)
        if log is not None:
            log(f'"{self.regex.pattern}" {"matches" if m else "does not match"} "{r.uri}"')
        if m is None:
            r.captures = ()  # nginx: a script regex that fails resets $1..$9
            return False
        r.set_match(m)
        uri, args = self.render(r)
        if self.status:
            url = unescape_redirect(uri if args is None else f"{uri}?{args}")
            if self.add_args and r.args:
                url += ("?" if args is None else "&") + r.args
            if log is not None:
                log(f'rewritten redirect: "{url}"')
            return Finish(self.status, url)
        # nginx: ngx_http_script_regex_start_code / _end_code
        r.internal = True
        r.valid_unparsed_uri = False
        if self.flag == "break":
            r.valid_location = False
            r.uri_changed = False
        else:
            r.uri_changed = True
        if args is not None:
            r.args = args + ("&" + r.args if self.add_args and r.args else "")
        elif not self.add_args:
            r.args = ""
        if log is not None:
            log(f'rewritten data: "{uri}", args: "{r.args}"')
        if not uri:
            return Finish(500)  # nginx: "the rewritten URI has a zero length"
        r.uri = uri
        return self.flag in ("last", "break")


def parse_rewrite(args: tuple[str, ...], captures: frozenset[str] = frozenset()) -> Rewrite:
    """``rewrite regex replacement [last|break|redirect|permanent]``.

    Raises:
        ConfigValueError: the regex does not compile; ``empty replacement``;
            ``invalid parameter "X"``; an unknown variable in the replacement.

    Source: nginx src/http/modules/ngx_http_rewrite_module.c, ngx_http_rewrite.
    """
    regex = compile_regex(args[0], False)
    text = args[1]
    if not text:
        raise ConfigValueError("empty replacement")
    status = 302 if text.startswith(("http://", "https://", "$scheme")) else 0
    flag = args[2] if len(args) > 2 else ""
    if flag and flag not in _FLAGS:
        raise ConfigValueError(f'invalid parameter "{flag}"')
    if flag == "redirect":
        status = 302
    elif flag == "permanent":
        status = 301
    add_args = not text.endswith("?")
    if not add_args:
        text = text[:-1]
    known = captures | frozenset(n.lower() for n in regex.groupindex)
    parts: list[str | int | Getter] = []
    args_at: int | None = None
    pos = 0

    def literal(s: str) -> None:
        nonlocal args_at
        if args_at is None and "?" in s:
            before, _, after = s.partition("?")
            if before:
                parts.append(before)
            args_at = len(parts)
            s = after
        if s:
            parts.append(s)

    for m in _VAR_RE.finditer(text):
        literal(text[pos : m.start()])
        name = m.group(1) or m.group(2) or m.group(3)
        parts.append(int(name) if name.isdigit() else lookup(name, known))
        pos = m.end()
    literal(text[pos:])
    return Rewrite(regex, tuple(parts), args_at, status, flag, add_args)


@dataclass(frozen=True, slots=True)
class ReturnOp:
    """``return``: the ``Return`` of the config model, run in a script."""

    ret: Return

    def run(self, r: Request, log: Log | None) -> bool | Outcome:
        """nginx: ngx_http_rewrite_return_code, ngx_http_send_response."""
        code, text = self.ret.code, self.ret.text
        if code == 444 and text is None:  # with text, nginx answers 444 with it
            return Finish(444)
        value = text.render(r) if text is not None else ""
        if code in REDIRECT_CODES:
            return Finish(code, value)
        if code >= 400 and text is None:
            return Finish(code)
        return Respond(code, value)


@dataclass(frozen=True, slots=True)
class SetOp:
    """``set $variable value``."""

    name: str
    value: Template

    def run(self, r: Request, log: Log | None) -> bool | Outcome:
        value = self.value.render(r)
        setter = CHANGEABLE.get(self.name)
        if setter is not None:
            setter(r, value)
        else:
            r.variables[self.name] = value
        return False


def parse_set(args: tuple[str, ...], captures: frozenset[str] = frozenset()) -> SetOp:
    """``set $variable value``.

    Raises:
        ConfigValueError: ``invalid variable name "X"``; ``the duplicate "X"
            variable`` for a built-in variable ``set`` cannot change;
            an unknown variable in the value.

    Source: nginx src/http/modules/ngx_http_rewrite_module.c, ngx_http_rewrite_set.
    """
    name = maps.variable_name(args[0])
    return SetOp(name, Template(args[1], captures))


@dataclass(frozen=True, slots=True)
class BreakOp:
    """``break``: stop the script; a URI changed so far stays in this location."""

    def run(self, r: Request, log: Log | None) -> bool | Outcome:
        if r.uri_changed:  # nginx: ngx_http_script_break_code
            r.valid_location = False
            r.uri_changed = False
        return True


@dataclass(frozen=True, slots=True)
class IfOp:
    """``if (condition) { ... }``.

    Attributes:
        condition: the condition.
        body: the rewrite module's directives inside, in order.
        conf: the block's own conf (nginx's if-location: the location's
            values with the block's on top), which becomes the request's
            current conf when the condition holds; None in a server's if.
    """

    condition: Condition
    body: tuple[Op, ...]
    conf: LocationConf | None

    def run(self, r: Request, log: Log | None) -> bool | Outcome:
        if not self.condition.test(r):
            return False
        if self.conf is not None:
            r.location = self.conf
        return _run(self.body, r, log)


Op = Union[Rewrite, ReturnOp, SetOp, BreakOp, IfOp]


def _run(ops: Iterable[Op], r: Request, log: Log | None) -> bool | Outcome:
    for op in ops:
        result = op.run(r, log)
        if result is not False:
            return result
    return False


def run_script(script: tuple[Op, ...], r: Request, log: Log | None = None) -> Outcome | None:
    """Run a level's rewrite-module script for ``r``, in order.

    ``rewrite ... last`` and ``break`` stop it early; a rewrite that
    changed the URI sets ``r.uri_changed`` (app.py then finds the location
    again); an ``if`` that holds makes its block's conf ``r.location``.

    Args:
        script: the ops (``LocationConf.script``).
        r: the request.
        log: called with nginx's rewrite_log messages, or None.

    Returns:
        The outcome of a return or a redirecting rewrite, or None.

    Source: nginx src/http/modules/ngx_http_rewrite_module.c, ngx_http_rewrite_handler.
    """
    result = _run(script, r, log)
    return None if isinstance(result, bool) else result


def if_confs(script: tuple[Op, ...]) -> Iterator[LocationConf]:
    """The confs of the ``if`` blocks of a script (for proxy plans and logs)."""
    for op in script:
        if isinstance(op, IfOp) and op.conf is not None:
            yield op.conf
