"""The differential harness: one config, run by nginx and by pyngx, same requests.

Owns: ``Req`` (a request as sent on the wire, plus what the case states about
nginx's answer), ``Daemons`` (one nginx and one pyngx for the session, both
reloaded with each config), ``Pair`` (the two as they serve one config: ask,
compare), the raw HTTP/1.x client, and the normalizer. Every normalization
is listed, with its reason, in DIFFERENCES.md; ``DOCUMENTED`` is read from
there and the harness refuses to load when the two disagree.

Adding cases::

    CONF = conf(r\"""
        server {
            listen 127.0.0.1:@PORT@;
            location /api/ { proxy_pass http://@BACKEND@/v1/; }
        }
    \""")

    @pytest.mark.parametrize("req", params(
        Req("/api/x?y=1", status=200, reached=True, id="uri-part"),
        xfail(Req("/api", status=301, id="auto-redirect"), "nginx ...; pyngx ..."),
    ))
    def test_api(differ, req):
        \"""One sentence on the behaviour.\"""
        differ(CONF).check(req)

``status``/``reached``/``headers_out`` state what nginx does (checked, so
that a case cannot silently test nothing); ``xfail`` marks a pyngx bug with
both answers in its reason (strict: it fails once fixed). Cases of one
config should sit together: a config change costs a reload.

Config texts use placeholders, replaced per daemon:

    @PORT@, @PORT2@   the daemon's own listen ports (differ per daemon)
    @BACKEND@         127.0.0.1:N of the recording backend (the same for both)
    @BACKEND_PORT@    N alone
    @UNIX@            the backend's UNIX socket path (the same for both)
    @DEAD@            127.0.0.1:M where nothing listens (for 502s)
    @ROOT@            a document root with fixed files and mtimes (conftest.DOCROOT)
    @RAW@             127.0.0.1:R of a backend sending canned, often broken,
                      answers (conftest.RAW_ANSWERS, by the path's first segment)
    @LOG@             the daemon's own access log file; when the config names
                      it, check() also compares the line each request logs
    @CERT@, @KEY@     a self-signed certificate and key (conf/examples/tls)

The text is the inside of ``http { }``; ``conf()`` adds ``events {}``, the http
block and a prelude that turns off access logs and sets
``proxy_http_version 1.1; proxy_set_header Connection "";`` so that both
daemons talk to the backend alike (see DIFFERENCES.md, upstream-http-version).

Environment: PYNGX_DIFF_NGINX_ONLY=1 runs only nginx and checks only what
the cases state about it (for writing cases before pyngx has the feature);
PYNGX_DIFF_FRESH=1 starts both daemons afresh for each config instead of
reloading them (to rule the reload out when a case fails).

Requests go out on raw sockets exactly as written in ``Req`` (Host and target
are not touched), so malformed Hosts, ``//admin``, ``/%61dmin`` and
absolute-form targets reach the daemons as a client sent them.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, nginx_binary, wait_listening

HERE = Path(__file__).resolve().parent
_TLS = HERE.parent.parent / "conf" / "examples" / "tls"

# --- the documented differences -------------------------------------------------

#: Normalizations applied to every case.
ALWAYS = ("server-header", "date-header", "connection-header", "reason-phrase", "error-page-signature", "listen-port",
          "multipart-boundary")
#: Normalizations a case opts into with ``Req(differs=...)``.
OPT_IN = ("upstream-http-version", "streamed-request-body", "websocket-relay")


def documented() -> frozenset[str]:
    """The ids of the bullets in DIFFERENCES.md (``- `id`: ...``)."""
    text = (HERE / "DIFFERENCES.md").read_text()
    return frozenset(re.findall(r"^- `([a-z0-9-]+)`", text, re.M))


DOCUMENTED = documented()
if DOCUMENTED != frozenset(ALWAYS + OPT_IN):
    raise RuntimeError(
        "tests/differential/DIFFERENCES.md and harness.py disagree: "
        f"undocumented {sorted(set(ALWAYS + OPT_IN) - DOCUMENTED)}, unknown {sorted(DOCUMENTED - set(ALWAYS + OPT_IN))}"
    )

_IGNORED_RESPONSE = frozenset({"server", "date", "connection", "keep-alive"})
_SIGNATURE = re.compile(rb"<hr><center>(?:nginx|pyngx)(/[0-9][0-9.]*)?</center>")
_BOUNDARY = re.compile(r"(?<=^multipart/byteranges; )boundary=([0-9]{20})$")


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request, sent as written, and what the case states about nginx's answer.

    Attributes:
        target: the request target, exactly as sent (placeholders allowed).
        method: the method.
        host: the Host field value, or None to send no Host field.
        headers: more fields, in order.
        body: a request body (Content-Length is added unless given).
        version: the protocol on the request line.
        raw: the whole request instead (placeholders allowed); the rest is ignored.
        status: nginx's status, stated by the case (checked, to keep cases honest).
        reached: whether nginx passes the request to the backend, stated by the case.
        differs: opt-in normalizations (ids from DIFFERENCES.md).
        headers_out: response fields that must be present in nginx's answer.
        port: send to the daemon's @PORT@ (1) or @PORT2@ (2).
        tls: speak TLS (no certificate check; SNI is ``sni``).
        sni: the TLS server name; None sends none.
        http2: speak HTTP/2 over TLS (ALPN h2): ``host`` is :authority,
            ``raw`` and ``version`` are not used.
        id: the test id.
    """

    target: str = "/"
    method: str = "GET"
    host: str | None = "localhost"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    version: str = "HTTP/1.1"
    raw: bytes | None = None
    status: int | None = None
    reached: bool | None = None
    differs: tuple[str, ...] = ()
    headers_out: tuple[str, ...] = ()
    port: int = 1
    tls: bool = False
    sni: str | None = None
    http2: bool = False
    id: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.differs) - set(OPT_IN)
        if unknown:
            raise ValueError(f"not documented in DIFFERENCES.md: {sorted(unknown)}")

    def wire(self, subst: dict[str, str]) -> bytes:
        """The request bytes for one daemon."""
        if self.raw is not None:
            return _subst(self.raw.decode("latin-1"), subst).encode("latin-1")
        lines = [f"{self.method} {self.target} {self.version}"]
        if self.host is not None:
            lines.append(f"Host: {self.host}")
        names = set()
        for k, v in self.headers:
            lines.append(f"{k}: {v}")
            names.add(k.lower())
        if self.body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(self.body)}")
        head = _subst("\r\n".join(lines) + "\r\n\r\n", subst).encode("latin-1")
        return head + (self.body or b"")

    @property
    def is_head(self) -> bool:
        return self.raw.startswith(b"HEAD ") if self.raw is not None else self.method == "HEAD"

    def label(self) -> str:
        if self.id:
            return self.id
        return f"{self.method} {self.target} host={self.host}"


