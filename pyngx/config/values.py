"""Argument parsers: nginx notation -> typed Python values.

Owns: the only conversions from nginx's words ("60s", "8k", "on",
"127.0.0.1:8080", "http://host:port/uri") to floats, ints, bools and
small frozen records. Times are float seconds, sizes int bytes.

Input: strings (one directive argument). Output: values, or
``ConfigValueError`` with nginx's wording; build.py adds file and line.
Must not: import asyncio, aiohttp or anything that does I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyngx.errors import ConfigValueError

if TYPE_CHECKING:
    from pyngx.variables import Template

# nginx: src/core/ngx_parse.c, ngx_parse_time: unit -> (step, seconds).
# Units must come in this order (largest first), each at most once.
_TIME_UNITS: dict[str, tuple[int, float]] = {
    "y": (1, 31536000), "M": (2, 2592000), "w": (3, 604800), "d": (4, 86400),
    "h": (5, 3600), "m": (6, 60), "s": (7, 1), "ms": (8, 0.001),
}
_STEP_SEC, _STEP_LAST = 7, 9
# ngx_int_t on 64-bit platforms; nginx refuses values that overflow it.
_MAX_INT = 2**63 - 1
# nginx: ngx_parse_size: k/K, m/M, g/G.
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_time(text: str, directive: str, is_sec: bool = False) -> float:
    """Parse an nginx time ("30s", "1m", "500ms", "1h30m", "1h 30m", "75") into seconds.

    Units (y M w d h m s ms) must appear largest first, each once; spaces
    may follow a unit; a trailing bare number counts as seconds ("1m30" is
    90 s). The *_timeout directives are nginx msec slots, where "y" and "M"
    are refused; ``is_sec`` gives nginx's sec slots, which refuse "ms".

    Args:
        text: the argument.
        directive: the directive's name, for the error message.
        is_sec: parse as ngx_conf_set_sec_slot instead of ngx_conf_set_msec_slot.

    Returns:
        Seconds as float.

    Raises:
        ConfigValueError: ``"NAME" directive invalid value``.

    Source: nginx src/core/ngx_parse.c, ngx_parse_time; nginx docs,
    "Configuration file measurement units".
    """
    invalid = ConfigValueError(f'"{directive}" directive invalid value')
    # Work in nginx's integer unit (ms, or s for sec slots) to keep its limits.
    per_second = 1 if is_sec else 1000
    step = 0 if is_sec else 2
    total = value = 0
    valid = False
    pos, n = 0, len(text)
    while pos < n:
        ch = text[pos]
        if ch.isdigit() and ch.isascii():
            value = value * 10 + int(ch)
            if value > _MAX_INT:
                raise invalid
            valid, pos = True, pos + 1
            continue
        unit = "ms" if text.startswith("ms", pos) else ch
        pos += len(unit)
        if unit == " ":
            new_step, scale = _STEP_LAST, per_second
            if step >= _STEP_SEC:
                raise invalid
        elif unit in _TIME_UNITS and not (is_sec and unit == "ms"):
            new_step, seconds = _TIME_UNITS[unit]
            scale = round(seconds * per_second)
            if step >= new_step:
                raise invalid
        else:
            raise invalid
        step = new_step
        if value > _MAX_INT // scale or total > _MAX_INT - value * scale:
            raise invalid
        total += value * scale
        value = 0
        while pos < n and text[pos] == " ":
            pos += 1
    if not valid or value > _MAX_INT // per_second or total > _MAX_INT - value * per_second:
        raise invalid
    return (total + value * per_second) / per_second


def parse_size(text: str, directive: str) -> int:
    """Parse an nginx size ("512", "8k", "1m", "2G") into bytes.

    Raises:
        ConfigValueError: ``"NAME" directive invalid value``.

    Source: nginx docs, "Syntax" (measurement units), ngx_parse_size.
    """
    m = re.fullmatch(r"([0-9]+)([kKmMgG]?)", text)
    if m is None or int(m.group(1)) > _MAX_INT // _SIZE_UNITS[m.group(2).lower()]:
        raise ConfigValueError(f'"{directive}" directive invalid value')
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def parse_flag(text: str, directive: str) -> bool:
    """Parse ``on`` / ``off`` (case-insensitive, as ngx_conf_set_flag_slot).

    Raises:
        ConfigValueError: ``invalid value "X" in "NAME" directive, it must be "on" or "off"``.
    """
    low = text.lower()
    if low == "on":
        return True
    if low == "off":
        return False
    raise ConfigValueError(f'invalid value "{text}" in "{directive}" directive, it must be "on" or "off"')


def parse_int(text: str, directive: str, minimum: int = 0) -> int:
    """Parse a non-negative decimal number (ngx_conf_set_num_slot).

    Raises:
        ConfigValueError: ``"NAME" directive invalid number``, nginx's
            wording for every ngx_conf_set_num_slot directive.
    """
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= _MAX_INT:
        raise ConfigValueError(f'"{directive}" directive invalid number')
    return int(text)


@dataclass(frozen=True, slots=True)
class Listen:
    """One ``listen`` directive.

    Attributes:
        host: IP address to bind ("0.0.0.0", "::", "127.0.0.1", "::1"), or
            "unix:" + path for a UNIX-domain socket.
        port: TCP port (0 for UNIX sockets).
        default_server: the ``default_server`` parameter was given.
        backlog: the ``backlog=N`` parameter, or None for the default.
        ipv6only: for "[::]" listens, whether to accept IPv6 only (nginx default on).
        reuseport: the ``reuseport`` parameter.
        options: socket options were given (backlog=, reuseport,
            ipv6only=); nginx allows them on one listen per address.
        ssl: the ``ssl`` parameter: connections on this address are TLS
            (one listen with it makes the whole address TLS, as in nginx).
        http2: the ``http2`` parameter (nginx < 1.25.1 style; see pyngx.tls).
    """

    host: str
    port: int
    default_server: bool = False
    backlog: int | None = None
    ipv6only: bool = True
    reuseport: bool = False
    options: bool = False
    ssl: bool = False
    http2: bool = False

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) pair that identifies the listening socket."""
        return (self.host, self.port)

    @property
    def family_v6(self) -> bool:
        return ":" in self.host and not self.host.startswith("unix:")

    def __str__(self) -> str:
        if self.host.startswith("unix:"):
            return self.host
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


