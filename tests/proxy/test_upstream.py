"""Upstream groups end to end: balancing, failover, retries, keepalive, reload."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import Backend, free_port, start_backend, wait_for


def conf(port: int, upstream: str, location: str = "", http_extra: str = "") -> str:
    return f"""
error_log stderr notice;
http {{
    log_format up '$request_uri $status "$upstream_addr" "$upstream_status"';
    access_log stdout up;
    {http_extra}
    upstream app {{
        {upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; {location} }}
    }}
}}
"""


@pytest.fixture
def backends():
    started = [start_backend() for _ in range(3)]
    yield [b for b, _ in started]
    for _, stop in started:
        stop()


async def fetch_many(url: str, n: int, concurrency: int = 8, method: str = "GET") -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> None:
            async with sem:
                async with s.request(method, f"{url}?i={i}") as r:
                    await r.read()
                    out.append((r.status, r.headers.get("X-Backend", "")))

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


class TestBalancing:
    async def test_weights_over_3000_requests(self, run_pyngx, backends):
        """Weighted round-robin 1:2:3 over 3,000 requests lands within 2% of 500/1000/1500."""
        port = free_port()
        servers = "\n".join(f"server 127.0.0.1:{b.port} weight={w};" for b, w in zip(backends, (1, 2, 3)))
        run_pyngx(conf(port, servers, http_extra="access_log off;").replace("access_log stdout up;", ""), port=port)
        results = await fetch_many(f"http://127.0.0.1:{port}/w", 3000, concurrency=16)
        counts = Counter(b for _, b in results)
        for b, expected in zip(backends, (500, 1000, 1500)):
            assert abs(counts[str(b.port)] - expected) <= 0.02 * 3000, counts

    async def test_least_conn_prefers_idle_backend(self, run_pyngx):
        """least_conn sends new requests to the backend that is not busy with slow ones."""
        async def slow(request):
            await asyncio.sleep(1.5)
            return web.Response(text="slow", headers={"X-Backend": "slow"})

        async def fast(request):
            return web.Response(text="fast", headers={"X-Backend": "fast"})

        a, stop_a = start_backend([("GET", "/job", slow)])
        b, stop_b = start_backend([("GET", "/job", fast)])
        try:
            port = free_port()
            run_pyngx(conf(port, f"least_conn; server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port};"), port=port)
            async with aiohttp.ClientSession() as s:
                first = asyncio.ensure_future(s.get(f"http://127.0.0.1:{port}/job"))
                await asyncio.sleep(0.3)
                later = []
                for _ in range(10):
                    async with s.get(f"http://127.0.0.1:{port}/job") as r:
                        later.append(r.headers["X-Backend"])
                r0 = await first
                first_backend = r0.headers["X-Backend"]
                r0.release()
            assert first_backend == "slow" or later.count("slow") <= 1
            assert later.count("fast") >= 9, later
        finally:
            stop_a()
            stop_b()

    async def test_ip_hash_and_hash_stick(self, run_pyngx, backends):
        """ip_hash keeps one client on one backend; hash $arg_user keeps one key on one backend."""
        port = free_port()
        servers = "".join(f"server 127.0.0.1:{b.port};" for b in backends)
        run_pyngx(conf(port, "ip_hash;" + servers), port=port)
        results = await fetch_many(f"http://127.0.0.1:{port}/ip", 30)
        assert len({b for _, b in results}) == 1
        port2 = free_port()
        run_pyngx(conf(port2, "hash $arg_user;" + servers), port=port2)
        async with aiohttp.ClientSession() as s:
            homes: dict[str, set[str]] = {}
            for i in range(60):
                user = f"u{i % 12}"
                async with s.get(f"http://127.0.0.1:{port2}/h?user={user}") as r:
                    homes.setdefault(user, set()).add(r.headers["X-Backend"])
        assert all(len(v) == 1 for v in homes.values())
        assert len(set().union(*homes.values())) > 1


def _closer_backend() -> tuple[int, list[bytes], socket.socket]:
    """A backend that reads a request and closes without answering."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    received: list[bytes] = []

    def run() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                received.append(conn.recv(65536))
            except OSError:
                pass
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1], received, srv


