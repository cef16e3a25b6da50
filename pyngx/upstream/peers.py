"""Peer: the runtime member of an upstream group, and its passive health.

Owns: ``Peer`` (address, weight, max_fails, fail_timeout, backup, down,
max_conns, and the counters nginx keeps: current and effective weight,
fails, accessed, checked, conns) and ``PeerGroup`` (primary and backup
peers of one upstream). A reload keeps a group's peers when the upstream
did not change (``PeerGroup.key``), so failure counts survive it.

Must not: do I/O, import asyncio or aiohttp.

Source: nginx src/http/ngx_http_upstream_round_robin.c
(ngx_http_upstream_get_peer, ngx_http_upstream_free_round_robin_peer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Peer:
    """One upstream server address and its state.

    Attributes:
        name: "host:port" or "unix:/path", as logged in ``$upstream_addr``.
        host, port: where to connect; for UNIX sockets host is the path, port 0.
        unix: the peer is a UNIX-domain socket.
        weight: the ``weight=`` parameter (>= 1).
        max_fails: failures within fail_timeout that make it unavailable (0: never).
        fail_timeout: seconds: the window for counting, and how long it stays unavailable.
        backup: used only when every primary peer is unavailable.
        down: marked permanently unavailable.
        max_conns: at most this many active connections (0: no limit).
    """

    name: str
    host: str
    port: int
    unix: bool = False
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    max_conns: int = 0
    current_weight: int = 0
    effective_weight: int = field(default=0)
    fails: int = 0
    accessed: float = 0.0
    checked: float = 0.0
    conns: int = 0

    def __post_init__(self) -> None:
        self.effective_weight = self.weight

    def usable(self, now: float, single: bool) -> bool:
        """Whether the peer may be chosen now (nginx's get_peer checks)."""
        if self.down:
            return False
        if self.max_conns and self.conns >= self.max_conns:
            return False
        if single:
            # "If there is only a single server in a group, max_fails,
            # fail_timeout and backup are ignored" (nginx docs, server).
            return True
        return not (self.max_fails and self.fails >= self.max_fails and now - self.checked <= self.fail_timeout)

    def chosen(self, now: float) -> None:
        """Note that a request goes to this peer."""
        self.conns += 1
        if now - self.checked > self.fail_timeout:
            self.checked = now

    def finished(self, failed: bool, now: float | None = None) -> bool:
        """Record the end of a request to this peer.

        Args:
            failed: the attempt counted as a failure (per proxy_next_upstream).
            now: the time (time.monotonic()).

        Returns:
            True when this failure made the peer unavailable.
        """
        now = time.monotonic() if now is None else now
        self.conns -= 1
        if failed:
            self.fails += 1
            self.accessed = self.checked = now
            if self.max_fails:
                self.effective_weight -= self.weight // self.max_fails
                if self.effective_weight < 0:
                    self.effective_weight = 0
                return self.fails == self.max_fails
            return False
        if self.accessed < self.checked:
            self.fails = 0
        return False


@dataclass(eq=False)
class PeerGroup:
    """The peers of one upstream: primaries and backups.

    Attributes:
        name: the upstream's name (or "host:port" of a plain proxy_pass).
        primary: non-backup peers, in config order.
        backup: backup peers, in config order.
        key: identity for reuse across reloads (the upstream's servers as written).
    """

    name: str
    primary: list[Peer]
    backup: list[Peer] = field(default_factory=list)
    key: tuple[object, ...] = ()

    @property
    def single(self) -> bool:
        return len(self.primary) == 1 and not self.backup

    def revive(self, peers: list[Peer]) -> None:
        """All peers failed: mark them live for quick recovery, as nginx does."""
        for peer in peers:
            peer.fails = 0


Clock = Callable[[], float]