# Parameters of listen that nginx has and pyngx does not yet implement.
_LISTEN_UNSUPPORTED = ("http3", "quic", "proxy_protocol", "spdy", "setfib=", "fastopen=",
                       "accept_filter=", "deferred", "bind", "so_keepalive=", "rcvbuf=", "sndbuf=")


def _port(text: str, whole: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigValueError(f'invalid port in "{whole}" of the "listen" directive')
    return int(text)


def parse_listen(args: tuple[str, ...]) -> Listen:
    """Parse ``listen address[:port] | port | unix:path [default_server] [backlog=N] ...``.

    Args:
        args: the directive's arguments.

    Returns:
        A ``Listen``. "*" and a missing address mean "0.0.0.0"; a missing
        port means 80, as in nginx.

    Raises:
        ConfigValueError: invalid port, host not found, invalid parameter,
            or a parameter nginx has that pyngx does not support yet.

    Source: nginx docs: ngx_http_core_module, listen.
    """
    addr = args[0]
    if addr.startswith("unix:"):
        host, port = addr, 0
        if len(addr) == 5:
            raise ConfigValueError(f'no path in the unix domain socket in "{addr}" of the "listen" directive')
    elif addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ConfigValueError(f'invalid host in "{addr}" of the "listen" directive')
        host = addr[1:end]
        rest = addr[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigValueError(f'invalid host in "{addr}" of the "listen" directive')
        port = _port(rest[1:], addr) if rest else 80
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigValueError(f'invalid IPv6 address in "{addr}" of the "listen" directive') from None
    elif addr.isdigit():
        host, port = "0.0.0.0", _port(addr, addr)
    else:
        host, sep, port_text = addr.rpartition(":")
        if not sep:
            host, port = addr, 80
        else:
            port = _port(port_text, addr)
        if not host:
            raise ConfigValueError(f'no host in "{addr}" of the "listen" directive')
        if host == "*":
            host = "0.0.0.0"
        elif host == "localhost":
            host = "127.0.0.1"
        else:
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                    raise ConfigValueError(f'invalid host in "{addr}" of the "listen" directive') from None
                host = _resolve(host, addr)
    default_server = False
    backlog: int | None = None
    ipv6only = True
    reuseport = False
    options = False
    flags: set[str] = set()
    for param in args[1:]:
        if param in ("default_server", "default"):
            default_server = True
        elif param.startswith("backlog="):
            digits = param[8:]
            if not (digits.isascii() and digits.isdigit()) or int(digits) == 0:
                raise ConfigValueError(f'invalid backlog "{param}"')
            backlog, options = int(digits), True
        elif param in ("ipv6only=on", "ipv6only=off"):
            ipv6only, options = param.endswith("on"), True
        elif param == "reuseport":
            reuseport = options = True
        elif param in ("ssl", "http2"):
            flags.add(param)  # not socket options: any listen of an address may give them
        elif param in _LISTEN_UNSUPPORTED or param.split("=")[0] + "=" in _LISTEN_UNSUPPORTED:
            raise ConfigValueError(f'the "{param}" parameter of the "listen" directive is not supported by pyngx')
        else:
            raise ConfigValueError(f'invalid parameter "{param}"')
    return Listen(host, port, default_server, backlog, ipv6only, reuseport, options, "ssl" in flags, "http2" in flags)


def _resolve(host: str, whole: str) -> str:
    import socket

    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except OSError:
        raise ConfigValueError(f'host not found in "{whole}" of the "listen" directive') from None


@dataclass(frozen=True, slots=True)
class ProxyPass:
    """The URL of a ``proxy_pass`` directive, split once at load time.

    Attributes:
        scheme: "http" or "https".
        host: host name or IP address (IPv6 without brackets), or the
            UNIX socket path when ``unix`` is true.
        port: port number (80/443 by default).
        uri: the URI part ("/", "/v1/"), or None when the URL has none.
        unix: the URL names a UNIX-domain socket (``http://unix:/path:/uri``).
        url: the directive's argument as written.
    """

    scheme: str
    host: str
    port: int
    uri: str | None
    unix: bool
    url: str
    explicit_port: bool = False
    #: The URL has variables: it is evaluated per request (host, port and
    #: uri above are then unknown: "", 0, None).
    template: Template | None = None

    @property
    def proxy_host(self) -> str:
        """The value of ``$proxy_host``: host, plus ":port" when not the default."""
        if self.unix:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """``scheme://host:port`` for the upstream client (no URI)."""
        if self.unix:
            return f"{self.scheme}://localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy_pass(url: str) -> ProxyPass:
    """Parse the URL of ``proxy_pass URL``.

    Accepts ``http://host[:port][/uri]``, ``https://...``, ``[v6]`` hosts and
    ``http://unix:/path/to.sock[:/uri]``.

    Raises:
        ConfigValueError: ``invalid URL prefix`` for another scheme (nginx
            names no URL here), ``invalid port in upstream "HOST:PORT"``,
            ``no host in upstream "..."``, ``no path in the unix domain
            socket in upstream "unix:"``.

    Source: nginx docs: ngx_http_proxy_module, proxy_pass.
    """
    low = url.lower()
    if low.startswith("http://"):
        scheme, rest = "http", url[7:]
    elif low.startswith("https://"):
        scheme, rest = "https", url[8:]
    else:
        raise ConfigValueError("invalid URL prefix")
    default_port = 443 if scheme == "https" else 80
    if rest.startswith("unix:"):
        path, sep, unix_uri = rest[5:].partition(":")
        if not path:
            raise ConfigValueError(f'no path in the unix domain socket in upstream "{rest}"')
        return ProxyPass(scheme, path, 0, unix_uri if sep else None, True, url)
    uri: str | None
    slash = rest.find("/")
    authority, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    if "?" in authority:
        authority, _, q = authority.partition("?")
        uri = "/?" + q
    if not authority:
        raise ConfigValueError(f'no host in upstream "{rest}"')
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ConfigValueError(f'invalid host in upstream "{rest}"')
        host, port_part = authority[1:end], authority[end + 1 :]
    else:
        host, _, port_part = authority.partition(":")
        port_part = ":" + port_part if _ else ""
    if port_part:
        digits = port_part[1:]
        if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) < 65536:
            raise ConfigValueError(f'invalid port in upstream "{rest}"')
        port = int(digits)
        explicit = True
    else:
        port = default_port
        explicit = False
    if not host:
        raise ConfigValueError(f'no host in upstream "{rest}"')
    return ProxyPass(scheme, host, port, uri, False, url, explicit)


def is_status(text: str, lo: int = 100, hi: int = 999) -> bool:
    """True when ``text`` is a status code in [lo, hi]."""
    return text.isascii() and text.isdigit() and len(text) == 3 and lo <= int(text) <= hi


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """One ``server`` line of an ``upstream`` block.

    Attributes:
        address: the address as written ("127.0.0.1:8000", "app.local", "unix:/s").
        host: host name or IP (IPv6 without brackets), or the socket path.
        port: port (80 when not given; 0 for UNIX sockets).
        unix: a UNIX-domain socket.
        weight, max_fails, fail_timeout (seconds), backup, down, max_conns: the parameters.
    """

    address: str
    host: str
    port: int
    unix: bool
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    max_conns: int = 0


def parse_upstream_server(args: tuple[str, ...]) -> UpstreamServer:
    """Parse ``server address [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N]``.

    Raises:
        ConfigValueError: ``invalid parameter "X"``, ``invalid port in upstream "X"``,
            ``resolve`` (not supported by pyngx).

    Source: nginx docs: ngx_http_upstream_module, server.
    """
    addr = args[0]
    if addr.startswith("unix:"):
        if len(addr) == 5:
            raise ConfigValueError(f'no path in the unix domain socket "{addr}"')
        host, port, unix = addr[5:], 0, True
    else:
        unix = False
        if addr.startswith("["):
            end = addr.find("]")
            if end < 0:
                raise ConfigValueError(f'invalid host in upstream "{addr}"')
            host, rest = addr[1:end], addr[end + 1 :]
        else:
            host, sep, rest = addr.rpartition(":")
            if not sep:
                host, rest = addr, ""
            else:
                rest = ":" + rest
        if rest:
            digits = rest[1:]
            if not digits.isdigit() or not 0 < int(digits) < 65536:
                raise ConfigValueError(f'invalid port in upstream "{addr}"')
            port = int(digits)
        else:
            port = 80
        if not host:
            raise ConfigValueError(f'no host in upstream "{addr}"')
    kw: dict[str, object] = {}
    for param in args[1:]:
        name, eq, value = param.partition("=")
        if name in ("weight", "max_fails", "max_conns") and eq:
            if not value.isdigit() or (name == "weight" and int(value) == 0):
                raise ConfigValueError(f'invalid parameter "{param}"')
            kw[name] = int(value)
        elif name == "fail_timeout" and eq:
            try:
                kw[name] = parse_time(value, "server")
            except ConfigValueError:
                raise ConfigValueError(f'invalid parameter "{param}"') from None
        elif param in ("backup", "down") and not eq:
            kw[param] = True
        elif name in ("resolve", "service", "route", "slow_start", "drain"):
            raise ConfigValueError(f'the "{name}" parameter of the upstream "server" directive is not supported by pyngx')
        else:
            raise ConfigValueError(f'invalid parameter "{param}"')
    return UpstreamServer(addr, host, port, unix, **kw)  # type: ignore[arg-type]
