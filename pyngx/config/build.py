"""Directive tree -> frozen ``Config``: checks, setters, merge.

Owns: the walk over parsed directives with a context (main, events, http,
server, location), the table checks in nginx's order (unknown / not
supported, not allowed here, block shape, arity, duplicate), calling each
spec's setter, and the parent -> child merge of location-level values
(nginx's merge_loc_conf), and the location checks (inside an exact or
named location, outside its parent, duplicate). It runs the checks nginx
makes in directive handlers and the ``conflicting server name``
warnings, which are checks.py's (``AFTER_SET``, ``HandlerChecks``).

Input: ``Parsed`` from parse.py (in this process or a child's, child.py). Output: ``Config``.
Must not: do network I/O or build runtime objects (runtime.py does).

Source: nginx src/core/ngx_conf_file.c (ngx_conf_handler),
src/http/ngx_http_core_module.c (ngx_http_core_location, listen).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pyngx.config.directives import (
    CONTEXT_DIRECTIVES,
    UPSTREAM,
    DIRECTIVES,
    EVENTS,
    HTTP,
    LOC_FIELDS,
    LIF,
    LOCATION,
    LOG_FORMATS,
    MAIN,
    NGINX_DIRECTIVES,
    SERVER,
    SIF,
    DirectiveSpec,
)
from pyngx.config.checks import AFTER_SET, HandlerChecks
from pyngx.config.model import AccessLog, Config, ErrorLog, HttpConf, LocationConf, ServerConf, SSLConf, UpstreamConf
from pyngx.config.regex import compile_regex
from pyngx.config.tree import Directive, Parsed
from pyngx.config.values import Listen
from pyngx.errors import ConfigError, ConfigValueError
# Module imports: pyngx.maps and pyngx.rewrite import pyngx.config.regex,
# which imports this package first.
from pyngx import maps, rewrite
from pyngx.variables import Template, declaring

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
    #: (file, line) of the directive whose setter runs (SetterScope.where).
    where: tuple[str, int] = ("", 0)

    @property
    def captures(self) -> frozenset[str]:
        scope: _Scope | None = self
        names: set[str] = set()
        while scope is not None:
            if scope.regex is not None:
                names.update(scope.regex.groupindex)
            scope = scope.parent
        return frozenset(names)

    def log_format(self, name: str) -> tuple[str, str] | None:
        """(format text, escape) of a built-in or earlier ``log_format``."""
        scope: _Scope | None = self
        while scope is not None:
            defined = scope.values.get("log_format")
            if defined and name in defined:
                return defined[name]  # type: ignore[no-any-return]
            scope = scope.parent
        return LOG_FORMATS.get(name)


def load(
    path: str | os.PathLike[str],
    prefix: str | os.PathLike[str] | None = None,
    globals_: str | None = None,
    error_log: str | None = None,
    isolated: bool = False,
) -> Config:
    """Parse and build the config at ``path``.

    Args:
        path: the main config file.
        prefix: directory for relative include paths (default: the file's directory).
        globals_: main-context directives from ``-g``, read after the file's.
        error_log: the ``-e`` path ("stderr" allowed): the error log until
            the config's own main-level error_log, if any, takes over.
        isolated: parse in a child process (child.py), as the daemon does,
            so that lark never loads here; False parses in this process.

    Returns:
        A frozen ``Config``.

    Raises:
        ConfigError: any syntax or meaning error, with file and line.
    """
    if isolated:
        from pyngx.config.child import read as read_in_child

        parsed = read_in_child(path, prefix, globals_)
    else:
        from pyngx.config.parse import read

        parsed = read(path, prefix, globals_)
    config = build(parsed, Path(path))
    # Right after reading: a reload watcher compares against these.
    config = dataclasses.replace(config, stamps=file_stamps(parsed.files))
    if error_log is not None and not any(d.name == "error_log" for d in parsed.directives):
        config = dataclasses.replace(config, error_log=ErrorLog(error_log, config.error_log.level))
    # Certificates and keys are read now, as nginx reads them with the config:
    # -t reports a bad one, and an expired one is a [warn].
    from pyngx.tls import check

    return dataclasses.replace(config, warnings=config.warnings + check(config))


def file_stamps(files: tuple[Path, ...]) -> tuple[tuple[Path, int, int], ...]:
    """(path, mtime_ns, size) of each file; (path, 0, -1) for one that vanished."""
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((f, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((f, 0, -1))
    return tuple(out)


def build(parsed: Parsed, path: Path) -> Config:
    """Build a ``Config`` from parsed directives (see ``load``).

    Raises:
        ConfigError: as ``load``.
    """
    # set, map and named captures declare variables for the whole config,
    # wherever they are (nginx): find them before compiling any template.
    declared = maps.Declared(parsed.directives)
    builder = _Builder(declared)
    root = _Scope(MAIN, None)
    with declaring(declared.getters):
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
        worker_shutdown_timeout=v.get("worker_shutdown_timeout"),
        http=http,
        warnings=tuple(builder.warnings),
        text="".join(d.dump() for d in parsed.directives),
    )


class _Builder(HandlerChecks):
    def __init__(self, declared: maps.Declared | None = None) -> None:
        super().__init__()
        #: The config's set/map/capture variables; map blocks are added as they are built.
        self.declared = declared if declared is not None else maps.Declared(())

    # -- the walk ----------------------------------------------------------

    def walk(self, directives: tuple[Directive, ...], scope: _Scope) -> None:
        for d in directives:
            spec = self.check(d, scope)
            if spec.block:
                self.block(d, spec, scope)
                continue
            assert spec.setter is not None
            scope.where = (d.file, d.line)
            try:
                value = spec.setter(d.args, scope.values.get(spec.field), scope)
            except ConfigValueError as exc:
                raise ConfigError(exc.message, d.file, d.line) from None
            scope.values[spec.field] = value
            after = AFTER_SET.get(d.name)
            if after is not None:
                after(self, d, scope, value)

    def check(self, d: Directive, scope: _Scope) -> DirectiveSpec:
        """nginx's checks, in ngx_conf_handler's order."""
        spec = CONTEXT_DIRECTIVES.get((scope.ctx, d.name)) or DIRECTIVES.get(d.name)
        if spec is None:
            if d.name in NGINX_DIRECTIVES:
                raise ConfigError(f'"{d.name}" directive is not supported by pyngx', d.file, d.line)
            import difflib  # only for this hint: a running daemon need not hold it

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
        special = _BLOCK_HANDLERS.get(d.name)
        if special is not None:
            special(self, d, scope)
            return
        ctx = {"events": EVENTS, "http": HTTP, "server": SERVER, "location": LOCATION, "upstream": UPSTREAM}[d.name]
        child = _Scope(ctx, d, scope)
        if ctx == UPSTREAM:
            child.name = d.args[0]
            for sibling in scope.children:
                if sibling.ctx == UPSTREAM and sibling.name == child.name:
                    raise ConfigError(f'duplicate upstream "{child.name}"', d.file, d.line)
        if ctx == LOCATION:
            self.location_args(d, child, scope)
        scope.children.append(child)
        self.walk(d.block, child)

    def if_block(self, d: Directive, scope: _Scope) -> None:
        """``if (condition) { ... }``: the block's directives are walked in a
        scope of their own (context "if in server" / "if in location"); the
        ``if`` joins the enclosing level's script, resolved by ``script``.

        Source: nginx src/http/modules/ngx_http_rewrite_module.c, ngx_http_rewrite_if.
        """
        try:
            condition = rewrite.parse_condition(d.args)
        except ConfigValueError as exc:
            raise ConfigError(exc.message, d.file, d.line) from None
        child = _Scope(LIF if scope.ctx == LOCATION else SIF, d, scope)
        # nginx's if-location has its location's name (proxy_pass URI rules, proxy_redirect default).
        child.modifier, child.name = scope.modifier, scope.name
        assert d.block is not None
        self.walk(d.block, child)
        scope.values["script"] = (*scope.values.get("script", ()), _PendingIf(condition, child))

    def map_block(self, d: Directive, scope: _Scope) -> None:
        """``map string $variable { ... }``: compiled now, found by the
        variable's getter (pyngx.maps.Declared)."""
        name, compiled = maps.build_map(d)
        self.declared.maps[name] = compiled

    def types_block(self, d: Directive, scope: _Scope) -> None:
        """``types { type extension ...; ... }``: lower-cased extension ->
        type. A second block in the same level adds to the first; an
        extension given again takes the later type, with nginx's [warn].

        Raises:
            ConfigError: a block inside (``unexpected "{"``).

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_types, ngx_http_core_type.
        """
        types = dict(scope.values.get("types") or {})
        for entry in d.block or ():
            if entry.block is not None:
                raise ConfigError('unexpected "{"', entry.file, entry.line)
            for ext in entry.args:
                ext = ext.lower()
                if ext in types:
                    self.warnings.append(f'duplicate extension "{ext}", content type: "{entry.name}", previous '
                                         f'content type: "{types[ext]}" in {entry.file}:{entry.line}')
                types[ext] = entry.name
        scope.values["types"] = MappingProxyType(types)

    def script(self, ops: tuple[Any, ...], values: dict[str, Any], scope: _Scope) -> tuple[rewrite.Op, ...]:
        """A level's script with each ``if`` resolved: its body, and in a
        location its conf, which is the location's values (its own
        proxy_pass included, as nginx's if-location inherits the handler)
        with the block's on top."""
        out: list[rewrite.Op] = []
        for op in ops:
            if not isinstance(op, _PendingIf):
                out.append(op)
                continue
            body = self.script(op.scope.values.get("script", ()), values, scope)
            conf = None
            if op.scope.ctx == LIF:
                own = {k: v for k, v in op.scope.values.items() if k in _LOC_FIELD_NAMES}
                conf = self.location(op.scope, {**values, **own, "script": ()}, scope.modifier, scope.name)
            out.append(rewrite.IfOp(op.condition, body, conf))
        return tuple(out)

    def location_args(self, d: Directive, child: _Scope, parent: _Scope) -> None:
        """Split ``location [mod] uri`` and check it against its parent and siblings.

        A nested location that is not a regex must start with its parent's
        name, whatever the parent is: inside ``location ~ ^/a`` the name
        must start with "^/a", so prefix locations fit only in regexes that
        are literal prefixes. Two exact or two prefix ("" and "^~")
        locations with the same name are duplicates; regex and named
        locations may repeat (the first one wins).

        Raises:
            ConfigError: invalid modifier, regex error, a location inside an
                exact or named location, a nested named location, a location
                outside its parent, a duplicate location.

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_location;
        src/http/ngx_http.c, ngx_http_join_exact_locations.
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
            if mod not in ("~", "~*") and not name.startswith(parent.name):
                raise ConfigError(f'location "{name}" is outside location "{parent.name}"', d.file, d.line)
        kind = _STATIC_KINDS.get(mod)
        for sibling in parent.children:
            if kind is not None and sibling.ctx == LOCATION and sibling.name == name and (
                _STATIC_KINDS.get(sibling.modifier) == kind
            ):
                raise ConfigError(f'duplicate location "{name}"', d.file, d.line)

    # -- merge and freeze ----------------------------------------------------

    def http(self, scope: _Scope) -> HttpConf:
        base = self.merge(scope, {})
        servers = tuple(self.server(s, base) for s in scope.children if s.ctx == SERVER)
        self.check_server_names(servers)
        upstreams = tuple(self.upstream(u) for u in scope.children if u.ctx == UPSTREAM)
        keepalive = base.get("keepalive_timeout", DIRECTIVES["keepalive_timeout"].default)[0]
        return HttpConf(servers, upstreams, keepalive_timeout=keepalive)

    def upstream(self, scope: _Scope) -> UpstreamConf:
        """Freeze one ``upstream`` block (nginx: ngx_http_upstream_module).

        Raises:
            ConfigError: ``no servers are inside upstream``.
        """
        d = scope.directive
        assert d is not None
        v = scope.values
        servers = v.get("server", ())
        if not servers:
            raise ConfigError("no servers are inside upstream", d.file, d.line)
        method, key, consistent, two = v.get("method") or ("round_robin", None, False, False)
        if method in ("hash", "ip_hash", "random") and any(srv.backup for srv in servers):
            # nginx: "backup" cannot be used with hash, ip_hash and random.
            raise ConfigError('invalid parameter "backup"', d.file, d.line)
        spec = CONTEXT_DIRECTIVES
        return UpstreamConf(
            name=scope.name,
            servers=servers,
            method=method,
            hash_key=key,
            consistent=consistent,
            random_two=two,
            keepalive=v.get("keepalive"),
            keepalive_timeout=v.get("keepalive_timeout", spec[(UPSTREAM, "keepalive_timeout")].default),
            keepalive_requests=v.get("keepalive_requests", spec[(UPSTREAM, "keepalive_requests")].default),
            file=d.file,
            line=d.line,
        )

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
        # nginx's merge_srv_conf for ngx_http_ssl_module and ngx_http_v2_module:
        # a value the server does not set is the http block's, else the default.
        http = scope.parent.values if scope.parent is not None else {}
        srv = {s.field: scope.values.get(s.field, http.get(s.field, s.default)) for s in _SRV_INHERITED}
        http2 = srv.pop("http2")
        return ServerConf(listens, scope.values.get("server_name", ("",)), conf, d.file, d.line, SSLConf(**srv), http2)

    def location(self, scope: _Scope, values: dict[str, Any], modifier: str, name: str) -> LocationConf:
        d = scope.directive
        assert d is not None
        nested = tuple(
            self.location(c, self.merge(c, values), c.modifier, c.name) for c in scope.children if c.ctx == LOCATION
        )
        full = {s.field: values.get(s.field, s.default) for s in LOC_FIELDS}
        if full["access_log"] is None:
            full["access_log"] = (AccessLog("stdout", "combined", Template(LOG_FORMATS["combined"][0])),)
        full["script"] = self.script(full["script"], values, scope)
        return LocationConf(
            modifier=modifier,
            name=name,
            regex=scope.regex,
            locations=nested,
            file=d.file,
            line=d.line,
            **full,
        )


#: Blocks with a handler of their own (nginx: ngx_http_rewrite_if, ngx_http_map_block).
_BLOCK_HANDLERS: dict[str, Callable[[_Builder, Directive, _Scope], None]] = {
    "if": _Builder.if_block,
    "map": _Builder.map_block,
    "types": _Builder.types_block,
}


@dataclass(frozen=True)
class _PendingIf:
    """An ``if`` in a script while its level is being walked (see _Builder.script)."""

    condition: rewrite.Condition
    scope: _Scope


#: Static location kinds: an exact and a prefix location may share a name.
_STATIC_KINDS = {"=": "exact", "": "prefix", "^~": "prefix"}


_LOC_FIELD_NAMES = frozenset(s.field for s in LOC_FIELDS)

#: Server-level directives that a server inherits from http (ServerConf.ssl, .http2).
_SRV_INHERITED = tuple(
    s for s in DIRECTIVES.values() if s.source in ("ngx_http_ssl_module", "ngx_http_v2_module") and s.level == SERVER
)
