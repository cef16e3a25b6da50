"""Fixtures of the differential suite: the backends, a document root, and ``differ``.

``recorder``: an aiohttp backend on 127.0.0.1 and on a UNIX socket that
records, per request, the method, raw target, HTTP version, header fields in
order, body and the socket it came in on. Query arguments steer its answer:
``status=N``, ``set_NAME=VALUE`` (a response field), ``sleep=S`` (answer after
S seconds), ``chunked=1`` (no Content-Length), ``body=TEXT``, ``bytes=N``
(a body of N bytes). A WebSocket
handshake to a path under /ws is accepted (subprotocol "chat") and echoes
text messages.

``raw_backend``: a TCP backend that sends canned, often malformed, answers
(RAW_ANSWERS). ``docroot``: files with fixed contents and mtimes (DOCROOT).

``differ``: ``differ(CONF)`` returns the ``Pair`` for a config text: one
nginx and one pyngx run for the whole session and are reloaded with each
new config (harness.Daemons). Skips (saying why) when no nginx binary is
found. A config that pyngx refuses with "... is not supported by pyngx"
makes its cases XFAIL with that line (a feature not built yet; they run as
soon as pyngx accepts it).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import free_port, nginx_binary
from tests.differential.harness import Daemons, Pair, Unsupported


@dataclass
class Seen:
    """What the backend received for one request."""

    via: str  # "tcp" or "unix"
    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]
    body: str


@dataclass
class Recorder:
    port: int = 0
    unix_path: Path = Path()
    seen: list[Seen] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None


RECORDER: web.AppKey[Recorder] = web.AppKey("recorder", Recorder)


async def _record(request: web.Request) -> web.StreamResponse:
    rec = request.app[RECORDER]
    body = await request.read()
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    rec.seen.append(Seen(
        "unix" if isinstance(sock, str) else "tcp",
        request.method,
        request.raw_path,
        f"{request.version.major}.{request.version.minor}",
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        body.decode("latin-1"),
    ))
    if request.headers.get("Upgrade", "").lower() == "websocket" and request.path.startswith("/ws"):
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws
    q = request.query
    if "sleep" in q:
        await asyncio.sleep(float(q["sleep"]))
    text = q.get("body", f"{request.method} {request.raw_path}\n")
    if "bytes" in q:
        text = ("0123456789abcdef" * (int(q["bytes"]) // 16 + 1))[: int(q["bytes"])]
    status = int(q.get("status", "200"))
    if "chunked" in q:
        resp = web.StreamResponse(status=status)
        resp.content_type = "text/plain"
        resp.enable_chunked_encoding()
        for k, v in q.items():
            if k.startswith("set_"):
                resp.headers.add(k[4:], v)
        await resp.prepare(request)
        await resp.write(text.encode())
        await resp.write_eof()
        return resp
    resp = web.Response(status=status, text=text if status not in (204, 304) else None)
    for k, v in q.items():
        if k.lower() == "set_content-type":
            resp.headers["Content-Type"] = v
        elif k.startswith("set_"):
            resp.headers.add(k[4:], v)
    return resp


def _serve(rec: Recorder, ready: threading.Event) -> None:
    loop = asyncio.new_event_loop()
    rec.loop = loop
    asyncio.set_event_loop(loop)
    app = web.Application(client_max_size=0)
    app[RECORDER] = rec
    app.router.add_route("*", "/{tail:.*}", _record)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(tcp.start())
    rec.port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop.run_until_complete(web.UnixSite(runner, str(rec.unix_path)).start())
    # nginx's workers run as "nobody" when the master runs as root.
    rec.unix_path.parent.chmod(0o755)
    rec.unix_path.chmod(0o777)
    ready.set()
    loop.run_forever()
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    """The recording backend shared by every pair (TCP and UNIX socket)."""
    tmp = tempfile.mkdtemp(prefix="pyngx-diff-")
    rec = Recorder(unix_path=Path(tmp) / "backend.sock")
    ready = threading.Event()
    thread = threading.Thread(target=_serve, args=(rec, ready), daemon=True)
    thread.start()
    assert ready.wait(10), "recording backend did not start"
    yield rec
    assert rec.loop is not None
    rec.loop.call_soon_threadsafe(rec.loop.stop)
    thread.join(10)


#: Files under @ROOT@ (path -> content); all get the same mtime, so that
#: Last-Modified and ETag are the same for both daemons.
DOCROOT = {
    "index.html": b"<h1>home</h1>\n",
    "a.txt": b"hello\n",
    "style.css": b"body { color: red; }\n",
    "app.js": b"console.log(1);\n",
    "data.json": b'{"a": 1}\n',
    "noext": b"no extension\n",
    "UPPER.TXT": b"upper\n",
    "space name.txt": b"space\n",
    "caf\u00e9.txt": b"utf-8 name\n",
    ".hidden": b"hidden\n",
    "big.bin": bytes(range(256)) * 400,
    "dir/index.html": b"<h1>dir</h1>\n",
    "dir/sub.txt": b"sub\n",
    "dir/deeper/x.txt": b"x\n",
    "emptydir/.keep": b"",
    "page404.html": b"<h1>custom 404</h1>\n",
}
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="session")
def docroot() -> Path:
    """A document root for static-file cases (world-readable: nginx's workers run as nobody)."""
    import os

    root = Path(tempfile.mkdtemp(prefix="pyngx-diff-root-"))
    for rel, data in DOCROOT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in [*root.rglob("*"), root]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (MTIME, MTIME))
    return root


