"""The shipped example configs behave as under nginx (ports and paths substituted)."""

from __future__ import annotations

import http.client
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_backend

EXAMPLES = ROOT / "conf" / "examples"


def _adapt(name: str, port: int, backend_port: int, root: Path) -> str:
    text = (EXAMPLES / name).read_text()
    text = text.replace("error_log stderr notice;", "")
    text = re.sub(r"access_log stdout \w+;", "access_log off;", text)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    text = re.sub(r"127\.0\.0\.1:(8\d\d\d|9\d\d\d)", f"127.0.0.1:{backend_port}", text)
    text = text.replace("/var/www/app/dist", str(root))
    return text


def _get(port: int, path: str, host: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": host, **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    return r.status, hdrs, body


CASES = {
    "multi-host.conf": [
        ("/", "unknown.test"), ("/", "example.com"), ("/x", "www.example.com"), ("/a?b=1", "shop.example.com"),
        ("/p", "example.org"), ("/q?x=1", "example.net"), ("/", "alice.people.example.net"), ("/", "EXAMPLE.COM"),
    ],
    "websocket-map.conf": [("/", "chat.example.com"), ("/rooms/1", "chat.example.com")],
    "spa-api.conf": [
        ("/", "app.example.com"), ("/settings/profile", "app.example.com"), ("/assets/app.js", "app.example.com"),
        ("/assets/missing.js", "app.example.com"), ("/api/users?id=1", "app.example.com"), ("/healthz", "app.example.com"),
        ("/index.html", "app.example.com"), ("/50x.html", "app.example.com"),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_behaves_as_nginx(name, run_nginx, run_pyngx, tmp_path):
    """Each request to an example config gets nginx's status, Location, Content-Type and body; the backend sees the same."""
    backend, stop = start_backend()
    base = Path(tempfile.gettempdir()) / "unused"
    try:
        # nginx's workers run as "nobody" under root: the files must be world-readable,
        # outside pytest's private tmp tree.
        base = Path(tempfile.mkdtemp(prefix="pyngx-examples-"))
        base.chmod(0o755)
        root = base / "dist"
        (root / "assets").mkdir(parents=True)
        (root / "index.html").write_text("<!doctype html><title>app</title>\n")
        (root / "assets" / "app.js").write_text("console.log('app');\n")
        (root / "50x.html").write_text("<h1>oops</h1>\n")
        nport, pport = free_port(), free_port()
        nginx_conf = _adapt(name, nport, backend.port, root)
        if "events" not in nginx_conf:
            nginx_conf = "events {}\n" + nginx_conf
        run_nginx(nginx_conf, nport)
        run_pyngx(_adapt(name, pport, backend.port, root), port=pport)
        for path, host in CASES[name]:
            n = _get(nport, path, host)
            seen_n = backend.seen[-1] if backend.seen else None
            count = len(backend.seen)
            p = _get(pport, path, host)
            seen_p = backend.seen[-1] if len(backend.seen) > count else None
            where = f"{name} {host}{path}"
            assert p[0] == n[0], where
            for field in ("content-type", "cache-control", "x-backend"):
                assert p[1].get(field) == n[1].get(field), (where, field)
            n_loc = n[1].get("location", "").replace(str(nport), "PORT")
            p_loc = p[1].get("location", "").replace(str(pport), "PORT")
            assert p_loc == n_loc, where
            if n[0] < 400:
                if n[1].get("x-backend"):
                    assert seen_p is not None and seen_n is not None
                    assert (seen_p.method, seen_p.path) == (seen_n.method, seen_n.path), where
                    for h in ("Host", "X-Tenant", "X-User", "X-Forwarded-For", "X-Real-IP"):
                        assert seen_p.header(h) == seen_n.header(h), (where, h)
                else:
                    assert _unsign(p[2]) == _unsign(n[2]), where
            else:
                assert _unsign(p[2]) == _unsign(n[2]), where
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


def _unsign(body: bytes) -> bytes:
    """Error pages differ only in the signature line (nginx/1.22.1 vs pyngx/VERSION)."""
    return re.sub(rb"<hr><center>[^<]*</center>", b"<hr><center>SIGNATURE</center>", body)
