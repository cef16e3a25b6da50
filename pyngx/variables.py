"""nginx ``$variables``: the registry and templates compiled at load time.

Owns: ``VARIABLES`` (name -> getter), ``PREFIX_VARIABLES`` (``http_``,
``arg_``, ``cookie_``, ...), and ``Template``: a string with variables,
split once into constant text and getters so that a request only calls
the getters and joins.

Input: template text at config load; a ``Request`` per evaluation.
Output: ``Template`` objects; strings.
Must not: import asyncio or aiohttp; parse anything per request.

Source: nginx docs: ngx_http_core_module, "Embedded Variables";
ngx_http_proxy_module, "Embedded Variables".
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from http.cookies import SimpleCookie
from types import MappingProxyType

from pyngx import __version__
from pyngx.errors import ConfigValueError
from pyngx.request import Request

Getter = Callable[[Request], str]

_HOSTNAME = socket.gethostname()


def _proxy_add_x_forwarded_for(r: Request) -> str:
    prior = r.header_map.get("x-forwarded-for")
    return f"{prior}, {r.remote_addr}" if prior else r.remote_addr


def _time_local(r: Request) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(r.start))


def _time_iso8601(r: Request) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(r.start))[:-2] + ":" + time.strftime("%z")[-2:]


def _request_line(r: Request) -> str:
    return r.request_line


def _server_name(r: Request) -> str:
    return r.server.server_names[0] if r.server is not None and r.server.server_names else ""


def _remote_user(r: Request) -> str:
    auth = r.header_map.get("authorization", "")
    if auth[:6].lower() != "basic ":
        return ""
    import base64
    import binascii

    try:
        return base64.b64decode(auth[6:].strip()).decode("utf-8", "replace").partition(":")[0]
    except (binascii.Error, ValueError):
        return ""


#: name (without "$") -> getter. Each returns "" when the value is unset.
VARIABLES: dict[str, Getter] = {
    "args": lambda r: r.args,
    "query_string": lambda r: r.args,
    "is_args": lambda r: "?" if r.args else "",
    "uri": lambda r: r.uri,
    "document_uri": lambda r: r.uri,
    "request_uri": lambda r: r.request_uri,
    "request_method": lambda r: r.method,
    "request": _request_line,
    "scheme": lambda r: r.scheme,
    "https": lambda r: "on" if r.scheme == "https" else "",
    "server_protocol": lambda r: r.protocol,
    "host": lambda r: r.host,
    "hostname": lambda r: _HOSTNAME,
    "remote_addr": lambda r: r.remote_addr,
    "remote_port": lambda r: str(r.remote_port) if r.remote_port else "",
    "remote_user": _remote_user,
    "binary_remote_addr": lambda r: r.remote_addr,
    # ngx_http_realip_module: the connection's own address and port.
    "realip_remote_addr": lambda r: r.realip_remote_addr if r.realip_remote_addr is not None else r.remote_addr,
    "realip_remote_port": lambda r: (str(r.realip_remote_port or "") if r.realip_remote_addr is not None
                                     else str(r.remote_port) if r.remote_port else ""),
    "server_addr": lambda r: r.server_addr,
    "server_port": lambda r: str(r.server_port) if r.server_port else "",
    "server_name": _server_name,
    "content_length": lambda r: r.header_map.get("content-length", ""),
    "content_type": lambda r: r.header_map.get("content-type", ""),
    "proxy_host": lambda r: r.proxy.proxy_host if r.proxy is not None else "",
    "proxy_port": lambda r: str(r.proxy.port) if r.proxy is not None and not r.proxy.unix else "",
    "proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
    "status": lambda r: f"{r.status:03d}" if r.status else "000",
    "body_bytes_sent": lambda r: str(r.body_bytes_sent),
    "bytes_sent": lambda r: str(r.body_bytes_sent),
    "time_local": _time_local,
    "time_iso8601": _time_iso8601,
    "msec": lambda r: f"{time.time():.3f}",
    "request_time": lambda r: f"{time.time() - r.start:.3f}",
    "pid": lambda r: str(os.getpid()),
    "request_id": lambda r: r.request_id,
    "upstream_addr": lambda r: r.upstream_addr,
    "upstream_status": lambda r: r.upstream_status,
    "upstream_response_time": lambda r: r.upstream_response_time,
    "upstream_connect_time": lambda r: r.upstream_connect_time,
    "nginx_version": lambda r: __version__,
    "pyngx_version": lambda r: __version__,
    # ngx_http_ssl_module: the connection's TLS facts (pyngx.tls.TLSInfo); "" on plain connections.
    "ssl_protocol": lambda r: r.tls.protocol if r.tls is not None else "",
    "ssl_cipher": lambda r: r.tls.cipher if r.tls is not None else "",
    "ssl_server_name": lambda r: r.tls.server_name if r.tls is not None else "",
    "ssl_session_reused": lambda r: r.tls.session_reused if r.tls is not None else "",
    "ssl_client_verify": lambda r: r.tls.client_verify if r.tls is not None else "",
    "ssl_client_s_dn": lambda r: r.tls.client_s_dn if r.tls is not None else "",
    "ssl_client_i_dn": lambda r: r.tls.client_i_dn if r.tls is not None else "",
}


def _arg(name: str) -> Getter:
    # nginx's $arg_NAME is the raw value, not %-decoded; names compare caselessly.
    low = name.lower()

    def get(r: Request) -> str:
        for pair in r.args.split("&"):
            k, _, v = pair.partition("=")
            if k.lower() == low:
                return v
        return ""

    return get


def _cookie(name: str) -> Getter:
    def get(r: Request) -> str:
        raw = r.header_map.get("cookie")
        if not raw:
            return ""
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # http.cookies raises CookieError on odd input
            return ""
        morsel = jar.get(name)
        return morsel.value if morsel is not None else ""

    return get


def _http(name: str) -> Getter:
    key = name.replace("_", "-")
    return lambda r: r.header_map.get(key, "")


#: prefix -> factory(rest of name) -> getter, as nginx's prefix variables.
PREFIX_VARIABLES: dict[str, Callable[[str], Getter]] = {
    "http_": _http,
    "arg_": _arg,
    "cookie_": _cookie,
}

def _escape_default(value: str) -> str:
    if not value:
        return "-"
    if all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in value):
        return value
    return "".join(
        f"\\x{b:02X}" if b < 0x20 or b > 0x7E or b in (0x22, 0x5C) else chr(b)
        for b in value.encode("utf-8", "surrogateescape")
    )


def _escape_json(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)[1:-1]


_LOG_ESCAPES: dict[str, Callable[[str], str]] = {
    "default": _escape_default,
    "json": _escape_json,
    "none": lambda v: v,
}

# "$1abc" is capture 1 then "abc", as ngx_http_script_compile reads one digit.
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([0-9])|([A-Za-z_][A-Za-z0-9_]*))")


def _set_args(r: Request, value: str) -> None:
    r.args = value
    r.valid_unparsed_uri = False  # nginx: ngx_http_variable_set_args


#: Built-in variables that ``set`` may change: name -> setter (nginx's
#: NGX_HTTP_VAR_CHANGEABLE variables with a set_handler).
CHANGEABLE: dict[str, Callable[[Request, str], None]] = {"args": _set_args}

# The variables the config being built declares (set, map, named captures):
# name -> getter; see ``declaring``.
_DECLARED: ContextVar[Mapping[str, Getter]] = ContextVar("pyngx_declared_variables", default=MappingProxyType({}))


@contextmanager
def declaring(getters: Mapping[str, Getter]) -> Iterator[None]:
    """Make ``lookup`` know a config's own variables while that config is built.

    nginx declares the variables of ``set``, ``map`` and named regex
    captures for the whole config, so a template may name one that is
    declared further down; build.py finds them all first
    (``pyngx.maps.Declared``) and compiles templates inside this block.

    Args:
        getters: name (without "$") -> getter.
    """
    token = _DECLARED.set(getters)
    try:
        yield
    finally:
        _DECLARED.reset(token)


def lookup(name: str, captures: frozenset[str] = frozenset()) -> Getter:
    """Return the getter for ``$name`` (name without "$").

    Args:
        name: variable name, e.g. "host", "http_user_agent", "1".
        captures: named regex captures visible where the template is used.

    Raises:
        ConfigValueError: ``unknown "name" variable`` (nginx's wording).
    """
    name = name.lower() if not name.isdigit() else name
    if name in VARIABLES:
        return VARIABLES[name]
    if name.isdigit() and name != "0":  # nginx has $1..$9, and no $0
        idx = int(name)
        return lambda r: r.captures[idx] if idx < len(r.captures) else ""
    declared = _DECLARED.get().get(name)
    if declared is not None:
        return declared
    if name in captures:
        return lambda r: r.variables.get(name, "")
    for prefix, factory in PREFIX_VARIABLES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return factory(name[len(prefix) :])
    raise ConfigValueError(f'unknown "{name}" variable')


class Template:
    """A string with ``$variables``, compiled once at load time.

    Attributes:
        text: the source text.
        constant: the value when the text has no variables, else None.
    """

    __slots__ = ("text", "parts", "constant")

    def __init__(self, text: str, captures: frozenset[str] = frozenset()) -> None:
        """Compile ``text``.

        Raises:
            ConfigValueError: a variable is unknown.
        """
        self.text = text
        parts: list[str | Getter] = []
        pos = 0
        for m in _VAR_RE.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            parts.append(lookup(m.group(1) or m.group(2) or m.group(3), captures))
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts: tuple[str | Getter, ...] = tuple(parts)
        self.constant: str | None = text if not any(callable(p) for p in parts) else None

    def render(self, r: Request) -> str:
        """Evaluate the template for request ``r``."""
        if self.constant is not None:
            return self.constant
        return "".join(p if isinstance(p, str) else p(r) for p in self.parts)

    def render_log(self, r: Request, escape: str = "default") -> str:
        """Evaluate for a log line, as nginx's log module.

        Args:
            r: the request.
            escape: "default": an empty value is "-", and '"', '\\' and bytes
                outside 0x20-0x7e become \\xXX; "json": JSON string escapes,
                empty stays empty; "none": values as they are.

        Source: nginx docs: ngx_http_log_module, log_format (escape=).
        """
        esc = _LOG_ESCAPES[escape]
        return "".join(p if isinstance(p, str) else esc(p(r)) for p in self.parts)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
