"""Static files end to end: pyngx as a subprocess serving a real directory
to real clients on loopback.

What nginx comparisons cannot show is here: big files stream in chunks
with bounded memory, a client that stops reading holds no one else up, a
client that leaves stops the reads and leaks no descriptor, the error-log
lines, "include mime.types" and relative roots, and the places where
pyngx refuses what nginx serves (a file name outside the root).
Byte-for-byte behaviour against nginx: tests/differential/test_static_*.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from pyngx.conditional import RANGE_NOT_SATISFIABLE, etag_matches, parse_ranges
from tests.conftest import Pyngx, free_port, wait_for


def conf(port: int, body: str, http_extra: str = "", log: Path | None = None) -> str:
    access = f"access_log {log} static;" if log is not None else "access_log off;"
    return f"""
error_log stderr info;
http {{
    log_format static '$status $body_bytes_sent $request_uri';
    {access}
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        server_name static.test;
        {body}
    }}
}}
"""


def pattern(n: int) -> bytes:
    """n bytes that differ from chunk to chunk (so a misplaced chunk shows)."""
    block = hashlib.sha256(b"x").digest() * 2048  # 64 KiB
    out = bytearray()
    i = 0
    while len(out) < n:
        out += bytes([i % 251]) + block[1:]
        i += 1
    return bytes(out[:n])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A document root with small files, a 1 MiB patterned file and a directory."""
    r = tmp_path / "www"
    (r / "dir").mkdir(parents=True)
    (r / "a.txt").write_bytes(b"hello\n")
    (r / "style.css").write_bytes(b"p{}\n")
    (r / "font.woff2").write_bytes(b"w")
    (r / "movie.mp4").write_bytes(b"m")
    (r / "dir" / "index.html").write_bytes(b"<h1>dir</h1>\n")
    (r / "big.bin").write_bytes(pattern(1024 * 1024 + 17))
    (tmp_path / "secret.txt").write_bytes(b"outside the root\n")
    return r


def serve(run_pyngx: Callable[..., Pyngx], body: str, http_extra: str = "",
          log: Path | None = None) -> tuple[str, Pyngx]:
    port = free_port()
    p = run_pyngx(conf(port, body, http_extra, log), port=port)
    return f"http://127.0.0.1:{port}", p


