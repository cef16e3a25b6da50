"""TLS termination and HTTP/2 for clients, end to end: certificates made
here with trustme, a real ``pyngx`` process on 127.0.0.1, and real clients
(Python's ssl with http.client, aiohttp, httpx with h2, curl).
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from pyngx.config import load
from pyngx.config.values import parse_listen
from pyngx.listener import rfc2253
from pyngx.tls import validity
from tests.conftest import ROOT, Pyngx, free_port, nginx_binary, pyngx_cmd, start_backend, wait_for

# --- certificates -------------------------------------------------------------------


@dataclass
class PKI:
    """Certificates for a.test and b.test, a client certificate, and a CA that trusts them."""

    dir: Path
    ca: trustme.CA
    other_ca: trustme.CA

    def issue(self, name: str, *identities: str, ca: trustme.CA | None = None, **kw: object) -> tuple[Path, Path]:
        """Write a certificate (with its chain) and key for ``identities`` as NAME.crt / NAME.key."""
        cert = (ca or self.ca).issue_cert(*(identities or (f"{name}.test",)), **kw)  # type: ignore[arg-type]
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        return crt, key

    def client_context(self, sni: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        ctx.check_hostname = sni
        return ctx

    def client_cert_context(self, ca: trustme.CA | None = None) -> ssl.SSLContext:
        ctx = self.client_context()
        (ca or self.ca).issue_cert("alice@example.com", common_name="alice").configure_cert(ctx)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    p = PKI(d, trustme.CA(), trustme.CA())
    p.issue("a")
    p.issue("b")
    p.ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return p


def https(port: int, path: str = "/", sni: str | None = "a.test", ctx: ssl.SSLContext | None = None,
          method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """One HTTP/1.1 request over TLS to 127.0.0.1:port with SNI ``sni``.

    Returns:
        (status, body, the server certificate in DER).
    """
    assert ctx is not None
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=sni)
    peer = sock.getpeercert(binary_form=True) or b""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = sock
    try:
        conn.request(method, path, headers={"Host": sni or "localhost", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), peer
    finally:
        conn.close()


def der(crt: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(crt.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)


def curl_has_http2() -> bool:
    if shutil.which("curl") is None:
        return False
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return "HTTP2" in out


needs_curl_h2 = pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP2 (curl --version) not installed")

VARS = "$scheme|$https|$ssl_protocol|$ssl_cipher|$ssl_server_name|$server_protocol|$ssl_client_verify|$ssl_client_s_dn"


def two_servers(pki: PKI, port: int, extra: str = "") -> str:
    """a.test (default, http2 on) and b.test, each with its own certificate, on one TLS address."""
    d = pki.dir
    return f"""
    error_log stderr info;
    http {{
        access_log off;
        server {{
            listen 127.0.0.1:{port} ssl;
            server_name a.test;
            http2 on;
            ssl_certificate {d}/a.crt;
            ssl_certificate_key {d}/a.key;
            {extra}
            location / {{ return 200 "a|{VARS}"; }}
        }}
        server {{
            listen 127.0.0.1:{port} ssl;
            server_name b.test;
            ssl_certificate {d}/b.crt;
            ssl_certificate_key {d}/b.key;
            location / {{ return 200 "b|{VARS}"; }}
        }}
    }}"""


# --- serving ------------------------------------------------------------------------


class TestHTTPS:
    def test_variables_and_scheme(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """Over TLS $scheme is https, $https on, and $ssl_protocol, $ssl_cipher, $ssl_server_name are the connection's."""
        port = free_port()
        run_pyngx(two_servers(pki, port), port=port)
        status, body, _ = https(port, ctx=pki.client_context())
        assert status == 200
        server, scheme, on, proto, cipher, sni, protocol, verify, dn = body.split("|")
        assert (server, scheme, on, sni, protocol, verify, dn) == ("a", "https", "on", "a.test", "HTTP/1.1", "NONE", "")
        assert proto == "TLSv1.3" and cipher.startswith("TLS_")

    def test_sni_picks_the_certificate_by_server_name(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """Two servers on one ssl address: SNI picks each one's certificate; an unknown or absent name gets the default server's."""
        port = free_port()
        run_pyngx(two_servers(pki, port), port=port)
        ctx = pki.client_context()
        _, body_a, cert_a = https(port, sni="a.test", ctx=ctx)  # check_hostname: the certificate names a.test
        _, body_b, cert_b = https(port, sni="b.test", ctx=ctx)
        assert (body_a[0], body_b[0]) == ("a", "b")
        assert cert_a == der(pki.dir / "a.crt") and cert_b == der(pki.dir / "b.crt")
        loose = pki.client_context(sni=False)
        _, body, cert = https(port, sni="c.test", ctx=loose)
        assert cert == der(pki.dir / "a.crt") and body.startswith("a|")
        _, body, cert = https(port, sni=None, ctx=loose)  # an IP address: no SNI at all
        assert cert == der(pki.dir / "a.crt")
        # SNI b.test but Host a.test: the certificate follows SNI, the request follows Host, as nginx.
        _, body, cert = https(port, sni="b.test", ctx=ctx, headers={"Host": "a.test"})
        assert cert == der(pki.dir / "b.crt") and body.startswith("a|")

    def test_session_resumption(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """A client that offers its last session resumes it, with TLS 1.3 and 1.2 ($ssl_session_reused "r")."""
        port = free_port()
        run_pyngx(f"""http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
            ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
            location / {{ return 200 "$ssl_session_reused"; }} }} }}""", port=port)
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = pki.client_context()
            ctx.maximum_version = version
            seen, session = [], None
            for _ in range(2):
                sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                       server_hostname="a.test", session=session)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.sock = sock
                conn.request("GET", "/", headers={"Host": "a.test"})
                seen.append(conn.getresponse().read().decode())
                session = sock.session  # TLS 1.3 tickets arrive with the first answer
                conn.close()
            assert seen == [".", "r"], version

    def test_http_redirect_to_https(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """``return 301 https://$host$request_uri;`` on the plain port sends clients to the TLS server."""
        port, plain = free_port(), free_port()
        text = two_servers(pki, port).rstrip().rstrip("}") + f"""
            server {{ listen 127.0.0.1:{plain}; server_name a.test b.test;
                      return 301 https://$host$request_uri; }}
        }}"""
        p = run_pyngx(text, port=port)
        conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
        conn.request("GET", "/p/x?q=1&r=2", headers={"Host": "b.test:80"})
        resp = conn.getresponse()
        assert resp.status == 301
        assert resp.getheader("Location") == "https://b.test/p/x?q=1&r=2"
        assert "301 Moved Permanently" in resp.read().decode()
        status, body, _ = https(port, "/p/x?q=1&r=2", sni="b.test", ctx=pki.client_context())
        assert status == 200 and body.startswith("b|")
        assert p.proc.poll() is None

    async def test_websocket_over_tls(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """A WebSocket over HTTP/1.1 + TLS is proxied; the upstream sees X-Forwarded-Proto https ($scheme)."""

        async def echo(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str(request.headers.get("X-Forwarded-Proto", ""))
            async for msg in ws:
                await ws.send_str(msg.data)
            return ws

        backend, stop = start_backend([("GET", "/ws", echo)])
        try:
            port = free_port()
            run_pyngx(f"""http {{ server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
                ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
                location /ws {{ proxy_pass {backend.url}; proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
                    proxy_set_header X-Forwarded-Proto $scheme; }} }} }}""", port=port)
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=pki.client_context(),
                                              server_hostname="a.test", headers={"Host": "a.test"}) as ws:
                    assert (await ws.receive_str(timeout=10)) == "https"
                    await ws.send_str("over tls")
                    assert (await ws.receive_str(timeout=10)) == "over tls"
        finally:
            stop()


class TestMutualTLS:
    def conf(self, pki: PKI, port: int, verify: str) -> str:
        return f"""http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
            ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
            ssl_client_certificate {pki.dir}/ca.pem; ssl_verify_client {verify};
            location / {{ return 200 "{VARS}"; }} }} }}"""

    def test_client_certificate_accepted(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """ssl_verify_client on: a client certificate from the trusted CA passes; $ssl_client_verify is SUCCESS and $ssl_client_s_dn its subject."""
        port = free_port()
        run_pyngx(self.conf(pki, port, "on"), port=port)
        status, body, _ = https(port, ctx=pki.client_cert_context())
        assert status == 200
        values = body.split("|")
        assert values[6] == "SUCCESS"
        assert re.fullmatch(r"CN=alice,OU=Testing cert #\S+,O=trustme v[\d.]+", values[7]), values[7]

    def test_no_client_certificate_gets_nginx_400(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """ssl_verify_client on without a client certificate: nginx's 400 "No required SSL certificate was sent"."""
        port = free_port()
        run_pyngx(self.conf(pki, port, "on"), port=port)
        status, body, _ = https(port, ctx=pki.client_context())
        assert status == 400
        assert "<title>400 No required SSL certificate was sent</title>" in body
        assert "<center><h1>400 Bad Request</h1></center>" in body

    def test_untrusted_client_certificate_is_refused(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """A client certificate from an unknown CA is refused in the handshake, logged at info; pyngx keeps serving."""
        port = free_port()
        p = run_pyngx("error_log stderr info;" + self.conf(pki, port, "on"), port=port)
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            https(port, ctx=pki.client_cert_context(ca=pki.other_ca))
        wait_for(lambda: "ssl_handshake_failed" in p.stderr)
        # Usually "SSL_do_handshake() failed (SSL: certificate verify failed)"; when the
        # client's close comes in with its certificate, "peer closed connection".
        assert "[info]" in p.stderr and "while SSL handshaking, client: 127.0.0.1" in p.stderr
        assert https(port, ctx=pki.client_cert_context())[0] == 200

    def test_optional(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """ssl_verify_client optional: no certificate is fine ($ssl_client_verify NONE), a good one is SUCCESS."""
        port = free_port()
        run_pyngx(self.conf(pki, port, "optional"), port=port)
        status, body, _ = https(port, ctx=pki.client_context())
        assert status == 200 and body.split("|")[6:] == ["NONE", ""]
        assert https(port, ctx=pki.client_cert_context())[1].split("|")[6] == "SUCCESS"


class TestHandshakeFailures:
    def test_failed_handshakes_are_logged_and_harmless(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """Plain HTTP, garbage and a TLS 1.2-only client on a TLS 1.3 server fail alone: logged at info, other connections go on."""
        port = free_port()
        p = run_pyngx(two_servers(pki, port, "ssl_protocols TLSv1.3;"), port=port)
        # A keep-alive connection that stays open across the failures.
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        kept = pki.client_context().wrap_socket(raw, server_hostname="a.test")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.sock = kept
        conn.request("GET", "/1", headers={"Host": "a.test"})
        assert conn.getresponse().read().startswith(b"a|")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert s.recv(100) == b""  # closed without an answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
        old = pki.client_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            https(port, ctx=old)
        wait_for(lambda: p.stderr.count("ssl_handshake_failed") >= 3)
        assert "[info]" in p.stderr and "client: 127.0.0.1" in p.stderr and "while SSL handshaking" in p.stderr
        conn.request("GET", "/2", headers={"Host": "a.test"})
        assert conn.getresponse().read().startswith(b"a|")
        conn.close()
        assert p.proc.poll() is None


class TestReload:
    def test_certificate_rotation_by_sighup(self, run_pyngx: Callable[..., Pyngx], pki: PKI, tmp_path: Path) -> None:
        """After SIGHUP new connections get the new certificate; an open connection keeps its own and goes on."""
        d = tmp_path / "rot"
        d.mkdir()
        local = PKI(d, pki.ca, pki.other_ca)
        local.issue("site", "a.test")
        first = der(d / "site.crt")
        port = free_port()
        p = run_pyngx(f"""error_log stderr notice; http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl;
            ssl_certificate {d}/site.crt; ssl_certificate_key {d}/site.key;
            location / {{ return 200 ok; }} }} }}""", port=port)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        kept = pki.client_context().wrap_socket(raw, server_hostname="a.test")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.sock = kept
        conn.request("GET", "/", headers={"Host": "a.test"})
        assert conn.getresponse().read() == b"ok"
        local.issue("site", "a.test")  # the same files, a new certificate and key
        second = der(d / "site.crt")
        assert second != first
        wait_for(lambda: "started:" in p.stderr)  # signal handlers are in place
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in p.stderr)
        assert https(port, ctx=pki.client_context())[2] == second
        conn.request("GET", "/", headers={"Host": "a.test"})
        assert conn.getresponse().read() == b"ok"
        assert kept.getpeercert(binary_form=True) == first
        conn.close()

    def test_bad_certificate_on_reload_keeps_the_old(self, run_pyngx: Callable[..., Pyngx], pki: PKI, tmp_path: Path) -> None:
        """A reload whose key no longer matches its certificate is refused; the old certificate keeps serving."""
        d = tmp_path / "bad"
        d.mkdir()
        local = PKI(d, pki.ca, pki.other_ca)
        local.issue("site", "a.test")
        first = der(d / "site.crt")
        port = free_port()
        p = run_pyngx(f"""error_log stderr notice; http {{ server {{ listen 127.0.0.1:{port} ssl;
            ssl_certificate {d}/site.crt; ssl_certificate_key {d}/site.key;
            location / {{ return 200 ok; }} }} }}""", port=port)
        (d / "site.key").write_bytes((pki.dir / "b.key").read_bytes())
        wait_for(lambda: "started:" in p.stderr)  # signal handlers are in place
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload_failed" in p.stderr)
        assert "key values mismatch" in p.stderr
        assert https(port, ctx=pki.client_context())[2] == first

    def test_reload_turns_a_plain_address_into_tls(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """A reload that adds ``ssl`` to a kept address restarts its listener on the same socket: it speaks TLS at once."""
        port = free_port()
        plain = f"error_log stderr notice; http {{ server {{ listen 127.0.0.1:{port}; location / {{ return 200 $scheme; }} }} }}"
        p = run_pyngx(plain, port=port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"http"
        p.conf.write_text(plain.replace(f"{port};", f"{port} ssl; ssl_certificate {pki.dir}/a.crt; "
                                                    f"ssl_certificate_key {pki.dir}/a.key;"))
        wait_for(lambda: "started:" in p.stderr)  # signal handlers are in place
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in p.stderr)
        assert https(port, ctx=pki.client_context())[1] == "https"
        conn.close()


# --- HTTP/2 -------------------------------------------------------------------------


def _stream_routes() -> list[tuple[str, str, Callable[..., object]]]:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i};".encode())
        await resp.write_eof()
        return resp

    return [("GET", "/chunked", chunked)]


class TestHTTP2:
    @needs_curl_h2
    def test_curl_alpn_h2_where_http2_is_on(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """ALPN gives curl --http2 HTTP/2 on the server with ``http2 on`` and HTTP/1.1 on the one without."""
        port = free_port()
        run_pyngx(two_servers(pki, port), port=port)
        for name, version in (("a.test", "2"), ("b.test", "1.1")):
            out = curl("--http2", "--cacert", str(pki.dir / "ca.pem"), "--resolve", f"{name}:{port}:127.0.0.1",
                       "-w", "|%{http_version}", f"https://{name}:{port}/")
            assert out.returncode == 0, out.stderr
            assert out.stdout.endswith(f"|{version}")
            assert out.stdout.split("|")[6] == ("HTTP/2.0" if version == "2" else "HTTP/1.1")

    @needs_curl_h2
    def test_listen_ssl_http2_parameter(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """The older ``listen ... ssl http2`` turns HTTP/2 on for every server of the address."""
        port = free_port()
        run_pyngx(two_servers(pki, port).replace(f"{port} ssl;", f"{port} ssl http2;", 1), port=port)
        out = curl("--http2", "--cacert", str(pki.dir / "ca.pem"), "--resolve", f"b.test:{port}:127.0.0.1",
                   "-w", "|%{http_version}", f"https://b.test:{port}/")
        assert out.stdout.endswith("|2"), out

    @needs_curl_h2
    def test_h2c_only_where_configured(self, run_pyngx: Callable[..., Pyngx]) -> None:
        """HTTP/2 with prior knowledge works on ``listen ... http2`` without ssl and nowhere else; Upgrade: h2c is never taken."""
        h2c, plain = free_port(), free_port()
        run_pyngx(f"""http {{ access_log off;
            server {{ listen 127.0.0.1:{h2c} http2; location / {{ return 200 "$server_protocol"; }} }}
            server {{ listen 127.0.0.1:{plain}; location / {{ return 200 "$server_protocol"; }} }} }}""", port=plain)
        out = curl("--http2-prior-knowledge", "-w", "|%{http_version}", f"http://127.0.0.1:{h2c}/")
        assert out.stdout == "HTTP/2.0|2", out
        out = curl("-w", "|%{http_version}", f"http://127.0.0.1:{h2c}/")
        assert out.stdout == "HTTP/1.1|1.1"  # HTTP/1.x still served there (nginx >= 1.25.1)
        out = curl("--http2-prior-knowledge", "-w", "|%{http_version}", f"http://127.0.0.1:{plain}/")
        assert not out.stdout.endswith("|2")
        out = curl("--http2", "-w", "|%{http_version}", f"http://127.0.0.1:{plain}/")  # sends Upgrade: h2c
        assert out.stdout == "HTTP/1.1|1.1", out

    async def test_50_streams_multiplexed_on_one_connection(self, run_pyngx: Callable[..., Pyngx], pki: PKI,
                                                            backend: object) -> None:
        """50 concurrent requests on one HTTP/2 connection to a slow upstream overlap: well under 50 times the delay."""
        port = free_port()
        run_pyngx(f"""http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl; http2 on;
            ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
            location / {{ proxy_pass {backend.url}; }} }} }}""", port=port)  # type: ignore[attr-defined]
        delay = 0.5
        async with httpx.AsyncClient(http2=True, verify=pki.client_context(),
                                     limits=httpx.Limits(max_connections=1), timeout=30) as client:
            t0 = time.monotonic()
            responses = await asyncio.gather(*(
                client.get(f"https://127.0.0.1:{port}/slow/{delay}", headers={"Host": "a.test"},
                           extensions={"sni_hostname": "a.test"})
                for _ in range(50)
            ))
            elapsed = time.monotonic() - t0
        assert [r.status_code for r in responses] == [200] * 50
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert all(r.text == "slow\n" for r in responses)
        assert elapsed < 10 * delay, elapsed  # serial would take 50 * delay

    async def test_h2_requests_proxied_as_http11(self, run_pyngx: Callable[..., Pyngx], pki: PKI) -> None:
        """Over h2: :authority becomes Host, no pseudo-header goes upstream, bodies (sized or not) and chunked answers stream through."""
        backend, stop = start_backend(_stream_routes())
        try:
            port = free_port()
            run_pyngx(f"""http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl; http2 on; server_name a.test;
                ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
                location / {{ proxy_pass {backend.url}; proxy_set_header Host $host;
                              proxy_set_header X-Proto $server_protocol; }} }} }}""", port=port)
            url = f"https://127.0.0.1:{port}"
            ext = {"sni_hostname": "a.test"}

            async def body() -> object:
                for part in (b"x" * 1000, b"y" * 70000):
                    yield part

            async with httpx.AsyncClient(http2=True, verify=pki.client_context(), timeout=30) as client:
                r = await client.post(f"{url}/echo?a=1", content=b"hello", headers={"Host": "a.test"}, extensions=ext)
                assert r.http_version == "HTTP/2" and r.status_code == 200
                seen = r.json()
                names = [k.lower() for k, _ in seen["headers"]]
                assert seen["method"] == "POST" and seen["path"] == "/echo?a=1" and seen["body_len"] == 5
                assert dict((k.lower(), v) for k, v in seen["headers"])["host"] == "a.test"
                assert dict((k.lower(), v) for k, v in seen["headers"])["x-proto"] == "HTTP/2.0"
                assert not any(n.startswith(":") for n in names)
                assert "connection" not in names or dict(seen["headers"]).get("Connection") != "upgrade"
                r = await client.put(f"{url}/echo", content=body(), headers={"Host": "a.test"}, extensions=ext)
                assert r.json()["body_len"] == 71000  # no Content-Length over h2: still sent upstream
                r = await client.get(f"{url}/chunked", headers={"Host": "a.test"}, extensions=ext)
                assert r.status_code == 200 and r.text == "part0;part1;part2;part3;part4;"
                assert "transfer-encoding" not in r.headers and "connection" not in r.headers
                r = await client.get(f"{url}/bytes/300000", headers={"Host": "a.test"}, extensions=ext)
                assert len(r.content) == 300000
        finally:
            stop()


# --- configuration -------------------------------------------------------------------


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "t.conf"
    conf.write_text(text)
    return pyngx_cmd("-t", "-c", str(conf))


def tls_conf(cert: str, key: str, extra: str = "") -> str:
    # Line 4 is ssl_certificate, line 5 ssl_certificate_key.
    return f"""http {{
    server {{
        listen 127.0.0.1:8443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {extra}
    }}
}}
"""


class TestCheck:
    def test_missing_certificate(self, tmp_path: Path, pki: PKI) -> None:
        """A missing certificate fails -t with the ssl_certificate line."""
        out = check(tmp_path, tls_conf(str(tmp_path / "nope.crt"), str(pki.dir / "a.key")))
        assert out.returncode == 1
        assert (f'pyngx: [emerg] cannot load certificate "{tmp_path}/nope.crt": BIO_new_file() failed '
                f"(2: No such file or directory) in {tmp_path}/t.conf:4") in out.stderr
        assert "test failed" in out.stderr

    def test_unreadable_certificate_and_key(self, tmp_path: Path, pki: PKI) -> None:
        """A certificate or key that cannot be read (a directory, a file that is not PEM) fails -t at its line."""
        out = check(tmp_path, tls_conf(str(tmp_path), str(pki.dir / "a.key")))
        assert f'cannot load certificate "{tmp_path}": BIO_new_file() failed (21: Is a directory) in {tmp_path}/t.conf:4' in out.stderr
        junk = tmp_path / "junk.pem"
        junk.write_text("not a key\n")
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(junk)))
        assert out.returncode == 1
        assert f'cannot load certificate key "{junk}": PEM_read_bio_PrivateKey() failed' in out.stderr
        assert f"in {tmp_path}/t.conf:5" in out.stderr
        out = check(tmp_path, tls_conf(str(junk), str(pki.dir / "a.key")))
        assert f'cannot load certificate "{junk}": PEM_read_bio_X509_AUX() failed' in out.stderr

    def test_key_that_does_not_match(self, tmp_path: Path, pki: PKI) -> None:
        """A key of another certificate fails -t with nginx's words at the ssl_certificate_key line."""
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(pki.dir / "b.key")))
        assert out.returncode == 1
        assert (f'pyngx: [emerg] SSL_CTX_use_PrivateKey("{pki.dir}/b.key") failed (SSL: key values mismatch) '
                f"in {tmp_path}/t.conf:5") in out.stderr

    def test_expired_certificate_is_a_warning(self, tmp_path: Path, pki: PKI) -> None:
        """An expired certificate passes -t with a [warn] naming it and its line."""
        crt, key = pki.issue("old", "old.test", not_before=datetime.datetime(2019, 1, 1),
                             not_after=datetime.datetime(2020, 1, 1))
        out = check(tmp_path, tls_conf(str(crt), str(key)))
        assert out.returncode == 0, out.stderr
        assert (f'pyngx: [warn] certificate "{crt}" has expired (notAfter 2020-01-01 00:00:00 GMT) '
                f"in {tmp_path}/t.conf:4") in out.stderr
        assert "test is successful" in out.stderr

    def test_listen_ssl_without_certificate(self, tmp_path: Path) -> None:
        """``listen ... ssl`` with no ssl_certificate is nginx's error at the server block's line."""
        text = "http {\n  server {\n    server_name x;\n    listen 127.0.0.1:8443 ssl;\n  }\n}\n"
        out = check(tmp_path, text)
        assert out.returncode == 1
        assert (f'pyngx: [emerg] no "ssl_certificate" is defined for the "listen ... ssl" directive '
                f"in {tmp_path}/t.conf:2") in out.stderr
        nginx = nginx_binary()
        if nginx is not None:  # the same words and line from nginx itself
            (tmp_path / "logs").mkdir()
            conf = tmp_path / "n.conf"
            conf.write_text("events {}\n" + text.replace("http {\n", "http {", 1))
            ref = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "logs/e.log"),
                                  "-g", f"pid {tmp_path}/n.pid;"], capture_output=True, text=True, timeout=20)
            assert f'no "ssl_certificate" is defined for the "listen ... ssl" directive in {conf}:2' in ref.stderr

    def test_encrypted_key_and_password_file(self, tmp_path: Path, pki: PKI) -> None:
        """An encrypted key loads with ssl_password_file (any line may be the passphrase) and fails without it."""
        key = serialization.load_pem_private_key((pki.dir / "a.key").read_bytes(), None)
        enc = tmp_path / "enc.key"
        enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"s3cret")))
        pw = tmp_path / "pw"
        pw.write_text("wrong\ns3cret\n")
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(enc), f"ssl_password_file {pw};"))
        assert out.returncode == 0, out.stderr
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(enc)))
        assert out.returncode == 1
        assert f'cannot load certificate key "{enc}"' in out.stderr and "t.conf:5" in out.stderr
        pw.write_text("wrong\n")
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(enc), f"ssl_password_file {pw};"))
        assert "bad decrypt" in out.stderr and "t.conf:5" in out.stderr

    @pytest.mark.parametrize(("extra", "message"), [
        ("ssl_protocols TLSv1.4;", 'invalid value "TLSv1.4" in {conf}:6'),
        ("ssl_ciphers FOO;", 'SSL_CTX_set_cipher_list("FOO") failed (SSL: no cipher match) in {conf}:6'),
        ("ssl_session_cache shared:x;", 'invalid session cache "shared:x" in {conf}:6'),
        ("ssl_session_cache shared:S:1k;", 'session cache "S" is too small in {conf}:6'),
        ("ssl_verify_client on;", "no ssl_client_certificate for ssl_verify_client in {conf}:2"),
        ("ssl_verify_client maybe;", 'invalid value "maybe" in {conf}:6'),
        ("http2 yes;", 'invalid value "yes" in "http2" directive, it must be "on" or "off" in {conf}:6'),
    ])
    def test_bad_values(self, tmp_path: Path, pki: PKI, extra: str, message: str) -> None:
        """Bad ssl_* and http2 values fail -t with nginx's words."""
        out = check(tmp_path, tls_conf(str(pki.dir / "a.crt"), str(pki.dir / "a.key"), extra))
        assert out.returncode == 1
        assert message.format(conf=tmp_path / "t.conf") in out.stderr

    def test_inheritance_and_defaults(self, tmp_path: Path, pki: PKI) -> None:
        """ssl_* and http2 set in http reach every server that does not set them; defaults are nginx's."""
        conf = tmp_path / "i.conf"
        conf.write_text(f"""http {{
            ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
            ssl_protocols TLSv1.3; http2 on;
            server {{ listen 127.0.0.1:8443 ssl; }}
            server {{ listen 127.0.0.1:8444 ssl; ssl_protocols TLSv1.2 TLSv1.3; http2 off;
                      ssl_certificate {pki.dir}/b.crt; ssl_certificate_key {pki.dir}/b.key; }}
            server {{ listen 127.0.0.1:8445; }}
        }}""")
        config = load(conf)
        assert config.http is not None
        one, two, three = config.http.servers
        assert one.ssl.ssl_protocols == ("TLSv1.3",) and one.http2
        assert one.ssl.ssl_certificate[0].path == f"{pki.dir}/a.crt" and one.ssl.ssl_certificate[0].line == 2
        assert two.ssl.ssl_protocols == ("TLSv1.2", "TLSv1.3") and not two.http2
        assert two.ssl.ssl_certificate[0].path == f"{pki.dir}/b.crt"
        assert three.ssl.ssl_ciphers == "HIGH:!aNULL:!MD5" and three.ssl.ssl_verify_client == "off"
        assert three.ssl.ssl_session_timeout == 300.0 and not three.ssl.ssl_prefer_server_ciphers

    def test_example_config(self) -> None:
        """conf/examples/tls.conf (80 -> 443 redirect, TLS with HTTP/2) passes -t as shipped."""
        out = pyngx_cmd("-t", "-c", str(ROOT / "conf" / "examples" / "tls.conf"))
        assert out.returncode == 0, out.stderr


