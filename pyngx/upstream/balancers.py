"""Load-balancing methods: one class each, one ``select()``.

Owns: ``RoundRobin`` (nginx's smooth weighted round-robin, the default),
``LeastConn``, ``IpHash``, ``Hash`` (plain and ``consistent``, ketama-style
points on a ring) and ``Random`` (``random [two [least_conn]]``).

``select(group, key, tried, now)`` returns a usable Peer not in ``tried``,
falling back to the backup peers when no primary is usable, or None when
none is (the caller answers 502: "no live upstreams").

Must not: do I/O, import asyncio or aiohttp.

Source: nginx src/http/ngx_http_upstream_round_robin.c,
ngx_http_upstream_least_conn_module.c, ngx_http_upstream_ip_hash_module.c,
ngx_http_upstream_hash_module.c, ngx_http_upstream_random_module.c.
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import zlib
from collections.abc import Iterable

from pyngx.upstream.peers import Peer, PeerGroup


def _smooth(peers: Iterable[Peer]) -> Peer | None:
    """nginx's smooth weighted round-robin over ``peers`` (already usable)."""
    best: Peer | None = None
    total = 0
    for peer in peers:
        peer.current_weight += peer.effective_weight
        total += peer.effective_weight
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best = peer
    if best is not None:
        best.current_weight -= total
    return best


class Balancer:
    """Base: the primary-then-backup walk shared by every method."""

    def select(self, group: PeerGroup, key: str, tried: set[int], now: float) -> Peer | None:
        """Choose a peer for one attempt.

        Args:
            group: the upstream's peers.
            key: the hash key (client address for ip_hash, the evaluated
                ``hash`` key), "" when the method needs none.
            tried: ids of peers already tried for this request.
            now: time.monotonic().

        Returns:
            The peer (its ``chosen()`` already called), or None.
        """
        primary = group.primary
        single = group.single
        if single and not tried:
            # One peer (every plain proxy_pass): no walk, whatever the method.
            only = primary[0]
            if not only.usable(now, True):
                return None
            only.chosen(now)
            return only
        for peers in (primary, group.backup):
            usable = [p for p in peers if id(p) not in tried and p.usable(now, single)]
            if usable:
                peer = self.pick(peers, usable, key)
                if peer is not None:
                    peer.chosen(now)
                    return peer
        if not tried:
            group.revive(group.primary + group.backup)
        return None

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        raise NotImplementedError


class RoundRobin(Balancer):
    """Weighted round-robin, nginx's smooth algorithm (the default method)."""

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        return _smooth(usable)


class LeastConn(Balancer):
    """``least_conn``: fewest active connections relative to weight; ties by round-robin."""

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        best = min(usable, key=lambda p: p.conns / p.weight)
        ties = [p for p in usable if p.conns * best.weight == best.conns * p.weight]
        return _smooth(ties) if len(ties) > 1 else best


def _walk(peers: list[Peer], usable: list[Peer], point: int) -> Peer | None:
    """nginx's weighted walk: peer owning ``point`` of the total weight, if usable."""
    total = sum(p.weight for p in peers)
    if total == 0:
        return None
    w = point % total
    for peer in peers:
        w -= peer.weight
        if w < 0:
            return peer if peer in usable else None
    return None


class IpHash(Balancer):
    """``ip_hash``: the first three octets of an IPv4 client (all of IPv6) pick the peer.

    After 20 hashes that land on unusable peers, falls back to round-robin, as nginx.
    """

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        try:
            packed = ipaddress.ip_address(key).packed
        except ValueError:
            packed = b""
        octets = packed[:3] if len(packed) == 4 else packed
        h = 89
        for _ in range(20):
            for b in octets:
                h = (h * 113 + b) % 6271
            peer = _walk(peers, usable, h)
            if peer is not None:
                return peer
        return _smooth(usable)


class Hash(Balancer):
    """``hash KEY``: crc32 of the key picks the peer; ``consistent`` uses a ketama ring.

    With ``consistent``, each peer owns 160 points per unit of weight on a
    ring of crc32 values, so adding a peer moves about 1/N of the keys.
    """

    POINTS_PER_WEIGHT = 160

    def __init__(self, consistent: bool) -> None:
        self.consistent = consistent
        self._ring: tuple[list[int], list[Peer]] | None = None
        self._ring_for: int = 0

    def ring(self, peers: list[Peer]) -> tuple[list[int], list[Peer]]:
        if self._ring is None or self._ring_for != id(peers):
            points: list[tuple[int, Peer]] = []
            for peer in peers:
                base = zlib.crc32(f"{peer.host}\0{peer.port}".encode())
                prev = 0
                for _ in range(peer.weight * self.POINTS_PER_WEIGHT):
                    h = zlib.crc32(prev.to_bytes(4, "little"), base)
                    points.append((h, peer))
                    prev = h
            points.sort(key=lambda item: item[0])
            self._ring = ([h for h, _ in points], [p for _, p in points])
            self._ring_for = id(peers)
        return self._ring

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        h = zlib.crc32(key.encode("utf-8", "surrogateescape"))
        if not self.consistent:
            for i in range(20):
                peer = _walk(peers, usable, zlib.crc32(f"{i}{key}".encode()) if i else h)
                if peer is not None:
                    return peer
            return _smooth(usable)
        hashes, owners = self.ring(peers)
        start = bisect.bisect_left(hashes, h)
        n = len(hashes)
        for i in range(n):
            peer = owners[(start + i) % n]
            if peer in usable:
                return peer
        return None


class Random(Balancer):
    """``random [two [least_conn]]``: a weighted random peer, or the better of two."""

    def __init__(self, two: bool, rng: random.Random | None = None) -> None:
        self.two = two
        self.rng = rng or random.Random()

    def pick(self, peers: list[Peer], usable: list[Peer], key: str) -> Peer | None:
        weights = [p.weight for p in usable]
        first = self.rng.choices(usable, weights)[0]
        if not self.two or len(usable) < 2:
            return first
        second = self.rng.choices(usable, weights)[0]
        return first if first.conns * second.weight <= second.conns * first.weight else second


def make(method: str, consistent: bool = False, two: bool = False) -> Balancer:
    """The balancer for an upstream's method name (round_robin, least_conn, ip_hash, hash, random)."""
    if method == "least_conn":
        return LeastConn()
    if method == "ip_hash":
        return IpHash()
    if method == "hash":
        return Hash(consistent)
    if method == "random":
        return Random(two)
    return RoundRobin()
