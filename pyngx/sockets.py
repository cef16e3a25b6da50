"""Listen sockets: opened once, kept across reloads, named as nginx names them.

Owns: the listen addresses of a config, binding one (nginx's options:
backlog, reuseport, ipv6only; nginx's ``bind() to ADDR failed`` text),
opening a config's set while reusing sockets a reload keeps, and the
``host:port`` names of listening sockets.

Input: a ``Config`` (its servers' ``Listen`` values). Output: listening,
non-blocking, inheritable sockets (master.py passes them to workers).
Must not: accept connections or serve (listener.py, server.py).

Source: nginx docs: ngx_http_core_module, listen; src/core/ngx_connection.c
(ngx_open_listening_sockets).
"""

from __future__ import annotations

import socket

from pyngx.config.model import Config
from pyngx.config.values import Listen
from pyngx.errors import StartError

__all__ = ["DEFAULT_BACKLOG", "Address", "bind", "listen_addresses", "open_sockets", "sockname"]

#: nginx's default listen backlog on Linux (NGX_LISTEN_BACKLOG).
DEFAULT_BACKLOG = 511

#: A listen address: (host, port); ("unix:PATH", 0) for a UNIX socket.
Address = tuple[str, int]


def listen_addresses(config: Config) -> dict[Address, Listen]:
    """Every distinct listen address of ``config``, first Listen for each."""
    seen: dict[Address, Listen] = {}
    for srv in config.http.servers if config.http is not None else ():
        for lst in srv.listens:
            seen.setdefault(lst.address, lst)
    return seen


def bind(lst: Listen) -> socket.socket:
    """Open, bind and listen on one address.

    Raises:
        StartError: ``bind() to ADDR failed (98: Address already in use)``.
    """
    addr: str | tuple[str, int]
    if lst.host.startswith("unix:"):
        family, addr = socket.AF_UNIX, lst.host[5:]
    elif lst.family_v6:
        family, addr = socket.AF_INET6, (lst.host, lst.port)
    else:
        family, addr = socket.AF_INET, (lst.host, lst.port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if lst.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if lst.ipv6only else 0)
        sock.bind(addr)
        sock.listen(lst.backlog or DEFAULT_BACKLOG)
        sock.setblocking(False)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise StartError(f"bind() to {lst} failed ({exc.errno}: {exc.strerror})") from None
    return sock


def open_sockets(config: Config, keep: dict[Address, socket.socket] | None = None) -> dict[Address, socket.socket]:
    """Sockets for every listen address of ``config``, reusing those in ``keep``.

    Raises:
        StartError: a new address cannot be bound (the new ones opened so far are closed).
    """
    keep = keep or {}
    out: dict[Address, socket.socket] = {}
    try:
        for addr, lst in listen_addresses(config).items():
            out[addr] = keep[addr] if addr in keep else bind(lst)
    except StartError:
        for addr, sock in out.items():
            if addr not in keep:
                sock.close()
        raise
    return out


def sockname(sock: socket.socket) -> str:
    """``host:port``, ``[v6]:port`` or ``unix:path`` of a listening socket."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"
