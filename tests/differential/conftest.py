"""Fixtures of the differential suite: one recording backend, daemon pairs per config.

``recorder``: an aiohttp backend on 127.0.0.1 and on a UNIX socket that
records, per request, the method, raw target, HTTP version, header fields in
order, body and the socket it came in on. Query arguments steer its answer:
``status=N``, ``set_NAME=VALUE`` (a response field), ``sleep=S`` (answer after
S seconds), ``chunked=1`` (no Content-Length), ``body=TEXT``.

``differ``: ``differ(CONF)`` returns the ``Pair`` for a config text: one
nginx and one pyngx run for the whole session and are reloaded with each
new config (harness.Daemons). Skips (saying why) when no nginx binary is
found. A config that pyngx refuses with "... is not supported by pyngx"
makes its cases XFAIL with that line (a feature not built yet; they run as
soon as pyngx accepts it).
"""

from __future__ import annotations

import asyncio
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
    q = request.query
    if "sleep" in q:
        await asyncio.sleep(float(q["sleep"]))
    text = q.get("body", f"{request.method} {request.raw_path}\n")
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


@pytest.fixture(scope="session")
def differ(recorder: Recorder, docroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Pair]]:
    """``differ(text)``: the Pair asking nginx and pyngx, both serving ``text``.

    One nginx and one pyngx run for the session; a config other than the
    current one is loaded by reloading both (harness.Daemons). A config that
    fails to load fails (or XFAILs, when pyngx says "not supported") each of
    its cases without being tried again.
    """
    if nginx_binary() is None:
        pytest.skip("nginx not found: set PYNGX_TEST_NGINX or install Debian's nginx-light (.ci/run does)")
    daemons = Daemons(tmp_path_factory.mktemp("daemons"), recorder, free_port(), docroot)
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