class TestPureLogic:
    def test_listen_ssl_and_http2(self) -> None:
        """``listen ... ssl http2`` sets both flags; they are not socket options (any listen of an address may give them)."""
        lst = parse_listen(("127.0.0.1:443", "ssl", "http2", "default_server"))
        assert (lst.ssl, lst.http2, lst.default_server, lst.options) == (True, True, True, False)
        assert (parse_listen(("443",)).ssl, parse_listen(("443",)).http2) == (False, False)

    def test_rfc2253(self) -> None:
        """Subjects print as RFC 2253: last RDN first, short names, special characters escaped."""
        name = ((("countryName", "DE"),), (("organizationName", "A, B"),), (("commonName", "x+y"), ("userId", "7")))
        assert rfc2253(name) == "CN=x\\+y+UID=7,O=A\\, B,C=DE"

    def test_validity(self, pki: PKI) -> None:
        """validity() reads notBefore and notAfter from a PEM certificate."""
        crt, _ = pki.issue("v", "v.test", not_before=datetime.datetime(2021, 2, 3, 4, 5, 6),
                           not_after=datetime.datetime(2051, 1, 1))
        dates = validity(crt.read_bytes())
        assert dates is not None
        assert dates[0].isoformat() == "2021-02-03T04:05:06+00:00" and dates[1].year == 2051
        assert validity(b"junk") is None