def raw_get(port: int, target: str, method: str = "GET") -> socket.socket:
    """A connected socket with a request sent (the caller reads, or does not)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"{method} {target} HTTP/1.1\r\nHost: static.test\r\n\r\n".encode())
    return s


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class TestStreaming:
    async def test_big_file_streams_with_bounded_memory(self, run_pyngx, tmp_path):
        """A 256 MiB file reaches the client whole while pyngx's memory grows by far less than the file."""
        big = tmp_path / "huge"
        big.mkdir()
        with open(big / "sparse.bin", "wb") as f:
            f.truncate(256 * 1024 * 1024)  # reads as zeros, takes no disk
        base, p = serve(run_pyngx, f"root {big};")
        before = p.rss_kib()
        peak, h, n = before, hashlib.sha256(), 0
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/sparse.bin") as r:
                assert r.headers["Content-Length"] == str(256 * 1024 * 1024)
                async for chunk in r.content.iter_chunked(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    if n % (16 << 20) < len(chunk):
                        peak = max(peak, p.rss_kib())
        zeros = hashlib.sha256()
        block = bytes(1 << 20)
        for _ in range(256):
            zeros.update(block)
        assert n == 256 * 1024 * 1024 and h.hexdigest() == zeros.hexdigest()
        assert peak - before < 48 * 1024, f"RSS grew by {peak - before} KiB"

    async def test_client_that_stops_reading_holds_no_one_up(self, run_pyngx, root):
        """While one client leaves a big answer unread, other requests are answered at once."""
        big = root / "huge.bin"
        with open(big, "wb") as f:
            f.truncate(64 * 1024 * 1024)
        base, p = serve(run_pyngx, f"root {root};")
        port = int(base.rsplit(":", 1)[1])
        stalled = raw_get(port, "/huge.bin")
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            assert stalled.recv(100).startswith(b"HTTP/1.1 200")
            rss = p.rss_kib()
            started = time.monotonic()
            async with aiohttp.ClientSession() as s:
                for _ in range(20):
                    async with s.get(f"{base}/a.txt") as r:
                        assert await r.read() == b"hello\n"
            assert time.monotonic() - started < 5
            assert p.rss_kib() - rss < 16 * 1024  # the unread file is not buffered in pyngx
        finally:
            stalled.close()

    async def test_client_gone_mid_file(self, run_pyngx, root, tmp_path):
        """A client that leaves mid-file: the access log shows 200 and the bytes sent; no descriptor leaks."""
        with open(root / "huge.bin", "wb") as f:
            f.truncate(64 * 1024 * 1024)
        log = tmp_path / "access.log"
        base, p = serve(run_pyngx, f"root {root};", log=log)
        port = int(base.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as s:  # warm up: the first request opens logs and threads
            async with s.get(f"{base}/a.txt") as r:
                await r.read()
        wait_for(lambda: log.exists() and log.read_text().count("\n") == 1)
        baseline = fds(p.pid)
        for _ in range(5):
            sock = raw_get(port, "/huge.bin")
            got = 0
            while got < 300_000:
                got += len(sock.recv(65536))
            sock.close()
        wait_for(lambda: log.read_text().count("\n") == 6, timeout=20)
        for line in log.read_text().splitlines()[1:]:
            status, sent, uri = line.split()
            assert (status, uri) == ("200", "/huge.bin")
            assert 0 < int(sent) < 64 * 1024 * 1024
        wait_for(lambda: fds(p.pid) <= baseline, timeout=10)

    async def test_no_descriptor_leak(self, run_pyngx, root):
        """Files, ranges, 304s, 404s, directories and listings leave no descriptor open."""
        base, p = serve(run_pyngx, f"root {root}; location /l/ {{ alias {root}/; autoindex on; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/a.txt") as r:
                await r.read()
                etag = r.headers["ETag"]
            baseline = fds(p.pid)
            for _ in range(20):
                for path, headers in (("/a.txt", {}), ("/big.bin", {"Range": "bytes=1-70000,80000-"}),
                                      ("/a.txt", {"If-None-Match": etag}), ("/missing", {}), ("/dir", {}),
                                      ("/dir/", {}), ("/l/", {}), ("/big.bin", {"Range": "bytes=9999999-"})):
                    async with s.get(f"{base}{path}", headers=headers, allow_redirects=False) as r:
                        await r.read()
        assert fds(p.pid) <= baseline

    async def test_range_across_chunks(self, run_pyngx, root):
        """A range that spans read chunks is the exact bytes; so is each part of a multipart answer."""
        data = (root / "big.bin").read_bytes()
        base, _ = serve(run_pyngx, f"root {root};")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/big.bin", headers={"Range": "bytes=65530-200000"}) as r:
                assert r.status == 206
                assert r.headers["Content-Range"] == f"bytes 65530-200000/{len(data)}"
                assert await r.read() == data[65530:200001]
            async with s.get(f"{base}/big.bin", headers={"Range": "bytes=0-9,-70000"}) as r:
                body = await r.read()
                boundary = r.headers["Content-Type"].split("boundary=")[1].encode()
            parts = body.split(b"\r\n--" + boundary)
            assert parts[1].endswith(b"\r\n\r\n" + data[:10])
            assert parts[2].endswith(b"\r\n\r\n" + data[-70000:])
            assert parts[3] == b"--\r\n"

    def test_empty_file_keeps_the_connection(self, run_pyngx, root):
        """An empty file's answer ends properly: the next request on the connection is answered."""
        (root / "empty").write_bytes(b"")
        base, _ = serve(run_pyngx, f"root {root};")
        port = int(base.rsplit(":", 1)[1])
        sock = raw_get(port, "/empty")
        sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: static.test\r\n\r\n")
        data = b""
        while b"hello\n" not in data:
            more = sock.recv(65536)
            assert more, data
            data += more
        sock.close()
        assert data.count(b"HTTP/1.1 200") == 2 and b"content-length: 0\r\n" in data.lower()

    def test_head_sends_no_body(self, run_pyngx, root):
        """HEAD of a big file: its Content-Length, and not one body byte."""
        base, _ = serve(run_pyngx, f"root {root};")
        port = int(base.rsplit(":", 1)[1])
        sock = raw_get(port, "/big.bin", "HEAD")
        sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: static.test\r\n\r\n")  # pipelined: must come right after
        data = b""
        while b"hello\n" not in data:
            more = sock.recv(65536)
            assert more, data
            data += more
        sock.close()
        head, rest = data.split(b"\r\n\r\n", 1)
        assert f"content-length: {1024 * 1024 + 17}".encode() in head.lower()
        assert rest.startswith(b"HTTP/1.1 200")


class TestErrorLog:
    async def test_missing_file_logs_nginx_line(self, run_pyngx, root):
        """A missing file: 404 and nginx's open() failed line with the request context."""
        base, p = serve(run_pyngx, f"root {root};")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/missing.txt") as r:
                assert r.status == 404
                assert "<center><h1>404 Not Found</h1></center>" in await r.text()
        line = f'open() "{root}/missing.txt" failed (2: No such file or directory), client: 127.0.0.1, ' \
               f'server: static.test, request: "GET /missing.txt HTTP/1.1"'
        wait_for(lambda: line in p.stderr)
        assert "[error]" in next(x for x in p.stderr.splitlines() if line in x)

    async def test_log_not_found_off(self, run_pyngx, root):
        """log_not_found off: the 404 is not logged."""
        base, p = serve(run_pyngx, f"root {root}; log_not_found off; location = /x {{ return 200; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/missing.txt") as r:
                assert r.status == 404
            async with s.get(f"{base}/dir/missing/") as r:
                assert r.status == 404
        assert "missing" not in p.stderr

    async def test_directory_without_index_logs_forbidden(self, run_pyngx, root):
        """A directory without index and autoindex off: 403 and nginx's "directory index ... is forbidden"."""
        (root / "empty").mkdir()
        base, p = serve(run_pyngx, f"root {root};")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/empty/") as r:
                assert r.status == 403
        wait_for(lambda: f'directory index of "{root}/empty/" is forbidden' in p.stderr)


class TestConfigFiles:
    async def test_include_mime_types_uses_shipped_copy(self, run_pyngx, root):
        """"include mime.types" with no mime.types next to the config reads the copy pyngx ships."""
        base, p = serve(run_pyngx, f"root {root};", http_extra="include mime.types; default_type application/x-d;")
        assert not (p.workdir / "mime.types").exists()
        want = {"/style.css": "text/css", "/font.woff2": "font/woff2", "/movie.mp4": "video/mp4",
                "/big.bin": "application/octet-stream", "/a.txt": "text/plain", "/dir/index.html": "text/html"}
        async with aiohttp.ClientSession() as s:
            for path, ctype in want.items():
                async with s.get(f"{base}{path}") as r:
                    assert r.headers["Content-Type"] == ctype, path

    async def test_include_mime_types_prefers_local_file(self, run_pyngx, root, tmp_path):
        """A mime.types next to the config wins over the shipped copy."""
        port = free_port()
        text = conf(port, f"root {root};", http_extra="include mime.types;")
        workdir = tmp_path / "local"
        workdir.mkdir()
        (workdir / "mime.types").write_text("types { text/x-local css; }\n")
        (workdir / "pyngx.conf").write_text(text)
        p = Pyngx(workdir, text, ("127.0.0.1", port))
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/style.css") as r:
                    assert r.headers["Content-Type"] == "text/x-local"
                async with s.get(f"http://127.0.0.1:{port}/a.txt") as r:
                    assert r.headers["Content-Type"] == "text/plain"  # default_type
        finally:
            p.stop()

    async def test_default_root_is_html_next_to_config(self, run_pyngx):
        """A location with neither proxy_pass nor root serves html/ beside the config file."""
        port = free_port()
        p = run_pyngx(conf(port, "location / { }"), wait=None)
        (p.workdir / "html").mkdir()
        (p.workdir / "html" / "index.html").write_text("<h1>default root</h1>\n")
        from tests.conftest import wait_listening

        wait_listening("127.0.0.1", port, proc=p.proc)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200
                assert await r.text() == "<h1>default root</h1>\n"

    async def test_relative_root_and_alias(self, run_pyngx):
        """Relative root and alias paths start at the config file's directory."""
        port = free_port()
        p = run_pyngx(conf(port, "root site; location /assets/ { alias files/; }"), wait=None)
        (p.workdir / "site").mkdir()
        (p.workdir / "site" / "r.txt").write_text("root\n")
        (p.workdir / "files").mkdir()
        (p.workdir / "files" / "f.txt").write_text("alias\n")
        from tests.conftest import wait_listening

        wait_listening("127.0.0.1", port, proc=p.proc)
        async with aiohttp.ClientSession() as s:
            for path, text in (("/r.txt", "root\n"), ("/assets/f.txt", "alias\n")):
                async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                    assert await r.text() == text


class TestInsideTheRoot:
    """Differs from nginx, on purpose: no request reads a file outside its root."""

    async def test_alias_without_trailing_slash_cannot_climb(self, run_pyngx, root):
        """"location /img { alias .../www/; }" and "/img../secret.txt": 404 (nginx serves ../secret.txt)."""
        base, p = serve(run_pyngx, f"location /img {{ alias {root}/; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/img../secret.txt") as r:
                assert r.status == 404
            async with s.get(f"{base}/img/a.txt") as r:
                assert await r.text() == "hello\n"
        wait_for(lambda: f'"{root}/../secret.txt" is outside "{root}/"' in p.stderr)

    async def test_regex_alias_capture_cannot_climb(self, run_pyngx, root):
        """A capture holding "../" (from "/c../x") cannot take a regex alias out of its directory."""
        base, _ = serve(run_pyngx, f"location ~ ^/c(.*)$ {{ alias {root}/$1; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/c../secret.txt") as r:
                assert r.status == 404
            async with s.get(f"{base}/c/a.txt") as r:
                assert await r.text() == "hello\n"

    async def test_rewrite_cannot_climb(self, run_pyngx, root):
        """A rewritten URI with a ".." segment is not opened outside the root."""
        base, _ = serve(run_pyngx, f"root {root}; location /r {{ rewrite ^/r(.*)$ /.$1 break; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/r./secret.txt") as r:
                assert r.status == 404
            async with s.get(f"{base}/r/a.txt") as r:  # "/./a.txt"
                assert await r.text() == "hello\n"

    def test_encoded_dot_dot_and_slashes(self, run_pyngx, root):
        """%2e%2e and %2f decode before the URI is normalized: climbing above "/" is a 400."""
        base, _ = serve(run_pyngx, f"root {root};")
        port = int(base.rsplit(":", 1)[1])
        for target in ("/%2e%2e/secret.txt", "/dir%2f..%2f..%2fsecret.txt", "/..%2Fsecret.txt"):
            sock = raw_get(port, target)
            assert sock.recv(100).startswith(b"HTTP/1.1 400"), target
            sock.close()
        sock = raw_get(port, "/dir%2f..%2fa.txt")  # stays inside: /a.txt
        data = b""
        while b"hello\n" not in data:
            more = sock.recv(4096)
            assert more, data
            data += more
        sock.close()

    async def test_symlinks_are_followed(self, run_pyngx, root):
        """As nginx's default disable_symlinks off: a link to a file outside the root is served."""
        (root / "link.txt").symlink_to(root.parent / "secret.txt")
        base, _ = serve(run_pyngx, f"root {root};")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/link.txt") as r:
                assert await r.text() == "outside the root\n"


class TestPhases:
    async def test_try_files_loop_is_a_500(self, run_pyngx, root):
        """try_files falling back to itself stops after nginx's 10 internal redirects: 500."""
        base, p = serve(run_pyngx, f"root {root}; location / {{ try_files $uri /loop; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/x") as r:
                assert r.status == 500
            async with s.get(f"{base}/a.txt") as r:
                assert r.status == 200
        wait_for(lambda: 'rewrite or internal redirection cycle while internally redirecting to "/loop"' in p.stderr)

    async def test_try_files_before_proxy_pass(self, run_pyngx, root, backend):
        """try_files in a location with proxy_pass: a missing file goes to the fallback (nginx's phase order)."""
        base, _ = serve(run_pyngx, f"root {root}; location / {{ try_files $uri @app; }} "
                                   f"location @app {{ proxy_pass {backend.url}; }}")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/a.txt") as r:
                assert await r.text() == "hello\n"
            async with s.get(f"{base}/api/x?q=1") as r:
                assert (await r.json())["path"] == "/api/x?q=1"

    async def test_index_redirect_finds_its_location(self, run_pyngx, root):
        """The index file is an internal redirect: its URI picks its own location."""
        base, _ = serve(run_pyngx, f'root {root}; location = /dir/index.html {{ return 200 "by location\\n"; }}')
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/dir/") as r:
                assert await r.text() == "by location\n"

    async def test_directory_redirect_is_absolute(self, run_pyngx, root):
        """A directory without its slash: 301 to the absolute URL with the slash and the arguments."""
        base, _ = serve(run_pyngx, f"root {root};")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/dir?a=1", allow_redirects=False, headers={"Host": "files.test:8080"}) as r:
                assert r.status == 301
                port = base.rsplit(":", 1)[1]
                assert r.headers["Location"] == f"http://files.test:{port}/dir/?a=1"


class TestRanges:
    """nginx's Range parsing, directly (tests/differential covers the answers)."""

    @pytest.mark.parametrize(("spec", "size", "want"), [
        ("0-0", 10, [(0, 1)]),
        ("-3", 10, [(7, 10)]),
        ("8-", 10, [(8, 10)]),
        ("5-100", 10, [(5, 10)]),
        ("0-1,4-5", 10, [(0, 2), (4, 6)]),
        ("0-9,0-9", 10, None),  # more than the file: the whole file
        ("10-", 10, RANGE_NOT_SATISFIABLE),
        ("99999999999999999999-", 10, RANGE_NOT_SATISFIABLE),  # over off_t
        ("0-99999999999999999999", 10, RANGE_NOT_SATISFIABLE),
        ("x", 10, RANGE_NOT_SATISFIABLE),
        ("0-0", 0, None),
    ])
    def test_parse_ranges(self, spec, size, want):
        """parse_ranges gives nginx's ranges, 416 or the whole file."""
        assert parse_ranges(spec, size, 2**31 - 1) == want

    def test_max_ranges(self):
        """More ranges than max_ranges: the whole file."""
        assert parse_ranges("0-1,3-4", 10, 1) is None
        assert parse_ranges("0-1", 10, 1) == [(0, 2)]

    @pytest.mark.parametrize(("header", "weak", "want"), [
        ('"a-1"', False, True), ('"b", "a-1"', False, True), ('W/"a-1"', False, False), ('W/"a-1"', True, True),
        ("*", False, True), ('"a-1"x', True, False), ('"a-1" , "c"', True, True), ("", True, False),
    ])
    def test_etag_lists(self, header, weak, want):
        """If-Match (strong) and If-None-Match (weak) lists are read as nginx reads them."""
        assert etag_matches('"a-1"', header, weak) is want


def test_many_parallel_downloads(run_pyngx, root):
    """Twenty clients downloading the same 1 MiB file at once each get every byte."""
    data = (root / "big.bin").read_bytes()
    base, _ = serve(run_pyngx, f"root {root};")

    async def main() -> list[bytes]:
        async with aiohttp.ClientSession() as s:
            async def one() -> bytes:
                async with s.get(f"{base}/big.bin") as r:
                    return await r.read()
            return await asyncio.gather(*(one() for _ in range(20)))

    assert all(body == data for body in asyncio.run(main()))
