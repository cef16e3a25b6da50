"""DIRECTIVES: the table that gives every directive its meaning.

Owns: one ``DirectiveSpec`` per supported directive (contexts, arity,
value parser, default, inheritance, nginx syntax line) and
``NGINX_DIRECTIVES``, the nginx directives pyngx knows of but does not
support yet (they fail with ``is not supported by pyngx``, distinct from
``unknown directive``).

Input: none (data). Output: the tables; build.py walks them.
Must not: walk config trees (build.py) or do I/O.

Source: nginx's module command tables (ngx_command_t), e.g.
src/http/modules/ngx_http_proxy_module.c, ngx_http_proxy_commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyngx.config.values import (
    parse_upstream_server,
    is_status,
    parse_flag,
    parse_int,
    parse_listen,
    parse_proxy_pass,
    parse_size,
    parse_time,
)
from pyngx.config.model import DEFAULT_TYPES, DocRoot
from pyngx.errors import ConfigValueError
from pyngx.variables import Template

MAIN, EVENTS, HTTP, SERVER, LOCATION = "main", "events", "http", "server", "location"
UPSTREAM = "upstream"
HSL = frozenset({HTTP, SERVER, LOCATION})
#: The block of an ``if`` in a server / in a location (nginx's SIF and LIF
#: contexts); nginx's docs say "if" for both and "if in location" for LIF.
SIF, LIF = "if in server", "if in location"
#: Where the rewrite module's script directives go (rewrite, return, set, break).
SCRIPT = frozenset({SERVER, LOCATION, SIF, LIF})


class SetterScope(Protocol):
    """What a setter may read about the block it is in."""

    ctx: str
    #: (file, line) of the directive being set, for values checked after the build.
    where: tuple[str, int]
    #: The block's name (a location's URI) and the values set in it so far
    #: (``proxy_redirect default`` reads the proxy_pass before it).
    name: str
    values: dict[str, Any]
    #: The location's modifier ("", "=", "^~", "~", "~*", "@"; "" outside locations).
    modifier: str

    @property
    def captures(self) -> frozenset[str]: ...

    def log_format(self, name: str) -> tuple[str, str] | None: ...


Setter = Callable[[tuple[str, ...], Any, SetterScope], Any]


@dataclass(frozen=True, slots=True)
class DirectiveSpec:
    """One row of the directive table.

    Attributes:
        name: the directive's name.
        contexts: where it may appear (main, events, http, server, location).
        arity: (min, max) number of arguments; max None means unbounded.
        syntax: nginx's syntax line, e.g. ``proxy_read_timeout time;``.
        default: the value when unset everywhere (already typed).
        default_doc: nginx's "Default:" line, for docs.
        setter: (args, previous value, scope) -> new value; None for blocks.
        block: the directive takes a ``{}`` block.
        multi: may repeat in one block (else ``is duplicate``).
        inherit: an inner level without it takes the outer level's value.
        level: where the value lives: main, events, http, server, upstream,
            or loc (loc values merge http -> server -> location).
        store: the field name when several directives set one field
            (least_conn, ip_hash, hash and random set "method").
        source: the nginx module documenting it.
        differs: a documented difference from nginx, or "".
    """

    name: str
    contexts: frozenset[str]
    arity: tuple[int, int | None]
    syntax: str
    default: Any = None
    default_doc: str = "—"
    setter: Setter | None = None
    block: bool = False
    multi: bool = False
    inherit: bool = True
    level: str = "loc"
    source: str = "ngx_http_core_module"
    differs: str = ""
    store: str = ""

    @property
    def field(self) -> str:
        """The conf field that stores the value (``return`` -> ``return_``; ``store`` when set)."""
        if self.store:
            return self.store
        return "return_" if self.name == "return" else self.name


# --- setters -----------------------------------------------------------------


def set_time(name: str) -> Setter:
    """Setter for ``NAME time;`` (float seconds)."""
    return lambda args, old, scope: parse_time(args[0], name)


def set_flag(name: str) -> Setter:
    """Setter for ``NAME on|off;``."""
    return lambda args, old, scope: parse_flag(args[0], name)


def set_num(name: str) -> Setter:
    """Setter for ``NAME number;``."""
    return lambda args, old, scope: parse_int(args[0], name)


def set_str(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
    """Setter for ``NAME string;``."""
    return args[0]


def set_listen(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append one ``listen`` (nginx: ngx_http_core_module, listen)."""
    return (*(old or ()), parse_listen(args))


def set_server_name(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, ...]:
    """Append names of ``server_name`` (nginx: ngx_http_core_module, server_name).

    Raises:
        ConfigValueError: ``invalid server name or wildcard "a*b"``.
    """
    names = list(old or ())
    for name in args:
        if not name.startswith("~"):
            name = name.lower()
            stars = name.count("*")
            ok = stars == 0 or (stars == 1 and (name.startswith("*.") or name.endswith(".*")))
            if name == "*":
                raise ConfigValueError('server name "*" is invalid')
            if not ok or name == ".":
                raise ConfigValueError(f'invalid server name or wildcard "{name}"')
        names.append(name)
    return tuple(names)