def _subst(text: str, subst: dict[str, str]) -> str:
    for k, v in subst.items():
        text = text.replace(k, v)
    return text


@dataclass
class Answer:
    """What one daemon answered, and what the backend received meanwhile."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seen: list[Any] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._more():
                return None
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n and self._more():
            pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out, self.buf = self.buf, b""
        return out


def exchange(port: int, data: bytes, head: bool, timeout: float = 5.0, tls: bool = False,
             sni: str | None = None) -> Answer:
    """Send ``data`` on a new connection to 127.0.0.1:port and read one response.

    Status 0 means the daemon closed the connection without answering; -1
    that it answered without a status line (nginx passes an upstream's
    HTTP/0.9 answer as it is): the body is then every byte received until
    the connection closed or went quiet.
    """
    return exchange_many(port, [(data, head)], pipelined=False, timeout=timeout, tls=tls, sni=sni)[0]


def exchange_many(port: int, requests: list[tuple[bytes, bool]], pipelined: bool, timeout: float = 5.0,
                  tls: bool = False, sni: str | None = None) -> list[Answer]:
    """Send several requests on one connection and read their responses.

    Args:
        requests: (request bytes, is HEAD) in order.
        pipelined: send them all at once, else each after the last answer.

    Returns:
        One Answer per request; after a connection close, the rest are status 0.
    """
    out: list[Answer] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        sock = raw
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(raw, server_hostname=sni)
        r = _Reader(sock)
        if pipelined:
            _send(sock, b"".join(data for data, _ in requests))
        for data, head in requests:
            if not pipelined:
                _send(sock, data)
            out.append(_read_answer(sock, r, head))
    return out


def exchange_h2(port: int, req: Req, subst: dict[str, str], timeout: float = 5.0) -> Answer:
    """``req`` as one HTTP/2 stream over TLS (ALPN h2), with the h2 library.

    Status 0 means the stream or connection was reset without an answer.
    """
    import h2.config
    import h2.connection
    import h2.events

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=req.sni) as sock:
            assert sock.selected_alpn_protocol() == "h2", "the server did not agree to h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
            conn.initiate_connection()
            fields = [(b":method", req.method.encode()), (b":path", _subst(req.target, subst).encode("latin-1")),
                      (b":scheme", b"https")]
            if req.host is not None:
                fields.append((b":authority", _subst(req.host, subst).encode("latin-1")))
            for k, v in req.headers:
                fields.append((k.lower().encode("latin-1"), _subst(v, subst).encode("latin-1")))
            if req.body is not None and not any(k.lower() == "content-length" for k, _ in req.headers):
                fields.append((b"content-length", str(len(req.body)).encode()))
            conn.send_headers(1, fields, end_stream=req.body is None)
            if req.body is not None:
                conn.send_data(1, req.body, end_stream=True)
            sock.sendall(conn.data_to_send())
            status, headers, body = 0, [], bytearray()
            done = False
            while not done:
                data = sock.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        for k, v in ev.headers:
                            if k == b":status":
                                status = int(v)
                            else:
                                headers.append((k.decode("latin-1"), v.decode("latin-1")))
                    elif isinstance(ev, h2.events.DataReceived):
                        body += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                         h2.events.ConnectionTerminated)):
                        done = True
                sock.sendall(conn.data_to_send())
            return Answer(status, headers, bytes(body))


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered early (e.g. 413) and closed: the answer is still there to read


def _read_rest(sock: socket.socket, r: _Reader) -> bytes:
    sock.settimeout(0.5)
    try:
        return r.rest()
    except TimeoutError:
        out, r.buf = r.buf, b""
        return out


def _read_answer(sock: socket.socket, r: _Reader, head: bool) -> Answer:
    while True:
        if not r.buf and not r._more():
            return Answer(0, [], b"")
        if not b"HTTP/".startswith(r.buf[:5]):
            return Answer(-1, [], _read_rest(sock, r))
        line = r.line()
        if line is None:
            return Answer(0, [], b"")
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return Answer(-1, [], line + b"\r\n" + _read_rest(sock, r))
        status = int(parts[1])
        headers: list[tuple[str, str]] = []
        while True:
            h = r.line()
            if h is None or h == b"":
                break
            k, _, v = h.partition(b":")
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        if not 100 <= status < 200 or status == 101:
            break
    names = {k.lower(): v for k, v in headers}
    if head or status in (101, 204, 304):
        body = b""
    elif "chunked" in names.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = r.line()
            if size_line is None:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while r.line() not in (None, b""):
                    pass
                break
            chunks.append(r.exact(size))
            r.line()
        body = b"".join(chunks)
    elif "content-length" in names:
        body = r.exact(int(names["content-length"]))
    else:
        body = r.rest()
    return Answer(status, headers, body)


# --- normalizing ----------------------------------------------------------------


def _ports_re(ports: dict[int, str]) -> list[tuple[re.Pattern[bytes], bytes]]:
    return [(re.compile(rb"(?<![0-9])%d(?![0-9])" % p), name.encode()) for p, name in ports.items()]


def _sub_ports(value: bytes, pats: list[tuple[re.Pattern[bytes], bytes]]) -> bytes:
    for pat, name in pats:
        value = pat.sub(name, value)
    return value


def _signature(m: re.Match[bytes]) -> bytes:
    return b"<hr><center>@SERVER@" + (b"/@VERSION@" if m.group(1) else b"") + b"</center>"


def _short(data: str | bytes) -> Any:
    """Long bodies compare by length and hash, so that failures stay readable."""
    if len(data) <= 256:
        return data
    raw = data.encode("latin-1") if isinstance(data, str) else data
    return f"<{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:16]}>"


def view(ans: Answer, ports: dict[int, str], differs: tuple[str, ...], head: bool) -> dict[str, Any]:
    """The comparable form of an answer (see DIFFERENCES.md for each step)."""
    pats = _ports_re(ports)
    body = _sub_ports(ans.body, pats)
    body = _SIGNATURE.sub(_signature, body)
    multipart = _BOUNDARY.search(ans.header("content-type") or "")
    if multipart is not None:  # multipart-boundary
        body = body.replace(b"--" + multipart.group(1).encode(), b"--@BOUNDARY@")
    headers: dict[str, list[str]] = {}
    for k, v in ans.headers:
        low = k.lower()
        if low in _IGNORED_RESPONSE:
            continue
        value = _sub_ports(v.encode("latin-1"), pats).decode("latin-1")
        if multipart is not None and low == "content-type":
            value = _BOUNDARY.sub("boundary=@BOUNDARY@", value)
        if "websocket-relay" in differs and low == "upgrade":
            value = value.lower()
        if low == "content-length" and value.isdigit():
            n = int(value)
            if n == len(ans.body) and not head:
                value = str(len(body))
            elif head and n and ans.status >= 300 and "text/html" in (ans.header("content-type") or ""):
                value = "@ERROR-PAGE-LENGTH@"
        headers.setdefault(low, []).append(value)
    upstream = []
    for s in ans.seen:
        up_headers: dict[str, list[str]] = {}
        for k, v in s.headers:
            low = k.lower()
            if "upstream-http-version" in differs and low == "connection":
                continue
            if "streamed-request-body" in differs and low in ("content-length", "transfer-encoding"):
                continue
            if "websocket-relay" in differs:
                if low in ("sec-websocket-key", "sec-websocket-extensions"):
                    continue
                if low in ("upgrade", "connection"):
                    v = v.lower()
                if low == "sec-websocket-protocol":
                    v = ",".join(t.strip() for t in v.split(","))
            up_headers.setdefault(low, []).append(_sub_ports(v.encode("latin-1"), pats).decode("latin-1"))
        upstream.append({
            "via": s.via,
            "method": s.method,
            "uri": _sub_ports(s.path.encode("latin-1"), pats).decode("latin-1"),
            "version": "-" if "upstream-http-version" in differs else s.version,
            "headers": up_headers,
            "body": _short(s.body),
        })
    text: Any = body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    log = [_sub_ports(line.encode("latin-1"), pats).decode("latin-1") for line in ans.log]
    return {"status": ans.status, "headers": headers, "body": _short(text), "upstream": upstream, "log": log}


def explain(nv: dict[str, Any], pv: dict[str, Any]) -> str:
    """The parts of two views that differ, one per line."""
    lines = []
    for key in nv:
        if key == "headers":
            for name in sorted(set(nv[key]) | set(pv[key])):
                a, b = nv[key].get(name), pv[key].get(name)
                if a != b:
                    lines.append(f"  header {name}: nginx={a!r} pyngx={b!r}")
        elif nv[key] != pv[key]:
            lines.append(f"  {key}: nginx={nv[key]!r}\n  {' ' * len(key)}  pyngx={pv[key]!r}")
    return "\n".join(lines)


# --- the two daemons ------------------------------------------------------------


def conf(inner: str, prelude: bool = True) -> str:
    """A whole config from the inside of ``http {}`` (see the module doc)."""
    pre = 'access_log off;\n    proxy_http_version 1.1;\n    proxy_set_header Connection "";\n' if prelude else "access_log off;\n"
    return f"events {{}}\n\nhttp {{\n    {pre}{inner}\n}}\n"


class PyngxDiffers(AssertionError):
    """pyngx's normalized answer is not nginx's."""


class PyngxFailed(RuntimeError):
    """pyngx did not load a config that nginx accepts."""


class Unsupported(RuntimeError):
    """pyngx refused the config with "... is not supported by pyngx" (a feature not built yet)."""


#: The control server added to every config: it answers the config's
#: generation, so that a reload is known to be live without sleeping.
_CONTROL = """
    server {
        listen 127.0.0.1:@CTRL@;
        location = /__generation { return 200 "@GEN@"; }
    }
