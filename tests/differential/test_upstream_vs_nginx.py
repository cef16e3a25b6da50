"""Retries and $upstream_* against the real nginx: same config, same requests."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import free_port, start_backend, wait_for


async def _bad502(request: web.Request) -> web.Response:
    return web.Response(status=502, text="bad gateway from backend")


async def _nf404(request: web.Request) -> web.Response:
    return web.Response(status=404, text="nope")


CASES = {
    # name: (upstream servers, location extra, method)
    "status_retry": ("{bad} {good}", "proxy_next_upstream error timeout http_502;", "GET"),
    "status_passed": ("{bad} {good}", "", "GET"),
    "error_retry": ("{dead} {good}", "", "GET"),
    "all_dead": ("{dead} {dead2}", "", "GET"),
    "last_404_passed": ("{nf} {nf2}", "proxy_next_upstream http_404;", "GET"),
    "off": ("{dead} {good}", "proxy_next_upstream off;", "GET"),
    "post_not_sent_is_retried": ("{dead} {good}", "", "POST"),
    "tries_1": ("{dead} {good}", "proxy_next_upstream_tries 1;", "GET"),
    "backup": ("{dead} {good} backup", "", "GET"),
}


def _config(port: int, log: Path, servers: dict[str, str]) -> str:
    ups = []
    locs = []
    for name, (tmpl, extra, _) in CASES.items():
        lines = " ".join(f"server {s};" if not s.endswith(" backup") else f"server {s[:-7]} backup;"
                         for s in tmpl.format(**servers).replace(" backup", "_backup").split())
        lines = lines.replace("_backup", " backup")
        ups.append(f"upstream u_{name} {{ {lines} }}")
        locs.append(f"location /{name} {{ proxy_pass http://u_{name}; {extra} }}")
    return f"""
events {{}}
http {{
    log_format up '$request_uri $status "$upstream_addr" "$upstream_status"';
    access_log {log} up;
    {" ".join(ups)}
    server {{
        listen 127.0.0.1:{port};
        {" ".join(locs)}
    }}
}}
"""


def _request(port: int, path: str, method: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=b"x=1" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def servers():
    good, s1 = start_backend()
    bad, s2 = start_backend([("*", "/{t:.*}", _bad502)])
    nf, s3 = start_backend([("*", "/{t:.*}", _nf404)])
    nf2, s4 = start_backend([("*", "/{t:.*}", _nf404)])
    yield {
        "good": f"127.0.0.1:{good.port}",
        "bad": f"127.0.0.1:{bad.port}",
        "nf": f"127.0.0.1:{nf.port}",
        "nf2": f"127.0.0.1:{nf2.port}",
        "dead": f"127.0.0.1:{free_port()}",
        "dead2": f"127.0.0.1:{free_port()}",
    }
    for stop in (s1, s2, s3, s4):
        stop()


def test_retries_match_nginx(run_nginx, run_pyngx, servers, tmp_path):
    """Each retry case gives nginx's status, body origin, $upstream_addr and $upstream_status."""
    nport, pport = free_port(), free_port()
    nlog, plog = tmp_path / "nginx.log", tmp_path / "pyngx.log"
    run_nginx(_config(nport, nlog, servers), nport)
    run_pyngx(_config(pport, plog, servers), port=pport)
    for name, (_, _, method) in CASES.items():
        n_status, n_body = _request(nport, f"/{name}", method)
        p_status, p_body = _request(pport, f"/{name}", method)
        assert p_status == n_status, name
        if n_status == 200:
            assert p_body.startswith(b"{") == n_body.startswith(b"{"), name
        elif n_status == 404:
            assert p_body == n_body, name
    wait_for(lambda: plog.exists() and plog.read_text().count("\n") == len(CASES))
    wait_for(lambda: nlog.exists() and nlog.read_text().count("\n") == len(CASES))
    assert plog.read_text().splitlines() == nlog.read_text().splitlines()
