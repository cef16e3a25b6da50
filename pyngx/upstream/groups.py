"""Peer groups for every proxy_pass of a config, built at load time.

Owns: turning ``upstream`` blocks and plain ``proxy_pass host:port`` URLs
into ``PeerGroup`` + balancer pairs, resolving host names (all addresses
become peers, as nginx does), and keeping a group's peers (with their
failure counts) across a reload when the upstream did not change.

Must not: do per-request work.

Source: nginx docs: ngx_http_upstream_module (upstream, server);
ngx_http_proxy_module, proxy_pass ("If a domain name resolves to several
addresses, all of them will be used in a round-robin fashion").
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pyngx.config.model import Config, LocationConf, UpstreamConf
from pyngx.config.values import ProxyPass, UpstreamServer
from pyngx.errors import ConfigError
from pyngx.upstream.balancers import Balancer, make
from pyngx.upstream.peers import Peer, PeerGroup
from pyngx.variables import Template


@dataclass(eq=False)
class Upstream:
    """A group of peers and how to choose among them.

    Attributes:
        group: the peers.
        balancer: the balancing method.
        key: the hash key template (``hash``), or None.
        ip_hash: the key is the client address.
        conf: the upstream block, or None for a plain proxy_pass address.
    """

    group: PeerGroup
    balancer: Balancer
    key: Template | None
    ip_hash: bool
    conf: UpstreamConf | None


def _addresses(host: str, port: int, where: tuple[str, int], shown: str) -> list[tuple[str, int]]:
    try:
        ipaddress.ip_address(host)
        return [(host, port)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ConfigError(f'host not found in upstream "{shown}"', *where) from None
    out: list[tuple[str, int]] = []
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (addr[0], port) not in out:
            out.append((str(addr[0]), port))
    return out


def _peers(srv: UpstreamServer, where: tuple[str, int]) -> list[Peer]:
    kw = dict(weight=srv.weight, max_fails=srv.max_fails, fail_timeout=srv.fail_timeout,
              backup=srv.backup, down=srv.down, max_conns=srv.max_conns)
    if srv.unix:
        return [Peer(f"unix:{srv.host}", srv.host, 0, unix=True, **kw)]  # type: ignore[arg-type]
    return [
        Peer(f"[{h}]:{p}" if ":" in h else f"{h}:{p}", h, p, **kw)  # type: ignore[arg-type]
        for h, p in _addresses(srv.host, srv.port, where, srv.address)
    ]


#: At most this many upstreams made for IP addresses of proxy_pass URLs with variables.
_DYNAMIC_MAX = 256


class Upstreams:
    """Every upstream a config's proxy_pass directives use.

    Args:
        config: the config.
        previous: the Upstreams of the config being replaced, whose groups
            are reused when their definition is unchanged.

    Raises:
        ConfigError: ``host not found in upstream "X"``.
    """

    def __init__(self, config: Config, previous: Upstreams | None = None) -> None:
        self.by_key: dict[tuple[object, ...], Upstream] = {}
        old = previous.by_key if previous is not None else {}
        self.named: dict[str, UpstreamConf] = {u.name: u for u in (config.http.upstreams if config.http else ())}
        for conf in self.named.values():
            key: tuple[object, ...] = ("upstream", conf)
            self.by_key[key] = old.get(key) or self._build(conf)
        self._old = old
        #: For URLs with variables: upstream names in lower case, the implicit
        #: upstreams by (host, port), and upstreams made for IP addresses.
        self.named_lower = {name.lower(): conf for name, conf in self.named.items()}
        self.by_address: dict[tuple[str, int], Upstream] = {}
        self.dynamic: dict[tuple[str, int, bool], Upstream] = {}

    def _build(self, conf: UpstreamConf) -> Upstream:
        peers = [p for srv in conf.servers for p in _peers(srv, (conf.file, conf.line))]
        group = PeerGroup(conf.name, [p for p in peers if not p.backup], [p for p in peers if p.backup])
        balancer = make(conf.method, conf.consistent, conf.random_two)
        return Upstream(group, balancer, conf.hash_key, conf.method == "ip_hash", conf)

    def for_location(self, loc: LocationConf) -> Upstream | None:
        """The upstream of a location's proxy_pass (a named upstream, or an implicit one).

        Returns:
            None for a proxy_pass with variables (see ``for_request``).

        Raises:
            ConfigError: the host does not resolve.
        """
        pp = loc.proxy_pass
        assert pp is not None
        if pp.template is not None:
            return None
        if not pp.unix and not pp.explicit_port and pp.host in self.named:
            return self.by_key[("upstream", self.named[pp.host])]
        key: tuple[object, ...] = ("implicit", pp.scheme, pp.host, pp.port, pp.unix)
        found = self.by_key.get(key) or self._old.get(key)
        if found is None:
            found = self._implicit(pp, loc)
        self.by_key[key] = found
        if not pp.unix:
            self.by_address[(pp.host.lower(), pp.port)] = found
        return found

    def for_request(self, pp: ProxyPass) -> Upstream | None:
        """The upstream of a proxy_pass URL evaluated for one request, found as
        nginx finds it: an ``upstream`` block of that name (when the URL names
        no port), the upstream of another proxy_pass with the same host and
        port, or the address itself when the host is an IP address or a
        UNIX socket.

        Returns:
            The upstream, or None when the host is a name that only a
            resolver could look up (nginx: "no resolver defined to resolve").

        Source: nginx src/http/ngx_http_upstream.c, ngx_http_upstream_init_request.
        """
        host = pp.host.lower()
        if not pp.unix and not pp.explicit_port:
            conf = self.named_lower.get(host)
            if conf is not None:
                return self.by_key[("upstream", conf)]
        found = self.by_address.get((host, pp.port)) if not pp.unix else None
        if found is not None:
            return found
        key = (pp.host, pp.port, pp.unix)
        found = self.dynamic.get(key)
        if found is None:
            if not pp.unix:
                try:
                    ipaddress.ip_address(pp.host)
                except ValueError:
                    return None
            if len(self.dynamic) >= _DYNAMIC_MAX:
                self.dynamic.clear()  # bounded: the URL may come from the client
            found = self.dynamic[key] = self._implicit(pp, None)
        return found

    def _implicit(self, pp: ProxyPass, loc: LocationConf | None) -> Upstream:
        shown = pp.url.split("://", 1)[1].split("/", 1)[0]
        srv = UpstreamServer(shown, pp.host, pp.port, pp.unix)
        peers = _peers(srv, (loc.file, loc.line) if loc is not None else ("", 0))
        return Upstream(PeerGroup(shown, peers), make("round_robin"), None, False, None)