"""


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (nginx's workers), from /proc."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _generation(port: int) -> str | None:
    try:
        ans = exchange(port, b"GET /__generation HTTP/1.0\r\n\r\n", False, timeout=2.0)
    except OSError:
        return None
    return ans.body.decode() if ans.status == 200 else None


def _lines(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_bytes().decode("latin-1").splitlines()


def _emerg_message(line: str) -> str:
    """The message of a pyngx [emerg] line, without time, pid, file and line."""
    msg = re.sub(r"^.*?\[emerg\] (\d+#\d+: )?(reload_failed: )?", "", line)
    msg = re.sub(r"; keeping the old configuration$", "", msg)
    return re.sub(r" in /\S+:\d+$", "", msg)


def _until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


class Daemons:
    """One nginx and one pyngx for the whole session, on fixed ports.

    Each config is loaded by a reload (SIGHUP to both, as an operator does),
    which takes a fraction of the time of starting Python again; a reload
    counts as done when the control server answers the new generation and,
    for nginx, the old workers have exited. pyngx runs with --no-watch, so
    only these reloads change its config. With PYNGX_DIFF_FRESH=1 both are
    started afresh for every config instead (to rule the reload out when a
    case fails).
    """

    def __init__(self, workdir: Path, backend: Any, dead_port: int, docroot: Path | None,
                 raw_port: int = 0) -> None:
        self.workdir = workdir
        self.backend = backend
        self.nports = (free_port(), free_port())
        self.pports = (free_port(), free_port())
        self.nctl, self.pctl = free_port(), free_port()
        common = {
            "@BACKEND_PORT@": str(backend.port),
            "@BACKEND@": f"127.0.0.1:{backend.port}",
            "@UNIX@": str(backend.unix_path),
            "@DEAD@": f"127.0.0.1:{dead_port}",
            "@ROOT@": str(docroot),
            "@RAW@": f"127.0.0.1:{raw_port}",
            "@CERT@": str(_TLS / "example-only.crt"),
            "@KEY@": str(_TLS / "example-only.key"),
        }
        self.ndir, self.pdir = workdir / "nginx", workdir / "pyngx"
        self.nlog, self.plog = self.ndir / "access.log", self.pdir / "access.log"
        self.nsubst = {"@PORT2@": str(self.nports[1]), "@PORT@": str(self.nports[0]), "@CTRL@": str(self.nctl),
                       "@LOG@": str(self.nlog), **common}
        self.psubst = {"@PORT2@": str(self.pports[1]), "@PORT@": str(self.pports[0]), "@CTRL@": str(self.pctl),
                       "@LOG@": str(self.plog), **common}
        self.nginx_only = bool(os.environ.get("PYNGX_DIFF_NGINX_ONLY"))
        self.fresh = bool(os.environ.get("PYNGX_DIFF_FRESH"))
        self.ndir.mkdir(parents=True, exist_ok=True)
        (self.ndir / "logs").mkdir(exist_ok=True)
        self.pdir.mkdir(parents=True, exist_ok=True)
        self.nginx: subprocess.Popen[bytes] | None = None
        self.pyngx: subprocess.Popen[bytes] | None = None
        self.gen = 0

    def render(self, text: str, subst: dict[str, str]) -> str:
        head, _, tail = text.rpartition("}")
        return _subst(head + _CONTROL + "}" + tail, {"@GEN@": f"gen-{self.gen}", **subst})

    def load(self, text: str) -> Pair:
        """Make both daemons serve ``text``; returns the Pair that asks them.

        Raises:
            RuntimeError: nginx rejects the config (the case is wrong).
            Unsupported, PyngxFailed: pyngx does not load it.
        """
        self.gen += 1
        if self.fresh:
            self.stop()
        self.load_nginx(text)
        if not self.nginx_only:
            self.load_pyngx(text)
        return Pair(self, text)

    # -- nginx ------------------------------------------------------------------

    def _nginx_argv(self) -> list[str]:
        binary = nginx_binary()
        assert binary is not None
        return [binary, "-p", str(self.ndir), "-c", str(self.ndir / "nginx.conf"), "-e", str(self.ndir / "logs" / "error.log"),
                "-g", f"daemon off; pid {self.ndir}/nginx.pid;"]

    def load_nginx(self, text: str) -> None:
        (self.ndir / "nginx.conf").write_text(self.render(text, self.nsubst))
        check = subprocess.run([*self._nginx_argv(), "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejects the config: {check.stderr.strip()}")
        if self.nginx is None or self.nginx.poll() is not None:
            mime = Path("/etc/nginx/mime.types")
            if mime.exists():
                shutil.copy(mime, self.ndir / "mime.types")
            self.nginx = subprocess.Popen(self._nginx_argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            old = _children(self.nginx.pid)
            self.nginx.send_signal(signal.SIGHUP)
            # Old workers close their listening sockets when told to quit, and
            # exit once their connections are done. Waiting for the exit shuts
            # out the moment when one could still accept; a worker that holds
            # a connection (a test that left one open) is given 2 s, by then
            # it has long stopped accepting.
            deadline = time.monotonic() + 2.0
            master = self.nginx.pid
            _until(lambda: not (old & _children(master)) or time.monotonic() > deadline, "unreachable")
        want = f"gen-{self.gen}"
        _until(lambda: _generation(self.nctl) == want, "nginx did not load the config")
        if "@PORT2@" in text:
            wait_listening("127.0.0.1", self.nports[1])

    # -- pyngx ------------------------------------------------------------------

    def load_pyngx(self, text: str) -> None:
        conf_path = self.pdir / "pyngx.conf"
        conf_path.write_text(self.render(text, self.psubst))
        err_path = self.pdir / "stderr.log"
        if self.pyngx is None or self.pyngx.poll() is not None:
            with open(self.pdir / "stdout.log", "ab") as out, open(err_path, "ab") as err:
                start = err_path.stat().st_size
                self.pyngx = subprocess.Popen([sys.executable, "-m", "pyngx", "--no-watch", "-c", str(conf_path)],
                                              cwd=self.pdir, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        else:
            start = err_path.stat().st_size
            self.pyngx.send_signal(signal.SIGHUP)
        want = f"gen-{self.gen}"
        proc = self.pyngx

        def done() -> bool:
            if _generation(self.pctl) == want:
                return True
            with open(err_path, "rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace")
            emerg = [line for line in new.splitlines() if "[emerg]" in line]
            if emerg or proc.poll() is not None:
                unsupported = [line for line in emerg if "not supported by pyngx" in line]
                if unsupported:
                    raise Unsupported(_emerg_message(unsupported[0]))
                raise PyngxFailed(f"pyngx did not load the config:\n{new}")
            return False

        try:
            _until(done, "pyngx did not load the config")
        except TimeoutError:
            tail = err_path.read_text(errors="replace").splitlines()[-5:]
            raise PyngxFailed("pyngx did not answer the new config's control request; its stderr ends:\n"
                              + "\n".join(tail)) from None
        if "@PORT2@" in text:
            wait_listening("127.0.0.1", self.pports[1], proc=proc)

    def stop(self) -> None:
        for proc in (self.pyngx, self.nginx):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.pyngx = self.nginx = None


class Pair:
    """The two daemons as they serve one config: ask them, compare the answers."""

    def __init__(self, daemons: Daemons, text: str) -> None:
        self.text = text
        self.backend = daemons.backend
        self.nports, self.pports = daemons.nports, daemons.pports
        self.nsubst, self.psubst = daemons.nsubst, daemons.psubst
        self.nginx_only = daemons.nginx_only
        self.logs = (daemons.nlog, daemons.plog) if "@LOG@" in text else None

    def _ask(self, port: int, subst: dict[str, str], req: Req, log: Path | None) -> Answer:
        start = len(self.backend.seen)
        lines = _lines(log)
        if req.http2:
            ans = exchange_h2(port, req, subst)
        else:
            ans = exchange(port, req.wire(subst), req.is_head, tls=req.tls, sni=req.sni)
        ans.seen = list(self.backend.seen[start:])
        if log is not None:
            # Both write the line when the request ends, pyngx from a queue:
            # wait for it rather than sleep.
            _until(lambda: len(_lines(log)) > len(lines), f"no access log line in {log}", timeout=5)
            ans.log = _lines(log)[len(lines):]
        return ans

    def ask(self, req: Req) -> tuple[Answer, Answer]:
        """(nginx's answer, pyngx's answer) to ``req``."""
        i = req.port - 1
        nlog, plog = self.logs or (None, None)
        n = self._ask(self.nports[i], self.nsubst, req, nlog)
        if self.nginx_only:
            return n, n
        return n, self._ask(self.pports[i], self.psubst, req, plog)

    def check_connection(self, reqs: list[Req], pipelined: bool) -> None:
        """Send ``reqs`` on one connection to each daemon (pipelined, or each
        after the last answer) and compare every answer; what the backend saw
        in all goes with the last one."""
        views = []
        for port, subst, ports in ((self.nports[0], self.nsubst, self.nports), (self.pports[0], self.psubst, self.pports)):
            start = len(self.backend.seen)
            answers = exchange_many(port, [(r.wire(subst), r.is_head) for r in reqs], pipelined)
            answers[-1].seen = list(self.backend.seen[start:])
            names = {ports[0]: "@PORT@", ports[1]: "@PORT2@"}
            views.append([view(a, names, r.differs, r.is_head) for a, r in zip(answers, reqs)])
            if self.nginx_only:
                views.append(views[0])
                break
        nviews, pviews = views
        for r, nv in zip(reqs, nviews):
            if r.status is not None:
                assert nv["status"] == r.status, f"the case is wrong: nginx answered {nviews}"
        for k, (nv, pv) in enumerate(zip(nviews, pviews)):
            if pv != nv:
                raise PyngxDiffers(f"pyngx differs from nginx for request {k + 1} of {len(reqs)}:\n{explain(nv, pv)}")

    def check(self, req: Req) -> tuple[Answer, Answer]:
        """Send ``req`` to both; assert what the case states about nginx, then
        that pyngx's normalized answer equals nginx's."""
        n, p = self.ask(req)
        head = req.is_head
        nv = view(n, {self.nports[0]: "@PORT@", self.nports[1]: "@PORT2@"}, req.differs, head)
        pv = nv if self.nginx_only else view(p, {self.pports[0]: "@PORT@", self.pports[1]: "@PORT2@"}, req.differs, head)
        if req.status is not None:
            assert n.status == req.status, f"the case is wrong: nginx answered {nv}"
        if req.reached is not None:
            assert bool(n.seen) == req.reached, f"the case is wrong: nginx answered {nv}"
        for name in req.headers_out:
            assert n.header(name) is not None, f"the case is wrong: nginx answered {nv}"
        if pv != nv:
            raise PyngxDiffers(f"pyngx differs from nginx for {req.label()}:\n{explain(nv, pv)}")
        return n, p


#: pyngx bugs seen from several files (xfail reasons).
H11_400 = ("nginx answers 400 with its HTML error page (text/html, 163 bytes); pyngx answers 400 with an "
           "empty body and no Content-Type: Hypercorn/h11 rejects the request before pyngx sees it")


def params(*reqs: Any) -> list[Any]:
    """pytest params from ``Req``s (or ready ``xfail(...)`` params), with their ids."""
    return [pytest.param(r, id=r.label()) if isinstance(r, Req) else r for r in reqs]


def xfail(req: Req, reason: str) -> Any:
    """A case where pyngx is known to differ from nginx: a pyngx bug, strict xfail.

    Only a difference (or pyngx refusing nginx's config) counts as the
    expected failure; a case whose statement about nginx is wrong fails.
    """
    mark = pytest.mark.xfail(strict=True, reason=reason, raises=(PyngxDiffers, PyngxFailed))
    return pytest.param(req, id=req.label(), marks=mark)


# --- pyngx -t without starting Python each time ----------------------------------

_T_WORKER = r"""
import contextlib, io, json, os, sys
from pyngx.cli import main
for line in sys.stdin:
    job = json.loads(line)
    os.chdir(job["cwd"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(job["argv"])
        except BaseException as exc:  # a crash is an answer too
            print(f"pyngx: [crit] {type(exc).__name__}: {exc}", file=sys.stderr)
            rc = 2
    sys.__stdout__.write(json.dumps({"rc": rc, "stderr": err.getvalue()}) + "\n")
    sys.__stdout__.flush()
"""
_t_worker: subprocess.Popen[str] | None = None


def _stop_t_worker(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()  # the worker's loop ends at EOF
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def pyngx_t(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pyngx ARGV`` for config checks (-t), answered by one long-lived
    Python process that calls ``pyngx.cli.main``: a few ms a check instead of
    a Python start (~0.3-1 s). Same return code and stderr as the command.

    Only for -t/-T: the worker never serves. Config loading keeps no state
    between calls (checked: no module-level table is written by a build), so
    one check cannot leak into the next.
    """
    global _t_worker
    if _t_worker is None or _t_worker.poll() is not None:
        _t_worker = subprocess.Popen([sys.executable, "-c", _T_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=cwd)
        atexit.register(_stop_t_worker, _t_worker)
    assert _t_worker.stdin is not None and _t_worker.stdout is not None
    _t_worker.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
    _t_worker.stdin.flush()
    answer = json.loads(_t_worker.stdout.readline())
    return subprocess.CompletedProcess([sys.executable, "-m", "pyngx", *argv], answer["rc"], "", answer["stderr"])


def require_nginx() -> str:
    """The nginx binary, or skip the test saying why."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx not found: set PYNGX_TEST_NGINX or install Debian's nginx-light")
    return binary


def nginx_t(path: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on the config at ``path``, with its prefix, error log and pid under ``prefix``."""
    return subprocess.run([require_nginx(), "-t", "-p", str(prefix), "-c", str(path), "-e", str(prefix / "error.log"),
                           "-g", f"pid {prefix}/nginx.pid;"], capture_output=True, text=True, timeout=30)


_T_PREFIX = re.compile(r"^(nginx|pyngx): \[(\w+)\] ")


def t_verdict(lines: str) -> tuple[str, str | None, list[str]]:
    """Read -t output: (the first [emerg] message without the program's name and
    file, its line; or "ok", None) and the [warn] messages (file left out)."""
    warns: list[str] = []
    for line in lines.splitlines():
        m = _T_PREFIX.match(line)
        if m and m.group(2) == "warn":
            warns.append(re.sub(r" in \S+:(\d+)$", r" :\1", line[m.end():]))
        if m and m.group(2) == "emerg":
            text = line[m.end():]
            where = re.search(r" in (\S+):(\d+)$", text)
            if where:
                return text[: where.start()], where.group(2), warns
            return text, None, warns
    return "ok", None, warns


@dataclass(frozen=True)
class TResult:
    """One program's -t verdict (see ``t_verdict``), with the temp directory left out of its messages."""

    ok: bool
    text: str
    line: str | None
    warns: list[str]
    stderr: str


def t_both(tmp: Path, server: str, http: str) -> tuple[TResult, TResult]:
    """``nginx -t`` and ``pyngx -t`` on one config: ``http`` at http level and
    ``server`` in a server listening on 127.0.0.1:1. Returns (nginx's, pyngx's)."""
    path = tmp / "test.conf"
    path.write_text(f"events {{}}\nhttp {{\n    {http}\n    server {{\n        listen 127.0.0.1:1;\n"
                    f"        {server}\n    }}\n}}\n")
    results = []
    # pyngx as "python -m pyngx -t", without a Python start per case.
    for proc in (nginx_t(path, tmp), pyngx_t(["-t", "-c", str(path)], tmp)):
        text, line, warns = t_verdict(proc.stderr.replace(str(tmp) + "/", ""))
        results.append(TResult(proc.returncode == 0, text, line, warns, proc.stderr))
    return results[0], results[1]


def same_t_verdict(tmp: Path, server: str, http: str) -> tuple[TResult, TResult]:
    """``t_both``, asserting pyngx's verdict is nginx's: accepted or not, the
    message, and the line where nginx names one (it checks variables at the
    end of the file, without a line). Returns (nginx's, pyngx's) for more checks."""
    n, p = t_both(tmp, server, http)
    assert p.ok == n.ok, (n.stderr, p.stderr)
    assert p.text == n.text
    if n.line is not None:
        assert p.line == n.line
    return n, p
