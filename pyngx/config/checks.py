"""The checks nginx makes in directive handlers and after the walk, as the config is built.

Owns: ``HandlerChecks`` (state kept across the walk: what each listen
address already has; the warnings), ``AFTER_SET`` (the checks that run
right after a directive's setter: duplicate listen, listen options or
default server per address; a proxy_pass URI part in a regex or named
location; server_name regexes), and the ``conflicting server name``
warnings after the walk.

Input: directives, the scope they are set in, and their values; build.py
calls these. Output: ``ConfigError`` with file and line, or warnings.
Must not: walk the tree or set values (build.py does).

Source: nginx src/http/ngx_http.c (ngx_http_add_addresses,
ngx_http_add_server, ngx_http_server_names); src/http/ngx_http_core_module.c
(ngx_http_core_server_name); ngx_http_proxy_module.c (ngx_http_proxy_pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pyngx.config.directives import LIF
from pyngx.config.model import ServerConf
from pyngx.config.regex import compile_server_regex
from pyngx.config.tree import Directive
from pyngx.config.values import Listen, ProxyPass
from pyngx.errors import ConfigError, ConfigValueError

__all__ = ["AFTER_SET", "HandlerChecks", "Located"]


class Located(Protocol):
    """The block a directive is set in, as the checks see it (build.py's scope)."""

    ctx: str
    modifier: str


@dataclass
class _Address:
    """What one listen address already has: servers (by scope id), options, a default."""

    servers: set[int]
    options: bool
    default_server: bool


class HandlerChecks:
    """The handler checks of one config build (build.py's builder is one)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.addresses: dict[tuple[str, int], _Address] = {}

    def check_server_names(self, servers: tuple[ServerConf, ...]) -> None:
        """Warn about server names that another server on the same address has.

        As nginx, names are compared only on addresses with more than one
        server; ".x.com" counts as both "x.com" and "*.x.com"; regex names
        never conflict. The later name is ignored.

        Source: nginx src/http/ngx_http.c, ngx_http_server_names
        (``conflicting server name "x" on ADDR, ignored``, a [warn] without
        file and line).
        """
        by_address: dict[tuple[str, int], list[tuple[ServerConf, Listen]]] = {}
        for srv in servers:
            for lst in srv.listens:
                by_address.setdefault(lst.address, []).append((srv, lst))
        for members in by_address.values():
            if len(members) < 2:
                continue
            taken: set[tuple[str, str]] = set()
            for srv, lst in members:
                for name in srv.server_names:
                    keys = _name_keys(name)
                    if keys & taken:
                        self.warnings.append(f'conflicting server name "{name}" on {lst}, ignored')
                    taken |= keys

    def add_listen(self, d: Directive, scope: Located, value: tuple[Listen, ...]) -> None:
        """Register a ``listen``: one per server and address, one default server
        and one set of socket options per address.

        Raises:
            ConfigError: ``a duplicate listen ADDR``, ``duplicate listen
                options for ADDR``, ``a duplicate default server for ADDR``.

        Source: nginx src/http/ngx_http.c, ngx_http_add_addresses, ngx_http_add_server.
        """
        lst = value[-1]
        addr = self.addresses.get(lst.address)
        if addr is None:
            self.addresses[lst.address] = _Address({id(scope)}, lst.options, lst.default_server)
            return
        if id(scope) in addr.servers:
            raise ConfigError(f"a duplicate listen {lst}", d.file, d.line)
        addr.servers.add(id(scope))
        if lst.options:
            if addr.options:
                raise ConfigError(f"duplicate listen options for {lst}", d.file, d.line)
            addr.options = True
        if lst.default_server:
            if addr.default_server:
                raise ConfigError(f"a duplicate default server for {lst}", d.file, d.line)
            addr.default_server = True

    def check_proxy_pass(self, d: Directive, scope: Located, value: ProxyPass) -> None:
        """A URI part is an error in a regex or named location (checked where
        proxy_pass is, as nginx does; enclosing locations do not matter).

        Source: nginx src/http/modules/ngx_http_proxy_module.c, ngx_http_proxy_pass.
        """
        if value.uri is not None and (scope.modifier in ("~", "~*", "@") or scope.ctx == LIF):
            raise ConfigError(
                '"proxy_pass" cannot have URI part in location given by regular expression, '
                'or inside named location, or inside "if" statement, or inside "limit_except" block',
                d.file,
                d.line,
            )

    def check_server_name(self, d: Directive, scope: Located, value: tuple[str, ...]) -> None:
        """Compile the ``~regex`` names of this directive, so that a bad one
        fails here with file and line, as nginx does.

        Source: nginx src/http/ngx_http_core_module.c, ngx_http_core_server_name.
        """
        for name in d.args:
            if name.startswith("~"):
                try:
                    compile_server_regex(name)
                except ConfigValueError as exc:
                    raise ConfigError(exc.message, d.file, d.line) from None


def _name_keys(name: str) -> set[tuple[str, str]]:
    """The hash keys a server name occupies (nginx: ngx_hash_add_key, wildcard)."""
    if name.startswith("~"):
        return set()
    if name.startswith("*."):
        return {("head", name[1:])}
    if name.startswith("."):
        return {("exact", name[1:]), ("head", name)}
    if name.endswith(".*"):
        return {("tail", name[:-1])}
    return {("exact", name)}


#: Checks that run right after a directive's setter, as nginx's handlers do.
AFTER_SET: dict[str, Callable[[HandlerChecks, Directive, Any, Any], None]] = {
    "listen": HandlerChecks.add_listen,
    "proxy_pass": HandlerChecks.check_proxy_pass,
    "server_name": HandlerChecks.check_server_name,
}
