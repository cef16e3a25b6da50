"""``map`` blocks, and the variables a config declares.

Owns: ``MapConf`` (one ``map``: exact keys, hostname wildcards, regexes
with captures, default, volatile) and ``build_map``; ``Declared``, the
variables a config declares with ``set``, ``map`` and named regex
captures, found before any template is compiled (nginx declares them for
the whole config, so their place in the file does not matter), each with
a getter that reads ``Request.variables`` and computes a map's value on
first use; ``variable_name``, the check of a declared name.

Input: the parsed directives (Declared); a map block (build_map); a
``Request`` per evaluation. Output: getters and maps.
Must not: import asyncio or aiohttp, or compile templates before build.py
has made the declared names known (``variables.declaring``).

Source: nginx docs: ngx_http_map_module; nginx
src/http/modules/ngx_http_map_module.c, src/http/ngx_http_variables.c
(ngx_http_map_find, ngx_http_add_variable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyngx.config.regex import compile_regex
from pyngx.errors import ConfigError, ConfigValueError
from pyngx.request import Request
from pyngx.variables import CHANGEABLE, VARIABLES, Getter, Template

if TYPE_CHECKING:
    from pyngx.config.tree import Directive


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
        name = variable_name(d.args[1])
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


def variable_name(word: str) -> str:
    """The name a ``set`` or ``map`` declares, from "$name" (lower-cased, as nginx).

    Raises:
        ConfigValueError: ``invalid variable name "X"``; ``the duplicate "X"
            variable`` for a built-in variable that cannot be changed.
    """
    if len(word) < 2 or word[0] != "$":
        raise ConfigValueError(f'invalid variable name "{word}"')
    name = word[1:].lower()
    if name in VARIABLES and name not in CHANGEABLE:
        raise ConfigValueError(f'the duplicate "{name}" variable')
    return name
