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

from pyngx.errors import ConfigValueError

# nginx: src/core/ngx_parse.c, ngx_parse_time (sec=1): units and their seconds.
_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
_TIME_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")
# nginx: ngx_parse_size: k/K, m/M, g/G.
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_time(text: str, directive: str) -> float:
    """Parse an nginx time ("30s", "1m", "500ms", "1h30m", "75") into seconds.

    Args:
        text: the argument; a bare number means seconds.
        directive: the directive's name, for the error message.

    Returns:
        Seconds as float.

    Raises:
        ConfigValueError: ``"NAME" directive invalid value``.

    Source: nginx docs, "Syntax" (configuration file measurement units).
    """
    pos, total, last_unit = 0, 0.0, None
    if not text:
        raise ConfigValueError(f'"{directive}" directive invalid value')
    while pos < len(text):
        m = _TIME_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigValueError(f'"{directive}" directive invalid value')
        unit = m.group(2) or "s"
        if m.group(2) is None and m.end() != len(text):
            raise ConfigValueError(f'"{directive}" directive invalid value')
        # Units must not repeat ("1s1s"), as ngx_parse_time requires.
        if last_unit is not None and unit == last_unit:
            raise ConfigValueError(f'"{directive}" directive invalid value')
        last_unit = unit
        total += int(m.group(1)) * _TIME_UNITS[unit]
        pos = m.end()
    return total


def parse_size(text: str, directive: str) -> int:
    """Parse an nginx size ("512", "8k", "1m", "2G") into bytes.

    Raises:
        ConfigValueError: ``"NAME" directive invalid value``.

    Source: nginx docs, "Syntax" (measurement units), ngx_parse_size.
    """
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    if m is None:
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
        ConfigValueError: ``invalid number "X" in "NAME" directive``.
    """
    if not text.isdigit() or int(text) < minimum:
        raise ConfigValueError(f'invalid number "{text}" in "{directive}" directive')
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
    """

    host: str
    port: int
    default_server: bool = False
    backlog: int | None = None
    ipv6only: bool = True
    reuseport: bool = False

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
_LISTEN_UNSUPPORTED = ("ssl", "http2", "http3", "quic", "proxy_protocol", "spdy", "setfib=", "fastopen=",
                       "accept_filter=", "deferred", "bind", "so_keepalive=", "rcvbuf=", "sndbuf=")


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
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
            raise ConfigValueError(f'no path in the unix domain socket "{addr}" of the "listen" directive')
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
    for param in args[1:]:
        if param in ("default_server", "default"):
            default_server = True
        elif param.startswith("backlog="):
            backlog = parse_int(param[8:], "listen")
        elif param in ("ipv6only=on", "ipv6only=off"):
            ipv6only = param.endswith("on")
        elif param == "reuseport":
            reuseport = True
        elif param in _LISTEN_UNSUPPORTED or param.split("=")[0] + "=" in _LISTEN_UNSUPPORTED:
            raise ConfigValueError(f'the "{param}" parameter of the "listen" directive is not supported by pyngx')
        else:
            raise ConfigValueError(f'invalid parameter "{param}"')
    return Listen(host, port, default_server, backlog, ipv6only, reuseport)


def _resolve(host: str, whole: str) -> str:
    import socket

    try:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
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
        ConfigValueError: ``invalid URL prefix in "URL"`` for another scheme,
            ``invalid port in upstream "URL"``, ``no host in upstream "URL"``.

    Source: nginx docs: ngx_http_proxy_module, proxy_pass.
    """
    low = url.lower()
    if low.startswith("http://"):
        scheme, rest = "http", url[7:]
    elif low.startswith("https://"):
        scheme, rest = "https", url[8:]
    else:
        raise ConfigValueError(f'invalid URL prefix in "{url}"')
    default_port = 443 if scheme == "https" else 80
    if rest.startswith("unix:"):
        path, sep, uri = rest[5:].partition(":")
        if not path:
            raise ConfigValueError(f'no path in the unix domain socket "{url}"')
        return ProxyPass(scheme, path, 0, uri if sep else None, True, url)
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
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise ConfigValueError(f'invalid port in upstream "{rest}"')
        port = int(digits)
    else:
        port = default_port
    if not host:
        raise ConfigValueError(f'no host in upstream "{rest}"')
    return ProxyPass(scheme, host, port, uri, False, url)


def is_status(text: str, lo: int = 100, hi: int = 999) -> bool:
    """True when ``text`` is a status code in [lo, hi]."""
    return text.isdigit() and len(text) == 3 and lo <= int(text) <= hi


def compile_regex(pattern: str, caseless: bool) -> re.Pattern[str]:
    """Compile an nginx (PCRE) regex with Python's ``re``.

    PCRE's ``(?<name>...)`` named groups become Python's ``(?P<name>...)``.

    Raises:
        ConfigValueError: ``pcre2_compile() failed: REASON in "PATTERN"``.

    Differs from nginx: Python's ``re`` dialect, not PCRE2; common PCRE
    syntax (classes, anchors, groups, named groups, lookarounds) is the same.
    """
    py = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
    try:
        return re.compile(py, re.IGNORECASE if caseless else 0)
    except re.error as exc:
        raise ConfigValueError(f'pcre2_compile() failed: {exc.msg} in "{pattern}"') from None