def set_proxy_pass(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
    """``proxy_pass URL`` (nginx: ngx_http_proxy_module, proxy_pass).

    A URL with variables is compiled to a template and parsed per request
    (pyngx.proxy.plan.ProxyPlan); as in nginx it is not checked here.

    Raises:
        ConfigValueError: invalid URL.
    """
    from pyngx.config.values import ProxyPass

    if "$" in args[0]:  # nginx: ngx_http_script_variables_count counts "$"
        scheme = "https" if args[0][:8].lower() == "https://" else "http"
        return ProxyPass(scheme, "", 0, None, False, args[0], template=Template(args[0], scope.captures))
    return parse_proxy_pass(args[0])


def set_proxy_set_header(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[tuple[str, Template], ...]:
    """Append ``proxy_set_header field value`` (ngx_http_proxy_module)."""
    return (*(old or ()), (args[0], Template(args[1], scope.captures)))


_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def set_return(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
    """``return code [text]; return code URL; return URL;`` (ngx_http_rewrite_module).

    Returns:
        The level's script with the ``return`` appended (pyngx.rewrite.ReturnOp).

    Raises:
        ConfigValueError: ``invalid return code "X"``.
    """
    from pyngx.config.model import Return
    from pyngx.rewrite import ReturnOp

    first = args[0]
    if len(args) == 1 and not first.isdigit():
        if not first.startswith(("http://", "https://", "$scheme")):
            raise ConfigValueError(f'invalid return code "{first}"')
        ret = Return(302, Template(first, scope.captures))
    else:
        if not is_status(first, 0, 999):
            raise ConfigValueError(f'invalid return code "{first}"')
        ret = Return(int(first), Template(args[1], scope.captures) if len(args) > 1 else None)
    return (*(old or ()), ReturnOp(ret))


def set_access_log(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """``access_log path [format]`` / ``access_log off`` (ngx_http_log_module).

    Raises:
        ConfigValueError: ``unknown log format "X"``; buffer=, gzip, flush=, if= (not supported).
    """
    from pyngx.config.model import AccessLog

    if args[0] == "off":
        if len(args) > 1:
            raise ConfigValueError('invalid parameter "%s"' % args[1])
        return ()
    fmt = args[1] if len(args) > 1 else "combined"
    found = scope.log_format(fmt)
    if found is None:
        raise ConfigValueError(f'unknown log format "{fmt}"')
    for extra in args[2:]:
        raise ConfigValueError(f'the "{extra}" parameter of "access_log" is not supported by pyngx')
    text, escape = found
    return (*(old or ()), AccessLog(args[0], fmt, Template(text), escape))


_ESCAPES = ("default", "json", "none")


def set_log_format(args: tuple[str, ...], old: Any, scope: SetterScope) -> dict[str, tuple[str, str]]:
    """``log_format name [escape=default|json|none] string ...`` (ngx_http_log_module).

    Raises:
        ConfigValueError: ``duplicate "log_format" name "X"``, ``unknown log format escaping "X"``.
    """
    formats = dict(old or {})
    name, rest = args[0], list(args[1:])
    escape = "default"
    if rest and rest[0].startswith("escape="):
        escape = rest.pop(0)[7:]
        if escape not in _ESCAPES:
            raise ConfigValueError(f'unknown log format escaping "{escape}"')
    if not rest:
        raise ConfigValueError('invalid number of arguments in "log_format" directive')
    # Only nginx's own "combined" is reserved; a user's format may replace pyngx's built-in "json".
    if name in formats or name == "combined":
        raise ConfigValueError(f'duplicate "log_format" name "{name}"')
    text = "".join(rest)
    Template(text)  # unknown variables fail here, at load time
    formats[name] = (text, escape)
    return formats


_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


def set_error_log(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
    """``error_log file [level]`` (ngx_core_module). "stderr" is allowed.

    Raises:
        ConfigValueError: ``invalid log level "X"``.
    """
    from pyngx.config.model import ErrorLog

    level = args[1] if len(args) > 1 else "error"
    if level not in _LEVELS:
        raise ConfigValueError(f'invalid log level "{level}"')
    return ErrorLog(args[0], level)


def set_worker_processes(args: tuple[str, ...], old: Any, scope: SetterScope) -> int:
    """``worker_processes number | auto`` (ngx_core_module)."""
    if args[0] == "auto":
        return os.cpu_count() or 1
    if not args[0].isdigit():
        raise ConfigValueError('"worker_processes" directive invalid value')
    # nginx accepts 0 (a master that serves nothing); pyngx serves with one process.
    return max(int(args[0]), 1)


def set_http_version(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
    """``proxy_http_version 1.0 | 1.1``."""
    if args[0] not in ("1.0", "1.1"):
        raise ConfigValueError(f'invalid value "{args[0]}"')
    return args[0]


def set_server_tokens(args: tuple[str, ...], old: Any, scope: SetterScope) -> bool:
    """``server_tokens on | off | build`` ("build" shows the version, as "on")."""
    if args[0] not in ("on", "off", "build"):
        raise ConfigValueError(f'invalid value "{args[0]}"')
    return args[0] != "off"


def set_worker_connections(args: tuple[str, ...], old: Any, scope: SetterScope) -> int:
    """``worker_connections number`` (ngx_core_module, events)."""
    if not args[0].isdigit():
        raise ConfigValueError(f'invalid number "{args[0]}"')
    return int(args[0])


_NEXT_UPSTREAM = frozenset({"error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
                            "http_403", "http_404", "http_429", "non_idempotent", "off", "denied"})


def set_next_upstream(args: tuple[str, ...], old: Any, scope: SetterScope) -> frozenset[str]:
    """``proxy_next_upstream cond ...`` (ngx_http_proxy_module); ``off`` gives an empty set.

    Raises:
        ConfigValueError: ``invalid value "X"``.
    """
    for a in args:
        if a not in _NEXT_UPSTREAM:
            raise ConfigValueError(f'invalid value "{a}"')
    if "off" in args:
        return frozenset()
    return frozenset(args)


def set_upstream_server(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append a ``server`` line to an upstream (ngx_http_upstream_module)."""
    return (*(old or ()), parse_upstream_server(args))


def set_method(name: str) -> Setter:
    """Setter for a balancing method without arguments (least_conn, ip_hash)."""
    return lambda args, old, scope: (name, None, False, False)


def set_hash(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, Template, bool, bool]:
    """``hash key [consistent]``.

    Raises:
        ConfigValueError: ``invalid parameter "X"``.
    """
    if len(args) == 2 and args[1] != "consistent":
        raise ConfigValueError(f'invalid parameter "{args[1]}"')
    return ("hash", Template(args[0]), len(args) == 2, False)


def set_random(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, None, bool, bool]:
    """``random [two [least_conn]]``.

    Raises:
        ConfigValueError: ``invalid parameter "X"``.
    """
    if args and args[0] != "two":
        raise ConfigValueError(f'invalid parameter "{args[0]}"')
    if len(args) == 2 and args[1] != "least_conn":
        raise ConfigValueError(f'invalid parameter "{args[1]}"')
    return ("random", None, False, bool(args))


# --- ssl setters -- nginx: ngx_http_ssl_module --------------------------------------


def set_ssl_file(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
    """``NAME file`` for a file read after the build (pyngx.tls): path and place."""
    from pyngx.config.model import FileRef

    return FileRef(args[0], *scope.where)


def set_ssl_files(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append one ``ssl_certificate`` / ``ssl_certificate_key`` (pairs of several key types)."""
    return (*(old or ()), set_ssl_file(args, old, scope))


_SSL_PROTOCOLS = {p.lower(): p for p in ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")}


def set_ssl_protocols(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, ...]:
    """``ssl_protocols [SSLv2] [SSLv3] [TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3]`` (case-insensitive).

    Raises:
        ConfigValueError: ``invalid value "X"`` (nginx: ngx_conf_set_bitmask_slot).
    """
    for a in args:
        if a.lower() not in _SSL_PROTOCOLS:
            raise ConfigValueError(f'invalid value "{a}"')
    return tuple(dict.fromkeys(_SSL_PROTOCOLS[a.lower()] for a in args))


def set_ssl_ciphers(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
    """``ssl_ciphers ciphers``, checked against this OpenSSL now, as nginx checks at load.

    Raises:
        ConfigValueError: ``SSL_CTX_set_cipher_list("X") failed (SSL: no cipher match)``.
    """
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(args[0])
    except ssl.SSLError:
        raise ConfigValueError(f'SSL_CTX_set_cipher_list("{args[0]}") failed (SSL: no cipher match)') from None
    return args[0]


def set_ssl_session_cache(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, ...]:
    """``ssl_session_cache off | none | [builtin[:size]] [shared:name:size]``.

    Raises:
        ConfigValueError: ``invalid session cache "X"``, ``session cache "NAME" is too small``.

    Source: nginx src/http/modules/ngx_http_ssl_module.c, ngx_http_ssl_session_cache.
    """
    for a in args:
        if a in ("off", "none", "builtin") or (a.startswith("builtin:") and a[8:].isdigit()):
            continue
        name, sep, size = a[7:].partition(":")
        if not a.startswith("shared:") or not name or not sep:
            raise ConfigValueError(f'invalid session cache "{a}"')
        try:
            n = parse_size(size, "ssl_session_cache")
        except ConfigValueError:
            raise ConfigValueError(f'invalid session cache "{a}"') from None
        if n < 8 * 4096:  # nginx: 8 memory pages
            raise ConfigValueError(f'session cache "{name}" is too small')
    return tuple(args)


def set_ssl_verify_client(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
    """``ssl_verify_client on | off | optional | optional_no_ca``.

    Raises:
        ConfigValueError: ``invalid value "X"``; optional_no_ca (not supported by pyngx).
    """
    if args[0] == "optional_no_ca":
        raise ConfigValueError('"ssl_verify_client optional_no_ca" is not supported by pyngx')
    if args[0] not in ("on", "off", "optional"):
        raise ConfigValueError(f'invalid value "{args[0]}"')
    return args[0]


# --- proxy header/body setters -- nginx: ngx_http_proxy_module, ngx_http_headers_module ---


def set_add_header(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``add_header name value [always]`` (ngx_http_headers_module).

    Raises:
        ConfigValueError: ``invalid parameter "X"`` for a third word other than "always".
    """
    from pyngx.config.model import AddHeader

    if len(args) == 3 and args[2] != "always":
        raise ConfigValueError(f'invalid parameter "{args[2]}"')
    return (*(old or ()), AddHeader(args[0], Template(args[1], scope.captures), len(args) == 3))


def set_field_name(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[str, ...]:
    """Append a header field name, lower-cased (proxy_hide_header, proxy_pass_header)."""
    return (*(old or ()), args[0].lower())


def set_template(args: tuple[str, ...], old: Any, scope: SetterScope) -> Template:
    """Setter for ``NAME value`` where the value may hold variables."""
    return Template(args[0], scope.captures)


def _rewrite_rule(pattern: str, replacement: str, scope: SetterScope, domain: bool = False) -> Any:
    """A RewriteRule: ``~regex`` / ``~*regex`` (caseless), else a literal
    pattern that may hold variables. ``domain`` gives proxy_cookie_domain's
    rules: a regex is always caseless and a leading "." is dropped from a
    literal pattern and its replacement.

    Raises:
        ConfigValueError: ``pcre2_compile() failed: ...``; unknown variable.

    Source: nginx src/http/modules/ngx_http_proxy_module.c,
    ngx_http_proxy_redirect, ngx_http_proxy_cookie_domain, ngx_http_proxy_cookie_path.
    """
    from pyngx.config.model import RewriteRule
    from pyngx.config.regex import compile_regex

    if pattern.startswith("~"):
        caseless = domain or pattern.startswith("~*")
        source = pattern[1:] if domain or not caseless else pattern[2:]
        regex = compile_regex(source, caseless)
        return RewriteRule(regex, None, Template(replacement, scope.captures | frozenset(regex.groupindex)))
    if domain:
        pattern = pattern[1:] if pattern.startswith(".") else pattern
        replacement = replacement[1:] if replacement.startswith(".") else replacement
    return RewriteRule(None, Template(pattern, scope.captures), Template(replacement, scope.captures))


def set_proxy_redirect(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """``proxy_redirect default | off | redirect replacement`` (ngx_http_proxy_module).

    ``default`` becomes the rule nginx derives from this location's
    proxy_pass: ``URL LOCATION`` when the URL has a URI part, else ``URL/ /``.

    Returns:
        The rules so far; () for off.

    Raises:
        ConfigValueError: ``invalid parameter "X"``, ``"proxy_redirect"
            directive is duplicate`` (off with other rules), and nginx's
            messages for a ``default`` before proxy_pass or with variables.
    """
    from pyngx.config.model import RewriteRule

    duplicate = ConfigValueError('"proxy_redirect" directive is duplicate')
    if len(args) == 1 and args[0] == "off":
        if old is not None:
            raise duplicate
        return ()
    if len(args) == 1 and args[0] != "default":
        raise ConfigValueError(f'invalid parameter "{args[0]}"')
    if old == ():
        raise duplicate
    if len(args) == 2:
        return (*(old or ()), _rewrite_rule(args[0], args[1], scope))
    pp = scope.values.get("proxy_pass")
    if pp is not None and pp.template is not None:
        raise ConfigValueError('"proxy_redirect default" cannot be used with "proxy_pass" directive with variables')
    if pp is None:
        raise ConfigValueError('"proxy_redirect default" should be placed after the "proxy_pass" directive')
    pattern, replacement = (pp.url, scope.name) if pp.uri is not None else (pp.url + "/", "/")
    return (*(old or ()), RewriteRule(None, Template(pattern), Template(replacement)))


def set_proxy_cookie(name: str) -> Setter:
    """Setter for ``proxy_cookie_domain`` / ``proxy_cookie_path``: ``off | pattern replacement``.

    Raises:
        ConfigValueError: ``invalid parameter "X"``, ``"NAME" directive is duplicate``.
    """

    def setter(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
        if len(args) == 1:
            if args[0] != "off":
                raise ConfigValueError(f'invalid parameter "{args[0]}"')
            if old is not None:
                raise ConfigValueError(f'"{name}" directive is duplicate')
            return ()
        if old == ():
            raise ConfigValueError(f'"{name}" directive is duplicate')
        return (*(old or ()), _rewrite_rule(args[0], args[1], scope, domain=name == "proxy_cookie_domain"))

    return setter


#: proxy_ignore_headers values, lower-cased (nginx: ngx_http_upstream_ignore_headers_masks).
IGNORE_HEADERS = frozenset({"x-accel-redirect", "x-accel-expires", "x-accel-limit-rate", "x-accel-buffering",
                            "x-accel-charset", "expires", "cache-control", "set-cookie", "vary"})


def set_ignore_headers(args: tuple[str, ...], old: Any, scope: SetterScope) -> frozenset[str]:
    """``proxy_ignore_headers field ...``, case-insensitive; repeats add up (a bitmask in nginx).

    Raises:
        ConfigValueError: ``invalid value "X"``.
    """
    for a in args:
        if a.lower() not in IGNORE_HEADERS:
            raise ConfigValueError(f'invalid value "{a}"')
    return frozenset(old or ()) | {a.lower() for a in args}


def set_size(name: str) -> Setter:
    """Setter for ``NAME size;`` (int bytes)."""
    return lambda args, old, scope: parse_size(args[0], name)


def set_keepalive_timeout(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[float, float | None]:
    """``keepalive_timeout timeout [header_timeout]`` (ngx_http_core_module)."""
    header = parse_time(args[1], "keepalive_timeout", is_sec=True) if len(args) > 1 else None
    return (parse_time(args[0], "keepalive_timeout"), header)


# --- rewrite module setters -- nginx: ngx_http_rewrite_module, error_page, access, realip ---
# Each script directive appends its op to the level's script (pyngx.rewrite).


def set_rewrite(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``rewrite regex replacement [flag]`` to the script."""
    from pyngx.rewrite import parse_rewrite

    return (*(old or ()), parse_rewrite(args, scope.captures))


def set_set(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``set $variable value`` to the script."""
    from pyngx.rewrite import parse_set

    return (*(old or ()), parse_set(args, scope.captures))


def set_break(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``break`` to the script."""
    from pyngx.rewrite import BreakOp

    return (*(old or ()), BreakOp())


def set_error_page(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``error_page code ... [=[response]] uri`` (one ErrorPage per code)."""
    from pyngx.special import parse_error_page

    return (*(old or ()), *parse_error_page(args, scope.captures))


def set_access(allow: bool) -> Setter:
    """Setter for ``allow`` / ``deny``: one rule appended, in order (ngx_http_access_module)."""
    from pyngx.access import parse_rule

    return lambda args, old, scope: (*(old or ()), parse_rule(allow, args[0]))


def set_real_ip_from(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Any, ...]:
    """Append ``set_real_ip_from address | CIDR | unix:`` (ngx_http_realip_module)."""
    from pyngx.access import parse_trusted

    return (*(old or ()), *parse_trusted(args[0]))


def set_real_ip_header(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
    """``real_ip_header field | X-Real-IP | X-Forwarded-For | proxy_protocol``.

    Raises:
        ConfigValueError: proxy_protocol (pyngx does not read the PROXY protocol).
    """
    if args[0] == "proxy_protocol":
        raise ConfigValueError('"real_ip_header proxy_protocol" is not supported by pyngx')
    return args[0]


# --- static file setters -- nginx: ngx_http_core_module, ngx_http_index_module, ngx_http_autoindex_module ---


def set_root(alias: bool) -> Setter:
    """Setter for ``root path`` / ``alias path`` (one slot, as in nginx).

    Raises:
        ConfigValueError: root and alias in one block (``"alias" directive is
            duplicate, "root" directive was specified earlier``), alias in a
            named location, $document_root or $realpath_root in the path.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_root.
    """
    from pyngx.config.model import DocRoot

    name = "alias" if alias else "root"

    def setter(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
        if old is not None:  # the other one of the two: the same one is "is duplicate" already
            other = "alias" if old.alias else "root"
            raise ConfigValueError(f'"{name}" directive is duplicate, "{other}" directive was specified earlier')
        if alias and scope.modifier == "@":
            raise ConfigValueError('the "alias" directive cannot be used inside the named location')
        path = args[0]
        for var in ("document_root", "realpath_root"):
            if f"${var}" in path or f"${{{var}}}" in path:
                raise ConfigValueError(f'the ${var} variable cannot be used in the "{name}" directive')
        strip = 0
        if alias:
            strip = -1 if scope.modifier in ("~", "~*") else len(scope.name)
        return DocRoot(Template(path, scope.captures), alias, strip)

    return setter


def set_index(args: tuple[str, ...], old: Any, scope: SetterScope) -> tuple[Template, ...]:
    """Append ``index file ...`` names (ngx_http_index_module; repeats add up).

    Raises:
        ConfigValueError: an empty name (nginx's message names the first argument).
    """
    if any(a == "" for a in args):
        raise ConfigValueError(f'index "{args[0]}" in "index" directive is invalid')
    return (*(old or ()), *(Template(a, scope.captures) for a in args))


def set_try_files(args: tuple[str, ...], old: Any, scope: SetterScope) -> Any:
    """``try_files file ... uri; try_files file ... =code;`` (ngx_http_core_module).

    Raises:
        ConfigValueError: ``invalid code "=X"``.
    """
    from pyngx.config.model import TryFiles

    files = []
    for a in args[:-1]:
        test_dir = a.endswith("/")
        files.append((Template(a[:-1] if test_dir else a, scope.captures), test_dir))
    last, code = args[-1], None
    if last.startswith("=") and "$" not in last:
        if not last[1:].isdigit() or int(last[1:]) > 999:
            raise ConfigValueError(f'invalid code "{last}"')
        code = int(last[1:]) or None  # nginx: "=0" is a URI
    return TryFiles(tuple(files), Template(last, scope.captures), code)


def set_enum(values: tuple[str, ...]) -> Setter:
    """Setter for ``NAME value`` where the value is one of ``values``.

    Raises:
        ConfigValueError: ``invalid value "X"`` (nginx: ngx_conf_set_enum_slot).
    """

    def setter(args: tuple[str, ...], old: Any, scope: SetterScope) -> str:
        if args[0] not in values:
            raise ConfigValueError(f'invalid value "{args[0]}"')
        return args[0]

    return setter


def _spec(name: str, contexts: frozenset[str] | set[str], arity: tuple[int, int | None], syntax: str, **kw: Any) -> DirectiveSpec:
    return DirectiveSpec(name, frozenset(contexts), arity, syntax, **kw)


# --- the table -------------------------------------------------------------------

_ROWS: list[DirectiveSpec] = [
    # core (main context) -- nginx: ngx_core_module
    _spec("worker_processes", {MAIN}, (1, 1), "worker_processes number | auto;", default=1, default_doc="1",
          setter=set_worker_processes, level=MAIN, source="ngx_core_module"),
    _spec("error_log", {MAIN, HTTP, SERVER, LOCATION}, (1, 2), "error_log file [level];", default=None,
          default_doc="stderr error", setter=set_error_log, level=MAIN, multi=True, source="ngx_core_module",
          differs="Default is stderr, not logs/error.log. Only the main-level error_log is used."),
    _spec("pid", {MAIN}, (1, 1), "pid file;", default=None, default_doc="none", setter=set_str, level=MAIN,
          source="ngx_core_module", differs="No pid file unless configured (nginx: logs/nginx.pid)."),
    _spec("daemon", {MAIN}, (1, 1), "daemon on | off;", default=False, default_doc="off",
          setter=set_flag("daemon"), level=MAIN, source="ngx_core_module",
          differs="Default off: pyngx runs in the foreground (systemd Type=notify); nginx defaults to on."),
    _spec("worker_shutdown_timeout", {MAIN}, (1, 1), "worker_shutdown_timeout time;", default=None,
          default_doc="—", setter=set_time("worker_shutdown_timeout"), level=MAIN, source="ngx_core_module"),
    _spec("events", {MAIN}, (0, 0), "events { ... }", block=True, level=MAIN, source="ngx_core_module"),
    _spec("worker_connections", {EVENTS}, (1, 1), "worker_connections number;", default=512, default_doc="512",
          setter=set_worker_connections, level=EVENTS, source="ngx_core_module",
          differs="Accepted and stored; not enforced as a connection limit in 0.1."),
    # http core -- nginx: ngx_http_core_module
    _spec("http", {MAIN}, (0, 0), "http { ... }", block=True, level=MAIN),
    _spec("server", {HTTP}, (0, 0), "server { ... }", block=True, multi=True, level=MAIN),
    _spec("location", {SERVER, LOCATION}, (1, 2), "location [ = | ~ | ~* | ^~ ] uri { ... } | location @name { ... }",
          block=True, multi=True, level=MAIN),
    _spec("listen", {SERVER}, (1, None), "listen address[:port] [default_server] [ssl] [http2] [backlog=number] [reuseport] [ipv6only=on|off];",
          default=None, default_doc="*:80 | *:8000", setter=set_listen, multi=True, level=SERVER),
    _spec("server_name", {SERVER}, (1, None), "server_name name ...;", default=("",), default_doc='""',
          setter=set_server_name, multi=True, level=SERVER),
    _spec("default_type", HSL, (1, 1), "default_type mime-type;", default="text/plain", default_doc="text/plain",
          setter=set_str),
    _spec("server_tokens", HSL, (1, 1), "server_tokens on | off | build;", default=True, default_doc="on",
          setter=set_server_tokens),
    # log -- nginx: ngx_http_log_module
    _spec("access_log", HSL | {LIF}, (1, None), "access_log path [format] | off;", default=None,
          default_doc="stdout combined", setter=set_access_log, multi=True, source="ngx_http_log_module",
          differs="Default target is stdout, not logs/access.log; buffer=, gzip, flush=, if= are not supported."),
    _spec("log_format", {HTTP}, (2, None), "log_format name [escape=default|json|none] string ...;",
          default=None, default_doc="combined \"...\"", setter=set_log_format, multi=True, level=HTTP,
          source="ngx_http_log_module",
          differs='A built-in "json" format (escape=json) is also defined.'),
    # ssl -- nginx: ngx_http_ssl_module (values on ServerConf.ssl, merged http -> server; see pyngx.tls)
    _spec("ssl_certificate", {HTTP, SERVER}, (1, 1), "ssl_certificate file;", default=(), setter=set_ssl_files,
          multi=True, level=SERVER, source="ngx_http_ssl_module",
          differs="Variables and data: values in the file name are not supported."),
    _spec("ssl_certificate_key", {HTTP, SERVER}, (1, 1), "ssl_certificate_key file;", default=(),
          setter=set_ssl_files, multi=True, level=SERVER, source="ngx_http_ssl_module",
          differs="Variables, data: and engine: values are not supported."),
    _spec("ssl_password_file", {HTTP, SERVER}, (1, 1), "ssl_password_file file;", default=None,
          setter=set_ssl_file, level=SERVER, source="ngx_http_ssl_module"),
    _spec("ssl_protocols", {HTTP, SERVER}, (1, None), "ssl_protocols [SSLv2] [SSLv3] [TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3];",
          default=("TLSv1.2", "TLSv1.3"), default_doc="TLSv1.2 TLSv1.3", setter=set_ssl_protocols, level=SERVER,
          source="ngx_http_ssl_module"),
    _spec("ssl_ciphers", {HTTP, SERVER}, (1, 1), "ssl_ciphers ciphers;", default="HIGH:!aNULL:!MD5",
          default_doc="HIGH:!aNULL:!MD5", setter=set_ssl_ciphers, level=SERVER, source="ngx_http_ssl_module"),
    _spec("ssl_prefer_server_ciphers", {HTTP, SERVER}, (1, 1), "ssl_prefer_server_ciphers on | off;", default=False,
          default_doc="off", setter=set_flag("ssl_prefer_server_ciphers"), level=SERVER, source="ngx_http_ssl_module"),
    _spec("ssl_session_cache", {HTTP, SERVER}, (1, None), "ssl_session_cache off | none | [builtin[:size]] [shared:name:size];",
          default=("none",), default_doc="none;", setter=set_ssl_session_cache, level=SERVER,
          source="ngx_http_ssl_module",
          differs="Accepted and checked as nginx does, but every TLS listener uses OpenSSL's built-in cache of "
          "its own process (20480 sessions) and session tickets, which Python's ssl module cannot change: "
          "off and none do not stop resumption, and shared: caches are not shared between worker processes."),
    _spec("ssl_session_timeout", {HTTP, SERVER}, (1, 1), "ssl_session_timeout time;", default=300.0,
          default_doc="5m", setter=lambda args, old, scope: parse_time(args[0], "ssl_session_timeout", is_sec=True),
          level=SERVER, source="ngx_http_ssl_module",
          differs="Accepted and checked; sessions live for OpenSSL's default of 300 seconds (nginx's default, 5m) "
          "whatever the value, as Python's ssl module cannot set it."),
    _spec("ssl_client_certificate", {HTTP, SERVER}, (1, 1), "ssl_client_certificate file;", default=None,
          setter=set_ssl_file, level=SERVER, source="ngx_http_ssl_module",
          differs="The names of these CAs are not sent to clients in the certificate request."),
    _spec("ssl_verify_client", {HTTP, SERVER}, (1, 1), "ssl_verify_client on | off | optional | optional_no_ca;",
          default="off", default_doc="off", setter=set_ssl_verify_client, level=SERVER, source="ngx_http_ssl_module",
          differs="optional_no_ca is not supported. A client certificate that fails verification ends the TLS "
          "handshake (nginx completes it and answers 400 \"The SSL certificate error\"). When any server of a "
          "listen address verifies clients, every server of that address asks for a certificate."),
    _spec("http2", {HTTP, SERVER}, (1, 1), "http2 on | off;", default=False, default_doc="off",
          setter=set_flag("http2"), level=SERVER, source="ngx_http_v2_module",
          differs="The http2_* tuning directives are not supported; a connection takes up to 128 concurrent "
          "streams (nginx's default)."),
    # proxy -- nginx: ngx_http_proxy_module
    _spec("proxy_pass", {LOCATION, LIF}, (1, 1), "proxy_pass URL;", default=None, setter=set_proxy_pass,
          inherit=False, source="ngx_http_proxy_module"),
    _spec("proxy_set_header", HSL, (2, 2), "proxy_set_header field value;", default=(),
          default_doc="Host $proxy_host; Connection close;", setter=set_proxy_set_header, multi=True,
          source="ngx_http_proxy_module",
          differs="Without proxy_http_version 1.0, pyngx keeps upstream connections alive instead of sending Connection: close."),
    _spec("proxy_connect_timeout", HSL, (1, 1), "proxy_connect_timeout time;", default=60.0, default_doc="60s",
          setter=set_time("proxy_connect_timeout"), source="ngx_http_proxy_module"),
    _spec("proxy_read_timeout", HSL, (1, 1), "proxy_read_timeout time;", default=60.0, default_doc="60s",
          setter=set_time("proxy_read_timeout"), source="ngx_http_proxy_module"),
    _spec("proxy_send_timeout", HSL, (1, 1), "proxy_send_timeout time;", default=60.0, default_doc="60s",
          setter=set_time("proxy_send_timeout"), source="ngx_http_proxy_module",
          differs="Timed per chunk of a streamed request body; a body of at most 64k, read first, goes up in "
          "one write that is not timed."),
    _spec("proxy_http_version", HSL, (1, 1), "proxy_http_version 1.0 | 1.1;", default="1.1", default_doc="1.0",
          setter=set_http_version, source="ngx_http_proxy_module",
          differs="Default 1.1 with pooled keep-alive connections (nginx: 1.0, Connection: close)."),
    _spec("proxy_next_upstream", HSL, (1, None),
          "proxy_next_upstream error | timeout | invalid_header | http_500 | http_502 | http_503 | http_504 | "
          "http_403 | http_404 | http_429 | non_idempotent | off ...;",
          default=frozenset({"error", "timeout"}), default_doc="error timeout", setter=set_next_upstream,
          source="ngx_http_proxy_module",
          differs="A request whose body has begun streaming upstream is not passed to another server "
          "(bodies up to 64k are buffered and can be)."),
    _spec("proxy_next_upstream_tries", HSL, (1, 1), "proxy_next_upstream_tries number;", default=0,
          default_doc="0", setter=set_num("proxy_next_upstream_tries"), source="ngx_http_proxy_module"),
    _spec("proxy_next_upstream_timeout", HSL, (1, 1), "proxy_next_upstream_timeout time;", default=0.0,
          default_doc="0", setter=set_time("proxy_next_upstream_timeout"), source="ngx_http_proxy_module"),
    # -- rewrite module rows (rewrite, if, set, break, map, error_page) --
    # rewrite, return, set, break and if make one script per level, run in
    # file order (store "script"; never inherited: nginx's codes per level).
    _spec("rewrite", SCRIPT, (2, 3), "rewrite regex replacement [flag];", default=(), setter=set_rewrite,
          multi=True, inherit=False, store="script", source="ngx_http_rewrite_module",
          differs="The regex is Python's re with PCRE spellings translated (see location)."),
    _spec("return", SCRIPT, (1, 2), "return code [text]; return code URL; return URL;", default=(),
          setter=set_return, multi=True, inherit=False, store="script", source="ngx_http_rewrite_module"),
    _spec("set", SCRIPT, (2, 2), "set $variable value;", default=(), setter=set_set, multi=True, inherit=False,
          store="script", source="ngx_http_rewrite_module"),
    _spec("break", SCRIPT, (0, 0), "break;", default=(), setter=set_break, multi=True, inherit=False,
          store="script", source="ngx_http_rewrite_module"),
    _spec("if", {SERVER, LOCATION}, (1, None), "if (condition) { ... }", block=True, multi=True, level=MAIN,
          source="ngx_http_rewrite_module"),
    _spec("rewrite_log", {HTTP, SERVER, LOCATION, SIF, LIF}, (1, 1), "rewrite_log on | off;", default=False,
          default_doc="off", setter=set_flag("rewrite_log"), source="ngx_http_rewrite_module",
          differs="The messages go to the error log at notice level as structured events (event rewrite)."),
    _spec("uninitialized_variable_warn", {HTTP, SERVER, LOCATION, SIF, LIF}, (1, 1),
          "uninitialized_variable_warn on | off;", default=True, default_doc="on",
          setter=set_flag("uninitialized_variable_warn"), source="ngx_http_rewrite_module",
          differs="Accepted; pyngx logs no warning for an uninitialized variable (its value is empty)."),
    _spec("map", {HTTP}, (2, 2), "map string $variable { ... }", block=True, multi=True, level=MAIN,
          source="ngx_http_map_module",
          differs="Regexes are Python's re with PCRE spellings translated; map_hash_* sizes are not needed."),
    _spec("map_hash_max_size", {HTTP}, (1, 1), "map_hash_max_size size;", default=2048, default_doc="2048",
          setter=set_num("map_hash_max_size"), level=HTTP, source="ngx_http_map_module",
          differs="Accepted and checked; pyngx's maps need no hash sizing."),
    _spec("map_hash_bucket_size", {HTTP}, (1, 1), "map_hash_bucket_size size;", default=64,
          default_doc="32|64|128", setter=set_num("map_hash_bucket_size"), level=HTTP,
          source="ngx_http_map_module", differs="Accepted and checked; pyngx's maps need no hash sizing."),
    # core -- nginx: ngx_http_core_module
    _spec("error_page", {HTTP, SERVER, LOCATION, LIF}, (2, None), "error_page code ... [=[response]] uri;",
          default=(), setter=set_error_page, multi=True),
    _spec("recursive_error_pages", HSL, (1, 1), "recursive_error_pages on | off;", default=False,
          default_doc="off", setter=set_flag("recursive_error_pages")),
    _spec("internal", {LOCATION}, (0, 0), "internal;", default=False, setter=lambda args, old, scope: True),
    # access -- nginx: ngx_http_access_module (allow and deny make one ordered list)
    _spec("allow", HSL, (1, 1), "allow address | CIDR | unix: | all;", default=(), setter=set_access(True),
          multi=True, store="access", source="ngx_http_access_module",
          differs='An address with bits set below its mask is accepted without the "low address bits" warning.'),
    _spec("deny", HSL, (1, 1), "deny address | CIDR | unix: | all;", default=(), setter=set_access(False),
          multi=True, store="access", source="ngx_http_access_module",
          differs='An address with bits set below its mask is accepted without the "low address bits" warning.'),
    # realip -- nginx: ngx_http_realip_module
    _spec("set_real_ip_from", HSL, (1, 1), "set_real_ip_from address | CIDR | unix:;", default=(),
          setter=set_real_ip_from, multi=True, source="ngx_http_realip_module"),
    _spec("real_ip_header", HSL, (1, 1), "real_ip_header field | X-Real-IP | X-Forwarded-For | proxy_protocol;",
          default="X-Real-IP", default_doc="X-Real-IP", setter=set_real_ip_header, source="ngx_http_realip_module",
          differs="proxy_protocol is not supported (pyngx does not read the PROXY protocol)."),
    _spec("real_ip_recursive", HSL, (1, 1), "real_ip_recursive on | off;", default=False, default_doc="off",
          setter=set_flag("real_ip_recursive"), source="ngx_http_realip_module"),
    # -- proxy header/body rows (add_header, proxy_hide_header, proxy_redirect, client_max_body_size, ...) --
    _spec("add_header", HSL | {LIF}, (2, 3), "add_header name value [always];", default=(), setter=set_add_header,
          multi=True, source="ngx_http_headers_module"),
    _spec("proxy_hide_header", HSL, (1, 1), "proxy_hide_header field;", default=(), setter=set_field_name,
          multi=True, source="ngx_http_proxy_module"),
    _spec("proxy_pass_header", HSL, (1, 1), "proxy_pass_header field;", default=(), setter=set_field_name,
          multi=True, source="ngx_http_proxy_module"),
    _spec("proxy_redirect", HSL, (1, 2), "proxy_redirect default; proxy_redirect off; proxy_redirect redirect replacement;",
          default=None, default_doc="default", setter=set_proxy_redirect, multi=True, source="ngx_http_proxy_module"),
    _spec("proxy_cookie_domain", HSL, (1, 2), "proxy_cookie_domain off; proxy_cookie_domain domain replacement;",
          default=(), default_doc="off", setter=set_proxy_cookie("proxy_cookie_domain"), multi=True,
          source="ngx_http_proxy_module"),
    _spec("proxy_cookie_path", HSL, (1, 2), "proxy_cookie_path off; proxy_cookie_path path replacement;",
          default=(), default_doc="off", setter=set_proxy_cookie("proxy_cookie_path"), multi=True,
          source="ngx_http_proxy_module"),
    _spec("proxy_intercept_errors", HSL, (1, 1), "proxy_intercept_errors on | off;", default=False,
          default_doc="off", setter=set_flag("proxy_intercept_errors"), source="ngx_http_proxy_module"),
    _spec("proxy_ignore_headers", HSL, (1, None), "proxy_ignore_headers field ...;", default=frozenset(),
          setter=set_ignore_headers, multi=True, source="ngx_http_proxy_module",
          differs="Accepted and checked. pyngx has no cache, no X-Accel-Redirect internal redirects, no "
          "X-Accel-Limit-Rate and no charset conversion, so ignoring a field changes nothing; the X-Accel-* "
          "fields are still hidden from the client."),
    _spec("proxy_buffering", HSL, (1, 1), "proxy_buffering on | off;", default=True, default_doc="on",
          setter=set_flag("proxy_buffering"), source="ngx_http_proxy_module",
          differs="pyngx always passes the response on as it arrives, as nginx does with proxy_buffering off "
          "(so X-Accel-Buffering and text/event-stream need nothing). Flow control still applies: a slow "
          "client slows the upstream read instead of filling memory or temporary files."),
    _spec("proxy_request_buffering", HSL, (1, 1), "proxy_request_buffering on | off;", default=True,
          default_doc="on", setter=set_flag("proxy_request_buffering"), source="ngx_http_proxy_module",
          differs="Request bodies stream to the upstream as they arrive, as with off, except bodies of at "
          "most 64k with a Content-Length, which are read first so that another server can be tried with them."),
    _spec("proxy_pass_request_headers", HSL, (1, 1), "proxy_pass_request_headers on | off;", default=True,
          default_doc="on", setter=set_flag("proxy_pass_request_headers"), source="ngx_http_proxy_module"),
    _spec("proxy_pass_request_body", HSL, (1, 1), "proxy_pass_request_body on | off;", default=True,
          default_doc="on", setter=set_flag("proxy_pass_request_body"), source="ngx_http_proxy_module"),
    _spec("proxy_set_body", HSL, (1, 1), "proxy_set_body value;", default=None, setter=set_template,
          source="ngx_http_proxy_module"),
    _spec("proxy_method", HSL, (1, 1), "proxy_method method;", default=None, setter=set_template,
          source="ngx_http_proxy_module"),
    _spec("proxy_ssl_verify", HSL, (1, 1), "proxy_ssl_verify on | off;", default=False, default_doc="off",
          setter=set_flag("proxy_ssl_verify"), source="ngx_http_proxy_module",
          differs="With verification on, the name checked (proxy_ssl_name) is also sent as SNI, whatever "
          "proxy_ssl_server_name says: Python's ssl module ties the two."),
    _spec("proxy_ssl_server_name", HSL, (1, 1), "proxy_ssl_server_name on | off;", default=False,
          default_doc="off", setter=set_flag("proxy_ssl_server_name"), source="ngx_http_proxy_module"),
    _spec("proxy_ssl_name", HSL, (1, 1), "proxy_ssl_name name;", default=None, default_doc="$proxy_host",
          setter=set_template, source="ngx_http_proxy_module"),
    _spec("proxy_ssl_trusted_certificate", HSL, (1, 1), "proxy_ssl_trusted_certificate file;", default=None,
          setter=set_ssl_file, source="ngx_http_proxy_module"),
    _spec("proxy_ssl_verify_depth", HSL, (1, 1), "proxy_ssl_verify_depth number;", default=1, default_doc="1",
          setter=set_num("proxy_ssl_verify_depth"), source="ngx_http_proxy_module",
          differs="Accepted; Python's ssl module does not limit the chain depth."),
    _spec("client_max_body_size", HSL, (1, 1), "client_max_body_size size;", default=1024 * 1024,
          default_doc="1m", setter=set_size("client_max_body_size"),
          differs="A body without Content-Length (chunked) streams to the upstream as it arrives, so when it "
          "grows past the limit the upstream has seen part of it: pyngx then cuts the upstream request "
          "and answers 413."),
    _spec("client_body_timeout", HSL, (1, 1), "client_body_timeout time;", default=60.0, default_doc="60s",
          setter=set_time("client_body_timeout"),
          differs="Timed per read while the body streams to the upstream (nginx reads it before it "
          "connects), so on a timeout the upstream has seen part of it and its request is cut; the client's "
          "connection is closed unanswered with 408 in the log, as in nginx."),
    _spec("client_header_timeout", {HTTP, SERVER}, (1, 1), "client_header_timeout time;", default=60.0,
          default_doc="60s", setter=set_time("client_header_timeout"),
          differs="Accepted and checked, not used: Hypercorn gives a new connection keepalive_timeout "
          "(the http-level value) to send its request header."),
    _spec("keepalive_timeout", HSL, (1, 2), "keepalive_timeout timeout [header_timeout];", default=(75.0, None),
          default_doc="75s", setter=set_keepalive_timeout,
          differs="The http-level timeout is Hypercorn's keep_alive_timeout for every client connection; a "
          "server or location value only counts when it is 0 (the response then closes the connection). "
          "header_timeout gives responses a \"Keep-Alive: timeout=N\" field, as in nginx."),
    # -- static file rows (root, alias, index, try_files, autoindex, types, default_type) --
    # (default_type is with the http core rows above.) Served by pyngx.static.
    _spec("root", {HTTP, SERVER, LOCATION, LIF}, (1, 1), "root path;", default=DocRoot(Template("html")),
          default_doc="html", setter=set_root(alias=False), store="root",
          differs="A relative path (and the default, html) is taken relative to the main config file's "
          "directory (nginx: the -p prefix). Symbolic links are followed, as with nginx's default "
          "disable_symlinks off; a file name that a rewritten URI or a capture would take outside the root "
          "(a \"..\" segment) gets 404."),
    _spec("alias", {LOCATION}, (1, 1), "alias path;", default=DocRoot(Template("html")), setter=set_root(alias=True),
          store="root",
          differs="A relative path is taken relative to the main config file's directory. A file name that "
          "the URI would take outside the alias (the \"location /img { alias /data/img/; }\" and "
          "\"/img../x\" case, where nginx serves /data/x) gets 404."),
    _spec("index", HSL, (1, None), "index file ...;", default=(Template("index.html"),), default_doc="index.html",
          setter=set_index, multi=True, source="ngx_http_index_module",
          differs='No warning for an absolute name that is not the last ("only the last index ... should be '
          'absolute").'),
    _spec("try_files", {SERVER, LOCATION}, (2, None), "try_files file ... uri; try_files file ... =code;",
          default=None, setter=set_try_files, inherit=False),
    _spec("types", HSL, (0, 0), "types { ... }", block=True, multi=True, default=DEFAULT_TYPES,
          default_doc="{ text/html html, image/gif gif, image/jpeg jpg }",
          differs='"include mime.types" reads pyngx\'s copy of nginx\'s mime.types when the config\'s '
          "directory has none."),
    _spec("types_hash_max_size", HSL, (1, 1), "types_hash_max_size size;", default=1024, default_doc="1024",
          setter=set_num("types_hash_max_size"), level=HTTP,
          differs="Accepted and checked; pyngx's types need no hash sizing."),
    _spec("types_hash_bucket_size", HSL, (1, 1), "types_hash_bucket_size size;", default=64, default_doc="64",
          setter=set_num("types_hash_bucket_size"), level=HTTP,
          differs="Accepted and checked; pyngx's types need no hash sizing."),
    _spec("etag", HSL, (1, 1), "etag on | off;", default=True, default_doc="on", setter=set_flag("etag")),
    _spec("if_modified_since", HSL, (1, 1), "if_modified_since off | exact | before;", default="exact",
          default_doc="exact", setter=set_enum(("off", "exact", "before"))),
    _spec("max_ranges", HSL, (1, 1), "max_ranges number;", default=None, setter=set_num("max_ranges")),
    _spec("log_not_found", HSL, (1, 1), "log_not_found on | off;", default=True, default_doc="on",
          setter=set_flag("log_not_found")),
    _spec("sendfile", {HTTP, SERVER, LOCATION, LIF}, (1, 1), "sendfile on | off;", default=False,
          default_doc="off", setter=set_flag("sendfile"),
          differs="Accepted; files are read in chunks by a thread pool and written by the server, so that "
          "a slow disk never blocks the event loop, whatever the value."),
    _spec("autoindex", HSL, (1, 1), "autoindex on | off;", default=False, default_doc="off",
          setter=set_flag("autoindex"), source="ngx_http_autoindex_module",
          differs="The listing is read whole before the answer starts (nginx starts it first), so an error "
          "while reading the directory is a 500, not a cut answer."),
    _spec("autoindex_exact_size", HSL, (1, 1), "autoindex_exact_size on | off;", default=True, default_doc="on",
          setter=set_flag("autoindex_exact_size"), source="ngx_http_autoindex_module"),
    _spec("autoindex_format", HSL, (1, 1), "autoindex_format html | xml | json | jsonp;", default="html",
          default_doc="html", setter=set_enum(("html", "xml", "json", "jsonp")), source="ngx_http_autoindex_module"),
    _spec("autoindex_localtime", HSL, (1, 1), "autoindex_localtime on | off;", default=False, default_doc="off",
          setter=set_flag("autoindex_localtime"), source="ngx_http_autoindex_module"),
    # upstream -- nginx: ngx_http_upstream_module
    _spec("upstream", {HTTP}, (1, 1), "upstream name { ... }", block=True, multi=True, level=MAIN,
          source="ngx_http_upstream_module"),
]

_UPSTREAM_ROWS: list[DirectiveSpec] = [
    _spec("server", {UPSTREAM}, (1, None),
          "server address [weight=number] [max_fails=number] [fail_timeout=time] [backup] [down] [max_conns=number];",
          default=(), setter=set_upstream_server, multi=True, level=UPSTREAM, source="ngx_http_upstream_module",
          differs="Host names are resolved when the configuration is loaded or reloaded (no resolve parameter)."),
    _spec("least_conn", {UPSTREAM}, (0, 0), "least_conn;", default=None, setter=set_method("least_conn"),
          level=UPSTREAM, source="ngx_http_upstream_module", store="method"),
    _spec("ip_hash", {UPSTREAM}, (0, 0), "ip_hash;", default=None, setter=set_method("ip_hash"),
          level=UPSTREAM, source="ngx_http_upstream_module", store="method"),
    _spec("hash", {UPSTREAM}, (1, 2), "hash key [consistent];", default=None, setter=set_hash,
          level=UPSTREAM, source="ngx_http_upstream_module", store="method"),
    _spec("random", {UPSTREAM}, (0, 2), "random [two [least_conn]];", default=None, setter=set_random,
          level=UPSTREAM, source="ngx_http_upstream_module", store="method"),
    _spec("keepalive", {UPSTREAM}, (1, 1), "keepalive connections;", default=None,
          setter=set_num("keepalive"), level=UPSTREAM, source="ngx_http_upstream_module",
          differs="Upstream connections are always pooled; idle connections are not capped at the number."),
    _spec("keepalive_timeout", {UPSTREAM}, (1, 1), "keepalive_timeout timeout;", default=60.0,
          default_doc="60s", setter=set_time("keepalive_timeout"), level=UPSTREAM, source="ngx_http_upstream_module"),
    _spec("keepalive_requests", {UPSTREAM}, (1, 1), "keepalive_requests number;", default=1000,
          default_doc="1000", setter=set_num("keepalive_requests"), level=UPSTREAM,
          source="ngx_http_upstream_module",
          differs="Accepted; the upstream client does not close a connection after that many requests."),
    _spec("zone", {UPSTREAM}, (1, 2), "zone name [size];", default=None, setter=set_str, level=UPSTREAM,
          source="ngx_http_upstream_module",
          differs="Accepted; each worker keeps its own peer state (no shared memory)."),
]

#: name -> spec, for every directive pyngx supports (outside ``upstream``).
DIRECTIVES: dict[str, DirectiveSpec] = {row.name: row for row in _ROWS}

#: (context, name) -> spec for directives whose name means something else in
#: that context (nginx modules each have their own command table).
CONTEXT_DIRECTIVES: dict[tuple[str, str], DirectiveSpec] = {(UPSTREAM, row.name): row for row in _UPSTREAM_ROWS}

#: Directives whose values live on LocationConf (merged http -> server -> location).
LOC_FIELDS: tuple[DirectiveSpec, ...] = tuple(s for s in _ROWS if s.level == "loc")

#: Built-in log formats: name -> (format, escape) (nginx: ngx_http_log_module,
#: log_format; "json" is pyngx's).
LOG_FORMATS: dict[str, tuple[str, str]] = {
    "combined": ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent"', "default"),
    "json": ('{"time":"$time_iso8601","remote_addr":"$remote_addr","remote_user":"$remote_user",'
             '"request":"$request","status":$status,"body_bytes_sent":$body_bytes_sent,'
             '"request_time":$request_time,"http_referer":"$http_referer","http_user_agent":"$http_user_agent",'
             '"host":"$host","upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
             '"upstream_response_time":"$upstream_response_time"}', "json"),
}

#: nginx directives that pyngx knows but does not support yet.
NGINX_DIRECTIVES: frozenset[str] = frozenset(
    """
    user worker_rlimit_nofile worker_priority worker_cpu_affinity
    working_directory env load_module lock_file master_process pcre_jit thread_pool timer_resolution
    ssl_engine debug_points worker_rlimit_core google_perftools_profiles
    use multi_accept accept_mutex accept_mutex_delay debug_connection worker_aio_requests
    stream mail upstream geo split_clients include open_log_file_cache
    add_trailer
    expires
    client_body_buffer_size
    client_header_buffer_size large_client_header_buffers client_body_temp_path client_body_in_file_only
    client_body_in_single_buffer keepalive_requests keepalive_time keepalive_disable
    send_timeout sendfile_max_chunk tcp_nopush tcp_nodelay
    server_names_hash_max_size server_names_hash_bucket_size variables_hash_max_size variables_hash_bucket_size
    resolver resolver_timeout satisfy auth_basic auth_basic_user_file auth_request auth_request_set
    charset charset_types source_charset override_charset gzip gzip_types gzip_comp_level gzip_min_length
    gzip_proxied gzip_vary gzip_disable gzip_buffers gzip_http_version gzip_static gunzip
    ssl_certificate ssl_certificate_key ssl_protocols ssl_ciphers ssl_prefer_server_ciphers ssl_session_cache
    ssl_session_timeout ssl_session_tickets ssl_dhparam ssl_ecdh_curve ssl_stapling ssl_stapling_verify
    ssl_trusted_certificate ssl_client_certificate ssl_verify_client ssl_verify_depth ssl_password_file
    ssl_buffer_size ssl_early_data ssl_conf_command ssl_crl ssl http2 http3 quic spdy
    proxy_buffers proxy_buffer_size proxy_busy_buffers_size
    proxy_next_upstream proxy_next_upstream_tries proxy_next_upstream_timeout proxy_cache proxy_cache_path
    proxy_cache_key proxy_cache_valid proxy_cache_bypass proxy_no_cache proxy_cache_use_stale
    proxy_cache_lock proxy_cache_methods proxy_cache_min_uses proxy_cache_revalidate proxy_cache_background_update
    proxy_temp_path proxy_max_temp_file_size proxy_temp_file_write_size
    proxy_ssl_certificate proxy_ssl_certificate_key
    proxy_ssl_protocols proxy_ssl_ciphers proxy_ssl_session_reuse
    proxy_cookie_flags
    proxy_bind proxy_socket_keepalive proxy_headers_hash_max_size proxy_headers_hash_bucket_size
    proxy_store proxy_store_access proxy_limit_rate proxy_force_ranges proxy_pass_trailers
    fastcgi_pass fastcgi_param fastcgi_index uwsgi_pass uwsgi_param scgi_pass scgi_param grpc_pass memcached_pass
    limit_req limit_req_zone limit_req_status limit_conn limit_conn_zone limit_conn_status limit_rate
    limit_rate_after limit_except
    server_name_in_redirect port_in_redirect absolute_redirect
    msie_padding msie_refresh log_subrequest merge_slashes underscores_in_headers
    ignore_invalid_headers chunked_transfer_encoding output_buffers
    postpone_output reset_timedout_connection lingering_close lingering_time lingering_timeout
    open_file_cache open_file_cache_errors open_file_cache_min_uses open_file_cache_valid
    directio directio_alignment aio aio_write read_ahead disable_symlinks subrequest_output_buffer_size
    sub_filter sub_filter_once sub_filter_types stub_status ssi ssi_types addition_types add_before_body
    add_after_body empty_gif mirror mirror_request_body secure_link secure_link_md5 secure_link_secret
    userid userid_domain userid_expires userid_name userid_path valid_referers referer_hash_max_size
    sticky ntlm queue health_check resolve keepalive_time
    http2_max_concurrent_streams http2_recv_buffer_size http2_chunk_size http2_push http2_push_preload
    image_filter xslt_stylesheet perl dav_methods mp4 flv hls slice random_index
    """.split()
) - DIRECTIVES.keys()
