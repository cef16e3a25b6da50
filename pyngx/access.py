"""Who may ask: ``allow`` / ``deny`` and the real client address (realip).

Owns: ``AccessRule`` (one allow or deny) and ``allowed`` (first match
wins), the trusted-source set of ``set_real_ip_from`` and ``real_ip``,
which replaces ``$remote_addr`` (and ``$remote_port``) with the address a
trusted proxy put in X-Real-IP, X-Forwarded-For or another field.

Input: directive arguments at load time; a ``Request`` and its current
conf per request. Output: rules; a decision; the request's address changed.
Must not: send anything or import asyncio (app.py answers 403).

Source: nginx docs: ngx_http_access_module, ngx_http_realip_module;
src/http/modules/ngx_http_access_module.c, ngx_http_realip_module.c,
src/http/ngx_http_core_module.c (ngx_http_get_forwarded_addr).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pyngx.errors import ConfigValueError
from pyngx.request import Request

if TYPE_CHECKING:
    from pyngx.config.model import LocationConf

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One ``allow`` or ``deny``.

    Attributes:
        allow: allow (True) or deny (False).
        network: the address or CIDR; None for ``all`` and ``unix:``.
        unix: the rule is ``unix:`` (clients on UNIX-domain sockets).
    """

    allow: bool
    network: Network | None
    unix: bool = False

    def matches(self, addr: Address | None) -> bool:
        """Whether the rule covers a client at ``addr`` (None: a UNIX-socket client)."""
        if self.unix:
            return addr is None
        if self.network is None:
            return True
        return addr is not None and addr.version == self.network.version and addr in self.network


def _network(text: str) -> Network:
    """An address or CIDR; host bits are dropped, as nginx does (with a warning)."""
    return ipaddress.ip_network(text, strict=False)


def parse_rule(allow: bool, arg: str) -> AccessRule:
    """``allow address | CIDR | unix: | all`` (and ``deny``).

    Raises:
        ConfigValueError: ``invalid parameter "X"``.

    Differs from nginx: an address with host bits set under its mask
    (1.2.3.5/24) is taken as the network without nginx's "low address bits
    are meaningless" warning.
    """
    if arg == "all":
        return AccessRule(allow, None)
    if arg == "unix:":
        return AccessRule(allow, None, unix=True)
    try:
        return AccessRule(allow, _network(arg))
    except ValueError:
        raise ConfigValueError(f'invalid parameter "{arg}"') from None


def client_address(text: str) -> Address | None:
    """The client's address as an ipaddress object; IPv4-mapped IPv6 as IPv4; None for ""."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def allowed(rules: tuple[AccessRule, ...], remote_addr: str) -> bool:
    """Whether ``allow``/``deny`` rules let ``remote_addr`` in: the first rule
    that covers it decides; no rule covering it allows.

    Args:
        rules: the current level's rules (an inner level's rules replace the outer ones).
        remote_addr: ``$remote_addr`` ("" for a UNIX-socket client).
    """
    if not rules:
        return True
    addr = client_address(remote_addr)
    for rule in rules:
        if rule.matches(addr):
            return rule.allow
    return True


# --- realip -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedSource:
    """One ``set_real_ip_from``: a network, or ``unix:``."""

    network: Network | None
    unix: bool = False

    def matches(self, addr: Address | None) -> bool:
        if self.unix:
            return addr is None
        return addr is not None and self.network is not None and addr.version == self.network.version and (
            addr in self.network)


def parse_trusted(arg: str) -> tuple[TrustedSource, ...]:
    """``set_real_ip_from address | CIDR | unix:``; a host name gives each of its addresses.

    Raises:
        ConfigValueError: ``host not found in set_real_ip_from "X"``.
    """
    if arg == "unix:":
        return (TrustedSource(None, unix=True),)
    try:
        return (TrustedSource(_network(arg)),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(arg, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ConfigValueError(f'host not found in set_real_ip_from "{arg}"') from None
    return tuple(dict.fromkeys(TrustedSource(_network(str(info[4][0]))) for info in infos))


def _trusted(addr: Address | None, sources: tuple[TrustedSource, ...]) -> bool:
    return any(s.matches(addr) for s in sources)


def _addr_port(text: str) -> tuple[str, int] | None:
    """"1.2.3.4", "1.2.3.4:80", "::1" or "[::1]:80" (nginx: ngx_parse_addr_port)."""
    host, port = text, 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            return None
        port = int(p)
    if port > 65535:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    # inet_ntop's text, as nginx prints it (::ffff:10.0.0.1, not ::ffff:a00:1).
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return socket.inet_ntop(family, ip.packed), port


def forwarded_addr(addr: str, value: str, sources: tuple[TrustedSource, ...],
                   recursive: bool) -> tuple[str, int] | None:
    """The client address a field value gives, when the sender is trusted.

    The last address of the list wins; with ``recursive``, trusted
    addresses are skipped from the right. A value that is not an address
    ends the walk (what was found so far stands, if anything).

    Args:
        addr: the connection's address ("" for a UNIX socket).
        value: the field's value, e.g. "1.1.1.1, 10.0.0.2".
        sources: ``set_real_ip_from``.
        recursive: ``real_ip_recursive on``.

    Returns:
        (address, port or 0), or None to keep the connection's address.

    Source: nginx src/http/ngx_http_core_module.c, ngx_http_get_forwarded_addr_internal.
    """
    if not _trusted(client_address(addr), sources):
        return None
    found: tuple[str, int] | None = None
    items = [i for i in value.replace(",", " ").split(" ") if i]
    while items:
        parsed = _addr_port(items.pop())
        if parsed is None:
            return found
        found = parsed
        if not recursive or not _trusted(client_address(found[0]), sources):
            return found
    return found


def real_ip(r: Request, conf: LocationConf) -> None:
    """Replace ``$remote_addr`` with the address in ``real_ip_header`` when the
    connection comes from a ``set_real_ip_from`` source (once per request).

    app.py calls it after server selection with the server level's conf
    (nginx's post-read phase) and before the access phase with the
    location's (preaccess).

    Source: nginx src/http/modules/ngx_http_realip_module.c, ngx_http_realip_handler.
    """
    if r.realip_remote_addr is not None or not conf.set_real_ip_from:
        return
    value = r.header_map.get(conf.real_ip_header.lower())
    if not value:
        return
    found = forwarded_addr(r.remote_addr, value, conf.set_real_ip_from, conf.real_ip_recursive)
    if found is None:
        return
    r.realip_remote_addr, r.realip_remote_port = r.remote_addr, r.remote_port
    r.remote_addr, r.remote_port = found
