"""Balancing methods and passive health, as plain objects (no I/O)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyngx.upstream.balancers import Hash, IpHash, LeastConn, Random, RoundRobin
from pyngx.upstream.peers import Peer, PeerGroup


def group(*weights: int, backups: int = 0) -> PeerGroup:
    primary = [Peer(f"10.0.0.{i}:80", f"10.0.0.{i}", 80, weight=w) for i, w in enumerate(weights, 1)]
    backup = [Peer(f"10.0.1.{i}:80", f"10.0.1.{i}", 80, backup=True) for i in range(1, backups + 1)]
    return PeerGroup("u", primary, backup)


def pick(balancer, g: PeerGroup, key: str = "", now: float = 100.0, finish: bool = True) -> Peer | None:
    peer = balancer.select(g, key, set(), now)
    if peer is not None and finish:
        peer.finished(False, now)
    return peer


class TestRoundRobin:
    def test_smooth_weighted_sequence_is_nginx(self):
        """Weights 5,1,1 give nginx's smooth sequence a a b a c a a."""
        g = group(5, 1, 1)
        names = [pick(RoundRobin(), g).host[-1] for _ in range(7)]
        assert names == ["1", "1", "2", "1", "3", "1", "1"]

    def test_distribution_matches_weights(self):
        """Over 3,000 picks weights 1:2:3 give exactly 500:1000:1500."""
        g = group(1, 2, 3)
        counts = Counter(pick(RoundRobin(), g).host for _ in range(3000))
        assert [counts[f"10.0.0.{i}"] for i in (1, 2, 3)] == [500, 1000, 1500]

    def test_tried_peers_are_skipped(self):
        """A peer already tried for this request is not chosen again."""
        g = group(1, 1)
        first = RoundRobin().select(g, "", set(), 0)
        second = RoundRobin().select(g, "", {id(first)}, 0)
        assert second is not None and second is not first
        assert RoundRobin().select(g, "", {id(first), id(second)}, 0) is None


class TestPassiveHealth:
    def test_max_fails_marks_unavailable_for_fail_timeout(self):
        """max_fails failures within fail_timeout make a peer unavailable for fail_timeout."""
        g = group(1, 1)
        bad = g.primary[0]
        bad.max_fails, bad.fail_timeout = 2, 10.0
        for t in (0.0, 1.0):
            bad.chosen(t)
            assert bad.finished(True, t) is (t == 1.0)
        assert not bad.usable(5.0, single=False)
        assert all(pick(RoundRobin(), g, now=5.0).host == "10.0.0.2" for _ in range(10))
        assert bad.usable(11.5, single=False)

    def test_recovered_peer_resets_fails(self):
        """A success after the timeout resets the failure count (nginx: accessed < checked)."""
        g = group(1)
        peer = g.primary[0]
        peer.chosen(0)
        peer.finished(True, 0)
        peer.chosen(20)
        peer.finished(False, 20)
        assert peer.fails == 0

    def test_single_peer_is_never_unavailable(self):
        """A group of one server ignores max_fails, as nginx does."""
        g = group(1)
        peer = g.primary[0]
        for t in range(5):
            peer.chosen(t)
            peer.finished(True, t)
        assert pick(RoundRobin(), g, now=5) is peer

    def test_backup_only_when_primaries_unavailable(self):
        """Backups serve only when every primary is down or failed."""
        g = group(1, 1, backups=1)
        assert {pick(RoundRobin(), g).host for _ in range(10)} == {"10.0.0.1", "10.0.0.2"}
        for p in g.primary:
            p.down = True
        assert pick(RoundRobin(), g).host == "10.0.1.1"

    def test_all_unavailable_gives_none_and_revives(self):
        """When no peer is usable the choice fails at once and fails are reset for quick recovery."""
        g = group(1, 1)
        for p in g.primary:
            p.fails, p.checked = 1, 100.0
        assert RoundRobin().select(g, "", set(), 100.0) is None
        assert all(p.fails == 0 for p in g.primary)

    def test_max_conns(self):
        """A peer at max_conns is skipped."""
        g = group(1, 1)
        g.primary[0].max_conns = 1
        g.primary[0].conns = 1
        assert all(pick(RoundRobin(), g).host == "10.0.0.2" for _ in range(4))


class TestLeastConn:
    def test_least_busy_wins(self):
        """least_conn picks the peer with the fewest active connections per weight."""
        g = group(1, 1, 1)
        g.primary[0].conns, g.primary[1].conns, g.primary[2].conns = 5, 1, 3
        assert pick(LeastConn(), g).host == "10.0.0.2"

    def test_ties_round_robin(self):
        """Equal load falls back to weighted round-robin."""
        g = group(1, 1)
        assert {pick(LeastConn(), g).host for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}


class TestHashing:
    def test_ip_hash_sticks_and_uses_three_octets(self):
        """ip_hash sends one client (and its /24) to one peer."""
        g = group(1, 1, 1)
        a = {pick(IpHash(), g, "192.168.7.10").host for _ in range(20)}
        b = {pick(IpHash(), g, "192.168.7.99").host for _ in range(20)}
        assert len(a) == 1 and a == b

    def test_ip_hash_spreads_networks(self):
        """Different /24 networks spread over the peers."""
        g = group(1, 1, 1)
        hosts = {pick(IpHash(), g, f"10.{i}.{j}.1").host for i in range(10) for j in range(10)}
        assert len(hosts) == 3

    def test_hash_sticks(self):
        """hash KEY maps one key to one peer."""
        g = group(1, 1, 1)
        h = Hash(consistent=False)
        for key in ("alice", "bob", "carol"):
            assert len({pick(h, g, key).host for _ in range(10)}) == 1

    @pytest.mark.parametrize("n", [3, 5, 8])
    def test_consistent_hash_moves_few_keys(self, n):
        """Adding a server to a consistent ring moves at most 1.5/N of 10,000 keys."""
        before = group(*([1] * n))
        after = PeerGroup("u", before.primary + [Peer("10.0.9.9:80", "10.0.9.9", 80)])
        h1, h2 = Hash(consistent=True), Hash(consistent=True)
        keys = [f"/item/{i}" for i in range(10000)]
        moved = sum(pick(h1, before, k).host != pick(h2, after, k).host for k in keys)
        assert moved <= 1.5 * 10000 / (n + 1), moved
        assert moved > 0

    def test_consistent_hash_skips_unavailable(self):
        """A key whose peer is down goes to the next point on the ring."""
        g = group(1, 1, 1)
        h = Hash(consistent=True)
        home = pick(h, g, "k").host
        next(p for p in g.primary if p.host == home).down = True
        assert pick(h, g, "k").host != home


class TestRandom:
    def test_weighted_random(self):
        """random picks by weight."""
        g = group(1, 3)
        r = Random(two=False, rng=random.Random(1))
        counts = Counter(pick(r, g).host for _ in range(4000))
        assert 0.7 < counts["10.0.0.2"] / 4000 < 0.8

    def test_two_least_conn(self):
        """random two picks the less busy of two draws."""
        g = group(1, 1)
        g.primary[0].conns = 10
        r = Random(two=True, rng=random.Random(2))
        counts = Counter(pick(r, g, finish=False).host for _ in range(200))
        assert counts["10.0.0.2"] > counts["10.0.0.1"]