class TestFailover:
    async def test_backend_killed_during_gets_loses_none(self, run_pyngx, backends):
        """Killing a backend during a steady stream of GETs loses no request (they are retried)."""
        port = free_port()
        servers = "".join(f"server 127.0.0.1:{b.port} max_fails=1 fail_timeout=30s;" for b in backends)
        p = run_pyngx(conf(port, servers, "proxy_read_timeout 5s;"), port=port)
        victim = backends[1]
        killed = threading.Event()
        results: list[tuple[int, str]] = []
        async with aiohttp.ClientSession() as s:

            async def stream(worker: int) -> None:
                for i in range(150):
                    if worker == 0 and i == 40 and not killed.is_set():
                        await asyncio.to_thread(_stop_backend, victim)
                        killed.set()
                    async with s.get(f"http://127.0.0.1:{port}/g?w={worker}&i={i}") as r:
                        await r.read()
                        results.append((r.status, r.headers.get("X-Backend", "")))

            await asyncio.gather(*(stream(w) for w in range(4)))
        statuses = Counter(st for st, _ in results)
        wait_for(lambda: p.stdout.count("\n") >= 600)
        retried = [ln for ln in p.stdout.splitlines() if '", ' in ln.split('"')[1] or ", " in ln.split('"')[1]]
        print(f"failover: sent {len(results)}, failed {len(results) - statuses[200]}, retried {len(retried)}")
        assert statuses == {200: 600}
        assert any(b == str(victim.port) for _, b in results[:100])
        assert retried, "the kill should have caused at least one retry"

    async def test_post_to_dead_server_not_replayed(self, run_pyngx, backends):
        """A POST that reached a server which then failed is not sent to another (502), unless non_idempotent."""
        cport, received, srv = _closer_backend()
        try:
            good = backends[0]
            port = free_port()
            run_pyngx(conf(port, f"server 127.0.0.1:{cport}; server 127.0.0.1:{good.port};"), port=port)
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{port}/pay", data=b"amount=10") as r:
                    assert r.status == 502
            assert received and received[0].startswith(b"POST /pay")
            assert not any(seen.method == "POST" for seen in good.seen)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/read") as r:
                    assert r.status == 200  # an idempotent request is retried on the good one
            port2 = free_port()
            run_pyngx(conf(port2, f"server 127.0.0.1:{cport}; server 127.0.0.1:{good.port};",
                           "proxy_next_upstream error timeout non_idempotent;"), port=port2)
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{port2}/pay", data=b"amount=10") as r:
                    assert r.status == 200
            assert any(seen.method == "POST" and seen.body_len == 9 for seen in good.seen)
        finally:
            srv.close()

    async def test_streamed_body_is_never_replayed(self, run_pyngx, backends):
        """A PUT whose large body began streaming is not replayed on another peer (documented)."""
        cport, received, srv = _closer_backend()
        try:
            good = backends[0]
            port = free_port()
            run_pyngx(conf(port, f"server 127.0.0.1:{cport}; server 127.0.0.1:{good.port};",
                           "proxy_next_upstream error timeout non_idempotent;"), port=port)
            async with aiohttp.ClientSession() as s:
                async with s.put(f"http://127.0.0.1:{port}/big", data=b"x" * (1024 * 1024)) as r:
                    assert r.status == 502
            assert not any(seen.method == "PUT" for seen in good.seen)
        finally:
            srv.close()

    async def test_dead_server_comes_back_after_fail_timeout(self, run_pyngx, backends):
        """A server that was down is tried again after fail_timeout and used when it is back."""
        dead_port = free_port()
        good = backends[0]
        port = free_port()
        p = run_pyngx(conf(port, f"server 127.0.0.1:{dead_port} max_fails=1 fail_timeout=1s; server 127.0.0.1:{good.port};"), port=port)
        first = await fetch_many(f"http://127.0.0.1:{port}/a", 6, concurrency=1)
        assert all(st == 200 for st, _ in first)
        wait_for(lambda: p.stderr.count("Connection refused") == 1)
        revived, stop = start_backend(port=dead_port)
        try:
            await asyncio.sleep(1.2)  # fail_timeout passes
            later = await fetch_many(f"http://127.0.0.1:{port}/b", 10, concurrency=1)
            assert any(b == str(dead_port) for _, b in later)
        finally:
            stop()

    async def test_backup_only_when_primaries_down(self, run_pyngx, backends):
        """A backup server gets requests only once every primary is unavailable."""
        a, b, c = backends
        port = free_port()
        run_pyngx(conf(port, f"server 127.0.0.1:{a.port}; server 127.0.0.1:{b.port}; server 127.0.0.1:{c.port} backup;"), port=port)
        first = await fetch_many(f"http://127.0.0.1:{port}/x", 20)
        assert str(c.port) not in {b_ for _, b_ in first}
        _stop_backend(a)
        _stop_backend(b)
        later = await fetch_many(f"http://127.0.0.1:{port}/y", 10, concurrency=1)
        assert all(st == 200 and b_ == str(c.port) for st, b_ in later), later

    async def test_all_down_is_502_at_once(self, run_pyngx):
        """With every server refusing, the client gets 502 quickly, never a hang."""
        port = free_port()
        p = run_pyngx(conf(port, f"server 127.0.0.1:{free_port()}; server 127.0.0.1:{free_port()};"), port=port)
        t0 = time.monotonic()
        results = await fetch_many(f"http://127.0.0.1:{port}/z", 5, concurrency=1)
        assert [st for st, _ in results] == [502] * 5
        assert time.monotonic() - t0 < 5
        wait_for(lambda: "no live upstreams" in p.stderr)

    async def test_status_retry_and_upstream_addr(self, run_pyngx, backends):
        """proxy_next_upstream http_502 passes a 502 answer to the next server; $upstream_addr lists both."""
        async def bad(request):
            return web.Response(status=502, text="bad")

        b502, stop = start_backend([("GET", "/s", bad)])
        try:
            good = backends[0]
            port = free_port()
            p = run_pyngx(conf(port, f"server 127.0.0.1:{b502.port}; server 127.0.0.1:{good.port};",
                               "proxy_next_upstream error timeout http_502;"), port=port)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/s") as r:
                    assert r.status == 200
            wait_for(lambda: "/s 200" in p.stdout)
            line = next(ln for ln in p.stdout.splitlines() if ln.startswith("/s "))
            assert line == f'/s 200 "127.0.0.1:{b502.port}, 127.0.0.1:{good.port}" "502, 200"'
        finally:
            stop()