#: What the raw backend sends, by the first segment of the request path. It
#: reads the request head (not a body), sends the bytes, and closes.
RAW_ANSWERS: dict[str, bytes] = {
    "ok": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
    "close-at-once": b"",
    "garbage": b"HELLO THERE\r\n\r\n",
    "http09": b"just a body\n",
    "bad-status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "no-length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close\n",
    "http10": b"HTTP/1.0 200 OK\r\n\r\nhttp/1.0 body\n",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\r\nabc\r\n0\r\n\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "space-in-name": b"HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok",
    "no-colon": b"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 2\r\n\r\nok",
    "lf-only": b"HTTP/1.1 200 OK\nContent-Length: 2\nX-Lf: 1\n\nok",
    "status-only": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "status-999": b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    "status-600": b"HTTP/1.1 600 Big\r\nContent-Length: 2\r\n\r\nok",
    "big-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 5000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "empty-reason": b"HTTP/1.1 404 \r\nContent-Length: 2\r\n\r\nno",
    "fold": b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "204-with-body": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "304-with-length": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n",
    "chunked-trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
    "gzip-te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
    "utf8-header": "HTTP/1.1 200 OK\r\nX-Utf8: café\r\nContent-Length: 2\r\n\r\nok".encode(),
}


@pytest.fixture(scope="session")
def raw_backend() -> Iterator[int]:
    """A TCP backend answering with RAW_ANSWERS (port)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                target = data.split(b" ", 2)[1].decode("latin-1")
                key = target.lstrip("/").split("/", 1)[0].split("?", 1)[0]
                conn.sendall(RAW_ANSWERS.get(key, RAW_ANSWERS["ok"]))
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
            except OSError:
                return

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture(scope="session")
def differ(recorder: Recorder, docroot: Path, raw_backend: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Pair]]:
    """``differ(text)``: the Pair asking nginx and pyngx, both serving ``text``.

    One nginx and one pyngx run for the session; a config other than the
    current one is loaded by reloading both (harness.Daemons). A config that
    fails to load fails (or XFAILs, when pyngx says "not supported") each of
    its cases without being tried again.
    """
    if nginx_binary() is None:
        pytest.skip("nginx not found: set PYNGX_TEST_NGINX or install Debian's nginx-light (.ci/run does)")
    daemons = Daemons(tmp_path_factory.mktemp("daemons"), recorder, free_port(), docroot, raw_backend)
    current: list[Pair] = []
    failed: dict[str, Exception] = {}

    def get(text: str) -> Pair:
        if current and current[0].text == text:
            return current[0]
        if text in failed:
            exc = failed[text]
        else:
            current.clear()
            try:
                current.append(daemons.load(text))
                return current[0]
            except (RuntimeError, TimeoutError) as e:
                exc = failed[text] = e
        if isinstance(exc, Unsupported):
            pytest.xfail(f"not built yet: {exc}")
        raise exc

    yield get
    daemons.stop()
