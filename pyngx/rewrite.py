"""The rewrite module's scripts, ``map``, ``error_page``, and what a phase ends with.

Owns:

- the compiled forms of the rewrite module's directives: ``Rewrite``,
  ``ReturnOp``, ``SetOp``, ``BreakOp`` and ``IfOp`` (with its
  ``Condition``). build.py keeps them in file order as a level's
  ``script`` (nginx compiles them into one code array per level);
- ``run_script``: a script run for a request, as nginx's script engine
  runs it in the server rewrite and location rewrite phases;
- ``MapConf`` (``map`` blocks) and ``Declared``: the variables a config
  declares with ``set``, ``map`` and named regex captures, found before any
  template is compiled, so that their place in the file does not matter;
- ``ErrorPage`` (``error_page``);
- the outcomes that end a phase: ``Finish`` (a status nginx answers
  itself, which error_page may take over), ``Respond`` (``return code
  text``) and ``Redirect`` (an internal redirect to a URI or a named
  location).

Input: directive arguments at load time; a ``Request`` per run.
Output: frozen ops and outcomes; a run changes the request's URI, args,
variables, captures and current conf (an ``if`` block's).
Must not: import asyncio or aiohttp, send anything, or find locations
(app.py runs the phases).

Source: nginx docs: ngx_http_rewrite_module, ngx_http_map_module,
ngx_http_core_module (error_page); nginx src/http/modules/ngx_http_rewrite_module.c,
src/http/modules/ngx_http_map_module.c, src/http/ngx_http_script.c.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pyngx.config.values import compile_regex
from pyngx.errors import ConfigError, ConfigValueError
from pyngx.request import Request
from pyngx.variables import _VAR_RE, CHANGEABLE, VARIABLES, Getter, Template, lookup

if TYPE_CHECKING:
    from pyngx.config.model import LocationConf, Return
    from pyngx.config.parse import Directive

#: Statuses whose ``return`` text is a Location (nginx: ngx_http_send_response).
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

#: A log callable for ``rewrite_log``: message -> None.
Log = Callable[[str], None]


# --- outcomes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finish:
    """End the request with a status nginx answers itself (its "special
    response": an error page, or a redirect page with Location), which
    ``error_page`` may take over. 444 closes the connection unanswered.

    Attributes:
        status: the status.
        location: the Location field of a redirect, or None.
        headers: more fields the answer keeps (an intercepted upstream 401's
            WWW-Authenticate), as (name, value) bytes.
    """

    status: int
    location: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Respond:
    """``return code [text]`` for a code that is not an error page or a
    redirect: answer ``status`` with ``body`` (Content-Type: default_type)."""

    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """An internal redirect: to ``uri`` with ``args`` (nginx:
    ngx_http_internal_redirect), or, when ``uri`` starts with "@", to that
    named location (ngx_http_named_location).

    The phases start again: at server rewrite for a URI, at location
    rewrite in the named location for "@name".
    """

    uri: str
    args: str = ""

    @classmethod
    def to(cls, target: str) -> Redirect:
        """The redirect for a target as written: "/uri?args", "/uri" or "@name"."""
        if target.startswith("@"):
            return cls(target)
        uri, _, args = target.partition("?")
        return cls(uri, args)


#: What ends a phase early (None: go on to the next phase).
Outcome = Union[Finish, Respond, Redirect]


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
    name = _variable_name(args[0])
    return SetOp(name, Template(args[1], captures))


def _variable_name(word: str) -> str:
    if len(word) < 2 or word[0] != "$":
        raise ConfigValueError(f'invalid variable name "{word}"')
    name = word[1:].lower()
    if name in VARIABLES and name not in CHANGEABLE:
        raise ConfigValueError(f'the duplicate "{name}" variable')
    return name


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


# --- map --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapConf:
    """One ``map source $variable { ... }`` block.

    Attributes:
        source: the compared value (text and variables).
        default: the value when nothing matches.
        exact: lower-cased key -> value.
        head: (".example.com", value) of "*.example.com" / ".example.com"
            keys (``hostnames``), longest first.
        tail: ("www.example.", value) of "www.example.*" keys, longest first.
        regexes: (regex, value) in file order; a value may use its captures.
        hostnames: a trailing dot of the source is dropped.
        volatile: not cached for the rest of the request.
    """

    source: Template
    default: Template
    exact: Mapping[str, Template]
    head: tuple[tuple[str, Template], ...]
    tail: tuple[tuple[str, Template], ...]
    regexes: tuple[tuple[re.Pattern[str], Template], ...]
    hostnames: bool
    volatile: bool

    def evaluate(self, r: Request) -> str:
        """The map's value for ``r``: exact key (case-insensitive), longest
        "*.name", longest "name.*", first matching regex, else default.

        A regex match sets ``$1``.. and named captures, as in nginx.

        Source: nginx docs: ngx_http_map_module, map; src/http/ngx_http_variables.c, ngx_http_map_find.
        """
        value = self.source.render(r)
        if self.hostnames and value.endswith("."):
            value = value[:-1]
        low = value.lower()
        found = self.exact.get(low)
        if found is None and low:
            found = next((t for suffix, t in self.head if low.endswith(suffix)), None)
            if found is None:
                found = next((t for prefix, t in self.tail if low.startswith(prefix) and len(low) > len(prefix)), None)
        if found is None and value:
            for regex, template in self.regexes:
                m = regex.search(value)
                if m is not None:
                    r.set_match(m)
                    return template.render(r)
        return (found or self.default).render(r)


def build_map(d: Directive) -> tuple[str, MapConf]:
    """Compile a ``map`` block.

    Returns:
        (variable name without "$", the map).

    Raises:
        ConfigError: with the file and line of the faulty entry:
            ``invalid variable name "X"``, ``the duplicate "X" variable``,
            ``invalid number of the map parameters``, ``duplicate default map
            parameter``, ``conflicting parameter "X"``, ``invalid hostname or
            wildcard "X"``, a regex that does not compile, an unknown variable.

    Source: nginx src/http/modules/ngx_http_map_module.c, ngx_http_map_block, ngx_http_map.
    """
    try:
        name = _variable_name(d.args[1])
        source = Template(d.args[0])
    except ConfigValueError as exc:
        raise ConfigError(exc.message, d.file, d.line) from None
    default: Template | None = None
    exact: dict[str, Template] = {}
    head: dict[str, Template] = {}
    tail: dict[str, Template] = {}
    regexes: list[tuple[re.Pattern[str], Template]] = []
    hostnames = volatile = False
    for e in d.block or ():
        words = (e.name, *e.args)
        try:
            if e.block is not None or len(words) not in (1, 2):
                raise ConfigValueError("invalid number of the map parameters")
            if len(words) == 1:
                if words[0] == "hostnames":
                    hostnames = True
                elif words[0] == "volatile":
                    volatile = True
                else:
                    raise ConfigValueError("invalid number of the map parameters")
                continue
            key, text = words
            if key == "default":
                if default is not None:
                    raise ConfigValueError("duplicate default map parameter")
                default = Template(text)
            elif key.startswith("~"):
                caseless = key.startswith("~*")
                regex = compile_regex(key[2:] if caseless else key[1:], caseless)
                regexes.append((regex, Template(text, frozenset(n.lower() for n in regex.groupindex))))
            else:
                key = key[1:] if key.startswith("\\") else key
                _add_key(key, Template(text), hostnames, exact, head, tail)
        except ConfigValueError as exc:
            raise ConfigError(exc.message, e.file, e.line) from None
    return name, MapConf(
        source,
        default or Template(""),
        exact,
        tuple(sorted(head.items(), key=lambda kv: len(kv[0]), reverse=True)),
        tuple(sorted(tail.items(), key=lambda kv: len(kv[0]), reverse=True)),
        tuple(regexes),
        hostnames,
        volatile,
    )


def _add_key(key: str, value: Template, hostnames: bool, exact: dict[str, Template], head: dict[str, Template],
             tail: dict[str, Template]) -> None:
    """Add a string key (nginx: ngx_hash_add_key, with NGX_HASH_WILDCARD_KEY for hostnames)."""
    low = key.lower()
    conflict = ConfigValueError(f'conflicting parameter "{key}"')
    if hostnames:
        stars = low.count("*")
        if stars > 1 or ".." in low:
            raise ConfigValueError(f'invalid hostname or wildcard "{key}"')
        if len(low) > 1 and low.startswith("."):
            if low[1:] in exact or low in head:
                raise conflict
            exact[low[1:]] = head[low] = value
            return
        if len(low) > 2 and low.startswith("*."):
            if low[1:] in head:
                raise conflict
            head[low[1:]] = value
            return
        if len(low) > 2 and low.endswith(".*"):
            if low[:-1] in tail:
                raise conflict
            tail[low[:-1]] = value
            return
        if stars:
            raise ConfigValueError(f'invalid hostname or wildcard "{key}"')
    if low in exact:
        raise conflict
    exact[low] = value


# --- variables declared by the config ----------------------------------------------------

# Named groups, in any of PCRE's spellings: (?<name>..), (?'name'..), (?P<name>..).
_NAMED_GROUP = re.compile(r"\(\?(?:<(?![=!])|'|P<)(\w+)[>']")


def _scan(directives: Iterable[Directive]) -> set[str]:
    """Names that set, map and named regex captures declare, anywhere."""
    names: set[str] = set()
    for d in directives:
        patterns: list[str] = []
        if d.name == "set" and d.args and d.args[0].startswith("$"):
            names.add(d.args[0][1:].lower())
        elif d.name == "map" and len(d.args) > 1 and d.args[1].startswith("$"):
            names.add(d.args[1][1:].lower())
            patterns = [e.name for e in d.block or () if e.name.startswith("~")]
        elif d.name in ("rewrite", "if", "location", "server_name"):
            patterns = list(d.args)
        for p in patterns:
            names.update(n.lower() for n in _NAMED_GROUP.findall(p))
        if d.block is not None and d.name != "map":
            names |= _scan(d.block)
    return names - VARIABLES.keys()


class Declared:
    """The variables one config declares with ``set``, ``map`` and named
    regex captures, each with its getter, found before any template is
    compiled (nginx declares them config-wide, so order does not matter).

    A variable's value lives in ``Request.variables``: what ``set`` or a
    regex match stored, else the value of its map, computed on first use
    and kept for the rest of the request (unless ``volatile``), else "".

    Attributes:
        getters: name -> getter, for ``variables.declaring``.
        maps: name -> map, filled as build.py compiles the map blocks.
    """

    def __init__(self, directives: Iterable[Directive]) -> None:
        self.maps: dict[str, MapConf] = {}
        self.getters: dict[str, Getter] = {name: self._getter(name) for name in sorted(_scan(directives))}

    def _getter(self, name: str) -> Getter:
        maps = self.maps

        def get(r: Request) -> str:
            value = r.variables.get(name)
            if value is not None:
                return value
            found = maps.get(name)
            if found is None:
                return ""
            value = found.evaluate(r)
            if not found.volatile:
                r.variables[name] = value
            return value

        return get


# --- error_page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """One status of an ``error_page`` directive.

    Attributes:
        code: the status it takes over.
        overwrite: -1: the answer keeps ``code``; 0 ("="): the status of
            whatever the redirect answers; else the new status ("=200").
        uri: the target: "/uri", "@name" or a URL (may hold variables).
        args: the arguments of a constant "/uri?args" target, else None.
    """

    code: int
    overwrite: int
    uri: Template
    args: str | None

    @property
    def codes(self) -> frozenset[int]:
        """{code}, for readers that take entries covering several codes."""
        return frozenset((self.code,))

    def target(self, r: Request) -> Redirect | str:
        """The internal redirect for "/uri" and "@name", else the URL to redirect the client to."""
        uri = self.uri.render(r)
        if uri.startswith("/"):
            # nginx: a target with variables is split at "?" when used; the
            # request's own arguments never carry over.
            return Redirect.to(uri) if self.uri.constant is None else Redirect(uri, self.args or "")
        if uri.startswith("@"):
            return Redirect(uri)
        return uri


# nginx turns these into 400 when no "=" is given (ngx_http_core_error_page).
_TO_400 = frozenset({494, 495, 496, 497})


def parse_error_page(args: tuple[str, ...], captures: frozenset[str] = frozenset()) -> tuple[ErrorPage, ...]:
    """``error_page code ... [=[response]] uri``.

    Raises:
        ConfigValueError: ``invalid value "X"``, ``value "X" must be between
            300 and 599``; an unknown variable in the URI.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_error_page.
    """
    i = len(args) - 2
    if args[i].startswith("="):
        if i == 0:
            raise ConfigValueError(f'invalid value "{args[i]}"')
        rest = args[i][1:]
        if rest and not rest.isdigit():
            raise ConfigValueError(f'invalid value "{args[i]}"')
        overwrite, n = (int(rest) if rest else 0), 2
    else:
        overwrite, n = -1, 1
    text = args[-1]
    uri = Template(text, captures)
    target_args: str | None = None
    if uri.constant is not None and text.startswith("/") and "?" in text:
        path, _, target_args = text.partition("?")
        uri = Template(path)
    pages = []
    for word in args[: len(args) - n]:
        if not word.isdigit() or word == "499":
            raise ConfigValueError(f'invalid value "{word}"')
        code = int(word)
        if not 300 <= code <= 599:
            raise ConfigValueError(f'value "{word}" must be between 300 and 599')
        pages.append(ErrorPage(code, 400 if overwrite == -1 and code in _TO_400 else overwrite, uri, target_args))
    return tuple(pages)