def _stop_backend(b: Backend) -> None:
    assert b.loop is not None and b.runner is not None
    fut = asyncio.run_coroutine_threadsafe(b.runner.cleanup(), b.loop)
    fut.result(10)


class TestKeepaliveAndReload:
    async def test_keepalive_reuses_connections(self, run_pyngx, backends):
        """100 sequential requests through pyngx reach the backend over one or two TCP connections."""
        b = backends[0]
        port = free_port()
        run_pyngx(conf(port, f"server 127.0.0.1:{b.port}; keepalive 8;"), port=port)
        await fetch_many(f"http://127.0.0.1:{port}/k", 100, concurrency=1)
        assert len(b.seen) == 100
        assert len(b.peers) <= 2, b.peers

    async def test_peer_state_survives_unrelated_reload(self, run_pyngx, backends):
        """A server marked failed stays failed across a reload that does not change its upstream."""
        dead_port = free_port()
        good = backends[0]
        port = free_port()
        ups = f"server 127.0.0.1:{dead_port} max_fails=1 fail_timeout=60s; server 127.0.0.1:{good.port};"
        p = run_pyngx(conf(port, ups), port=port)
        await fetch_many(f"http://127.0.0.1:{port}/a", 4, concurrency=1)
        wait_for(lambda: p.stderr.count("Connection refused") == 1)
        p.conf.write_text(conf(port, ups, "proxy_set_header X-Reloaded yes;"))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in p.stderr)
        await fetch_many(f"http://127.0.0.1:{port}/b", 6, concurrency=1)
        assert good.last.header("X-Reloaded") == "yes"
        assert p.stderr.count("Connection refused") == 1  # the dead server was not tried again
