"""Directive tree -> frozen ``Config``: checks, setters, merge.

Owns: the walk over parsed directives with a context (main, events, http,
server, location), the table checks in nginx's order (unknown / not
supported, not allowed here, block shape, arity, duplicate), calling each
spec's setter, and the parent -> child merge of location-level values
(nginx's merge_loc_conf). Also location and server checks that need the
whole tree (nested location outside its parent, duplicate location,
duplicate default server, proxy_pass URI in a regex location).

Input: ``Parsed`` from parse.py. Output: ``Config``.
Must not: do network I/O or build runtime objects (runtime.py does).

Source: nginx src/core/ngx_conf_file.c (ngx_conf_handler),
src/http/ngx_http_core_module.c (ngx_http_core_location, listen).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyngx.config.directives import (
    DIRECTIVES,
    EVENTS,
    HTTP,
    LOC_FIELDS,
    LOCATION,
    LOG_FORMATS,
    MAIN,
    NGINX_DIRECTIVES,
    SERVER,
    DirectiveSpec,
)
from pyngx.config.model import AccessLog, Config, ErrorLog, HttpConf, LocationConf, ServerConf
from pyngx.config.parse import Directive, Parsed, parse
from pyngx.config.values import Listen, compile_regex
from pyngx.errors import ConfigError, ConfigValueError
from pyngx.variables import Template

_MODIFIERS = ("=", "^~", "~*", "~")


@dataclass
class _Scope:
    """A block being built: its context, raw values and children."""

    ctx: str
    directive: Directive | None
    parent: _Scope | None = None
    values: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    children: list[_Scope] = field(default_factory=list)
    modifier: str = ""
    name: str = ""
    regex: Any = None

    @property
    def captures(self) -> frozenset[str]:
        scope: _Scope | None = self
        names: set[str] = set()
        while scope is not None:
            if scope.regex is not None:
                names.update(scope.regex.groupindex)
            scope = scope.parent
        return frozenset(names)

    def log_format(self, name: str) -> str | None:
        return LOG_FORMATS.get(name)


def load(path: str | os.PathLike[str], prefix: str | os.PathLike[str] | None = None) -> Config:
    """Parse and build the config at ``path``.

    Args:
        path: the main config file.
        prefix: directory for relative include paths (default: the file's directory).

    Returns:
        A frozen ``Config``.

    Raises:
        ConfigError: any syntax or meaning error, with file and line.
    """
    return build(parse(path, prefix), Path(path))


def build(parsed: Parsed, path: Path) -> Config:
    """Build a ``Config`` from parsed directives (see ``load``).

    Raises:
        ConfigError: as ``load``.
    """
    builder = _Builder()
    root = _Scope(MAIN, None)
    builder.walk(parsed.directives, root)
    http_scope = next((c for c in root.children if c.ctx == HTTP), None)
    events = next((c for c in root.children if c.ctx == EVENTS), None)
    http = builder.http(http_scope) if http_scope is not None else None
    v = root.values
    return Config(
        path=path,
        files=parsed.files,
        worker_processes=v.get("worker_processes", DIRECTIVES["worker_processes"].default),
        worker_connections=(events.values if events else {}).get("worker_connections", 512),
        error_log=v.get("error_log") or ErrorLog("stderr", "error"),
        pid=v.get("pid"),
        daemon=v.get("daemon", False),
        http=http,
        warnings=tuple(builder.warnings),
        text="".join(d.dump() for d in parsed.directives),
    )


class _Builder:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    # -- the walk ----------------------------------------------------------

    def walk(self, directives: tuple[Directive, ...], scope: _Scope) -> None:
        for d in directives:
            spec = self.check(d, scope)
            if spec.block:
                self.block(d, spec, scope)
                continue
            assert spec.setter is not None
            try:
                scope.values[spec.field] = spec.setter(d.args, scope.values.get(spec.field), scope)
            except ConfigValueError as exc:
                raise ConfigError(exc.message, d.file, d.line) from None

    def check(self, d: Directive, scope: _Scope) -> DirectiveSpec:
        """nginx's checks, in ngx_conf_handler's order."""
        spec = DIRECTIVES.get(d.name)
        if spec is None:
            if d.name in NGINX_DIRECTIVES:
                raise ConfigError(f'"{d.name}" directive is not supported by pyngx', d.file, d.line)
            close = difflib.get_close_matches(d.name, DIRECTIVES.keys(), n=1)
            hint = f'did you mean "{close[0]}"?' if close else None
            raise ConfigError(f'unknown directive "{d.name}"', d.file, d.line, hint=hint)
        if scope.ctx not in spec.contexts:
            raise ConfigError(f'"{d.name}" directive is not allowed here', d.file, d.line)
        if spec.block and d.block is None:
            raise ConfigError(f'directive "{d.name}" has no opening "{{"', d.file, d.line)
        if not spec.block and d.block is not None:
            raise ConfigError(f'directive "{d.name}" is not terminated by ";"', d.file, d.line)
        lo, hi = spec.arity
        if len(d.args) < lo or (hi is not None and len(d.args) > hi):
            raise ConfigError(f'invalid number of arguments in "{d.name}" directive', d.file, d.line)
        if not spec.multi:
            if d.name in scope.seen:
                raise ConfigError(f'"{d.name}" directive is duplicate', d.file, d.line)
            scope.seen.add(d.name)
        return spec

    def block(self, d: Directive, spec: DirectiveSpec, scope: _Scope) -> None:
        assert d.block is not None
        ctx = {"events": EVENTS, "http": HTTP, "server": SERVER, "location": LOCATION}[d.name]
        child = _Scope(ctx, d, scope)
        if ctx == LOCATION:
            self.location_args(d, child, scope)
        scope.children.append(child)
        self.walk(d.block, child)

    def location_args(self, d: Directive, child: _Scope, parent: _Scope) -> None:
        """Split ``location [mod] uri`` and check it against its parent.

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_location.
        """
        args = d.args
        if len(args) == 2:
            mod, name = args
            if mod not in _MODIFIERS:
                raise ConfigError(f'invalid location modifier "{mod}"', d.file, d.line)
        else:
            name, mod = args[0], ""
            for m in _MODIFIERS:
                if name.startswith(m) and len(name) > len(m):
                    mod, name = m, name[len(m) :]
                    break
            if name.startswith("@"):
                mod = "@"
        child.modifier, child.name = mod, name
        if mod in ("~", "~*"):
            try:
                child.regex = compile_regex(name, mod == "~*")
            except ConfigValueError as exc:
                raise ConfigError(exc.message, d.file, d.line) from None
        if parent.ctx == LOCATION:
            if parent.modifier == "=":
                raise ConfigError(f'location "{name}" cannot be inside the exact location "{parent.name}"', d.file, d.line)
            if parent.modifier == "@":
                raise ConfigError(f'location "{name}" cannot be inside the named location "{parent.name}"', d.file, d.line)
            if mod == "@":
                raise ConfigError(f'named location "{name}" can be on the server level only', d.file, d.line)
            if mod in ("", "=", "^~") and parent.modifier in ("", "^~") and not name.startswith(parent.name):
                raise ConfigError(f'location "{name}" is outside location "{parent.name}"', d.file, d.line)
        for sibling in parent.children:
            if sibling.ctx == LOCATION and sibling.name == name and _kind(sibling.modifier) == _kind(mod):
                raise ConfigError(f'duplicate location "{name}"', d.file, d.line)

    # -- merge and freeze ----------------------------------------------------

    def http(self, scope: _Scope) -> HttpConf:
        base = self.merge(scope, {})
        servers = tuple(self.server(s, base) for s in scope.children if s.ctx == SERVER)
        self.check_listens(servers)
        return HttpConf(servers)

    def merge(self, scope: _Scope, parent: dict[str, Any]) -> dict[str, Any]:
        """nginx's merge_loc_conf: unset inheritable fields take the parent's value."""
        merged = {s.field: parent[s.field] for s in LOC_FIELDS if s.inherit and s.field in parent}
        merged.update({k: v for k, v in scope.values.items() if k in _LOC_FIELD_NAMES})
        return merged

    def server(self, scope: _Scope, http_values: dict[str, Any]) -> ServerConf:
        d = scope.directive
        assert d is not None
        values = self.merge(scope, http_values)
        listens = scope.values.get("listen") or (Listen("0.0.0.0", 80 if os.geteuid() == 0 else 8000),)
        conf = self.location(scope, values, "server", "")
        return ServerConf(listens, scope.values.get("server_name", ("",)), conf, d.file, d.line)

    def location(self, scope: _Scope, values: dict[str, Any], modifier: str, name: str) -> LocationConf:
        d = scope.directive
        assert d is not None
        nested = tuple(
            self.location(c, self.merge(c, values), c.modifier, c.name) for c in scope.children if c.ctx == LOCATION
        )
        pp = values.get("proxy_pass")
        if pp is not None and pp.uri is not None and (modifier in ("~", "~*", "@") or _in_regex(scope)):
            line = _line_of(d, "proxy_pass")
            raise ConfigError(
                '"proxy_pass" cannot have URI part in location given by regular expression, '
                'or inside named location, or inside "if" statement, or inside "limit_except" block',
                d.file,
                line,
            )
        full = {s.field: values.get(s.field, s.default) for s in LOC_FIELDS}
        if full["access_log"] is None:
            full["access_log"] = (AccessLog("stdout", "combined", Template(LOG_FORMATS["combined"])),)
        return LocationConf(
            modifier=modifier,
            name=name,
            regex=scope.regex,
            locations=nested,
            file=d.file,
            line=d.line,
            **full,
        )

    def check_listens(self, servers: tuple[ServerConf, ...]) -> None:
        """A duplicate default_server per address is an error; a repeated name a warning."""
        defaults: dict[tuple[str, int], ServerConf] = {}
        names: dict[tuple[tuple[str, int], str], ServerConf] = {}
        for srv in servers:
            for lst in srv.listens:
                if lst.default_server:
                    if lst.address in defaults:
                        line = _listen_line(srv, lst)
                        raise ConfigError(f"a duplicate default server for {lst}", srv.file, line)
                    defaults[lst.address] = srv
                for name in srv.server_names:
                    key = (lst.address, name)
                    if key in names and names[key] is not srv:
                        self.warnings.append(f'conflicting server name "{name}" on {lst}, ignored')
                    names.setdefault(key, srv)


_LOC_FIELD_NAMES = frozenset(s.field for s in LOC_FIELDS)


def _kind(modifier: str) -> str:
    # "/x" and "^~ /x" are the same static location to nginx; regexes are separate.
    return "static" if modifier in ("", "^~") else modifier


def _in_regex(scope: _Scope) -> bool:
    s: _Scope | None = scope.parent
    while s is not None and s.ctx == LOCATION:
        if s.modifier in ("~", "~*"):
            return True
        s = s.parent
    return False


def _line_of(block: Directive, name: str) -> int:
    for d in block.block or ():
        if d.name == name:
            return d.line
    return block.line


def _listen_line(srv: ServerConf, lst: Listen) -> int:
    return srv.line