# --- nginx --------------------------------------------------------------------------


class TestVsNginx:
    def test_ssl_variables_match_nginx(self, run_pyngx: Callable[..., Pyngx], run_nginx: Callable[..., object],
                                       pki: PKI) -> None:
        """With the same certificates and a client certificate, the $ssl_* variables and the no-certificate page match nginx's."""
        ngx_port, py_port = free_port(), free_port()
        body = ("$scheme|$https|$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_client_verify|"
                "$ssl_client_s_dn|$ssl_client_i_dn|$ssl_session_reused")

        def conf(port: int) -> str:
            # nginx 1.22's default ssl_protocols lacks TLSv1.3 (1.23.4 added it): say it for both.
            return f"""http {{ access_log off; ssl_protocols TLSv1.2 TLSv1.3;
                server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
                ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
                ssl_client_certificate {pki.dir}/ca.pem; ssl_verify_client optional;
                location / {{ return 200 "{body}"; }}
                location /must {{ return 200 "{body}"; }} }}
                server {{ listen 127.0.0.1:{port} ssl; server_name must.test; ssl_verify_client on;
                ssl_certificate {pki.dir}/a.crt; ssl_certificate_key {pki.dir}/a.key;
                ssl_client_certificate {pki.dir}/ca.pem; location / {{ return 200 ok; }} }} }}"""

        run_nginx("events {}\n" + conf(ngx_port), ngx_port)
        run_pyngx(conf(py_port), port=py_port)
        tls12 = pki.client_cert_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        for ctx in (pki.client_cert_context(), pki.client_context(), tls12):
            ours = https(py_port, ctx=ctx)[1]
            theirs = https(ngx_port, ctx=ctx)[1]
            assert ours == theirs
        loose = pki.client_context(sni=False)
        ours_page = https(py_port, sni="must.test", ctx=loose)
        theirs_page = https(ngx_port, sni="must.test", ctx=loose)
        assert ours_page[0] == theirs_page[0] == 400
        assert ours_page[1].split("<hr>")[0] == theirs_page[1].split("<hr>")[0]
