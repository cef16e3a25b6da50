"""What the daemon keeps resident: optional packages it never uses stay unloaded (pyngx.memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyngx.memory import hidden


def test_daemon_imports_leave_out_unused_packages(tmp_path) -> None:
    """Importing the daemon and loading a config as it does (parsed in a child process) loads
    neither lark (nor its optional ``regex``), structlog's ``colorama`` (and its ``ctypes``), nor
    ``difflib``/``glob`` (only error hints and ``include`` use them)."""
    code = (
        "import sys, pyngx.cli, pyngx.server, pyngx.app, pyngx.reload, pyngx.log\n"
        "from pyngx.config import load\n"
        "load(sys.argv[1], isolated=True)\n"
        "print(sorted(m for m in ('lark', 'regex', 'colorama', 'ctypes', 'difflib', 'glob') if m in sys.modules))\n"
    )
    conf = tmp_path / "pyngx.conf"
    conf.write_text("http { server { listen 127.0.0.1:1; location / { return 200; } } }")
    out = subprocess.run([sys.executable, "-c", code, str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_tune_malloc_sets_glibc_thresholds_unless_the_user_did() -> None:
    """tune_malloc() sets glibc's trim and mmap thresholds (other glibc tunables set or not); with
    glibc's own MALLOC_*_ variables or malloc tunables in the environment it leaves them to the user."""
    import os
    import platform

    code = "from pyngx.memory import tune_malloc; print(tune_malloc())"
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                                                            "GLIBC_TUNABLES")}
    results = []
    for extra in ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                  {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        results.append(out.stdout.strip())
    glibc = platform.libc_ver()[0] == "glibc"
    assert results == (["True", "False", "False"] if glibc else ["False", "False", "False"])


def test_settle_freezes_and_makes_young_collections_rare() -> None:
    """settle() freezes what is alive and sets the young generation's threshold (the older ones
    kept); a reload's settle unfreezes, collects (a frozen cycle is freed) and freezes anew; cyclic
    garbage made after it is still collected on its own once the threshold's worth has gathered."""
    code = (
        "import gc\n"
        "from pyngx.memory import settle, YOUNG_THRESHOLD\n"
        "older = gc.get_threshold()[1:]\n"
        "settle()\n"
        "print(gc.get_freeze_count() > 0, gc.get_threshold() == (YOUNG_THRESHOLD, *older))\n"
        "import weakref\n"
        "class Old:\n"
        "    pass\n"
        "old = Old()\n"
        "old.me = old\n"  # a cycle frozen with the old config
        "gone = weakref.ref(old)\n"
        "del old\n"
        "settle()\n"
        "settle(reloaded=True)\n"
        "print(gc.get_threshold() == (YOUNG_THRESHOLD, *older) and gone() is None and gc.get_freeze_count() > 0)\n"
        "before = gc.get_stats()[0]['collected']\n"
        "class Node:\n"
        "    pass\n"
        "for _ in range(3 * YOUNG_THRESHOLD):\n"
        "    a, b = Node(), Node()\n"
        "    a.peer, b.peer = b, a\n"
        "del a, b\n"
        "print(gc.get_stats()[0]['collected'] > before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True"]


def test_hidden_blocks_then_restores() -> None:
    """Inside ``hidden`` an import fails as if the package were not installed; afterwards it works again."""
    import json

    with hidden("json"):
        try:
            import json as again  # noqa: F401
        except ImportError:
            blocked = True
        else:
            blocked = False
    assert blocked
    assert sys.modules["json"] is json


async def test_closed_connection_is_freed_without_the_cycle_collector() -> None:
    """A client connection served by pyngx's Listener (Hypercorn's TCPServer, h11, the
    asyncio transport and buffers) is freed by reference counting when it closes: the
    cyclic collector finds none of it afterwards (it would keep every closed
    connection's buffers until a full collection)."""
    import asyncio
    import gc
    import socket

    from hypercorn.config import Config as HypercornConfig

    from pyngx.listener import Connection, Listener
    from pyngx.tls import ListenPlan

    async def app(scope, receive, send, sync_spawn, call_soon):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while (msg := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    serving = asyncio.create_task(Listener(app, HypercornConfig(), ListenPlan(f"127.0.0.1:{port}", None, False))
                                  .serve(sock, stop.wait))
    try:
        gc.collect()
        for _ in range(3):
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
            writer.close()
            await writer.wait_closed()
        for _ in range(50):  # the server side notices the close
            await asyncio.sleep(0.02)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, Connection)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert left == []
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)
