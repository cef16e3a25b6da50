"""TLS and HTTP/2 benchmark: pyngx beside nginx, same certificate, same run.

Owns: starting an origin (nginx, ``return 200`` with a 13-byte body, on a
plain port), then pyngx and nginx as TLS front ends (1 worker each, the
example RSA-2048 pair from conf/examples/tls/, HTTP/2 on), and measuring
each front end, interleaved over repetitions:

    handshakes/s   wrk, HTTP/1.1 with "Connection: close": a full TLS 1.3
                   handshake for every request (wrk resumes no session)
    h2 req/s       h2load, 8 connections x 16 streams, on one path
    h1 req/s       h2load --h1, 8 keep-alive TLS connections

for two paths: ``/ok`` (the front end answers itself: TLS + HTTP cost
only) and ``/proxy`` (proxied to the origin over HTTP/1.1 keep-alive).
Prints a Markdown table of medians and writes it to bench/tls_results.md.

The front end under test runs on core 0; origin and load generators on
core 1 (taskset). Every process binds 127.0.0.1 only and is stopped by
its id on exit, Ctrl-C included.

Needs: /usr/sbin/nginx, h2load (Debian: nghttp2-client), wrk, taskset.
Usage: python bench/tls_bench.py [--seconds 5] [--reps 3]
Must not: change pyngx, or leave a process or a temp file behind.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CERT = ROOT / "conf" / "examples" / "tls" / "example-only.crt"
KEY = ROOT / "conf" / "examples" / "tls" / "example-only.key"
NGINX = "/usr/sbin/nginx"
FRONT_CPU, LOAD_CPU = "0", "1"
BODY = "hello world!\n"


class Procs:
    """The servers this run started; each is stopped by its process group id."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
        self.procs.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tls(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Wait until ``GET /ok`` over TLS on 127.0.0.1:port answers 200."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=2), server_hostname=None) as s:
                s.sendall(b"GET /ok HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} did not answer over TLS in {timeout:.0f}s")


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def run(argv: list[str], timeout: float) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"exit {out.returncode}: {' '.join(argv)}\n{out.stderr[-2000:]}")
    return out.stdout


# --- load generators ----------------------------------------------------------------


def handshakes(port: int, seconds: float) -> float:
    """New TLS connections per second: wrk, one request per connection."""
    out = run(pinned(LOAD_CPU, ["wrk", "-t1", "-c8", f"-d{seconds:g}s", "-H", "Connection: close",
                                f"https://127.0.0.1:{port}/ok"]), seconds + 30)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m is None or errors is not None:
        raise RuntimeError(f"wrk: {out}")
    return float(m.group(1))


def h2load(port: int, path: str, seconds: float, h1: bool) -> float:
    """Requests per second over one set of keep-alive TLS connections."""
    argv = ["h2load", "-c8", f"-D{seconds:g}", "--warm-up-time=1", "-t1"]
    argv += ["--h1", "-m1"] if h1 else ["-m16"]
    out = run(pinned(LOAD_CPU, [*argv, f"https://127.0.0.1:{port}{path}"]), seconds + 60)
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m is None or status is None or any(int(n) for n in status.groups()[1:]):
        raise RuntimeError(f"h2load: {out}")
    proto = re.search(r"Application protocol: (\S+)", out)
    want = "http/1.1" if h1 else "h2"
    if proto is None or proto.group(1) != want:
        raise RuntimeError(f"h2load negotiated {proto.group(1) if proto else '?'}, not {want}")
    return float(m.group(1))


# --- servers ------------------------------------------------------------------------

ORIGIN = """worker_processes 1; error_log {d}/origin.err warn; pid {d}/origin.pid; daemon off;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{body}"; }} }} }}
"""

FRONT_NGINX = """worker_processes 1; error_log {d}/nginx.err warn; pid {d}/nginx.pid; daemon off;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location = /ok {{ return 200 "{body}"; }}
    location /proxy {{ proxy_pass http://origin/ok; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
"""

FRONT_PYNGX = """error_log {d}/pyngx.err warn;
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} ssl; http2 on;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location = /ok {{ return 200 "{body}"; }}
    location /proxy {{ proxy_pass http://127.0.0.1:{origin}/ok; }} }} }}
"""

FIGURES = (
    ("handshakes/s (TLS 1.3, new connection per request)", "hs", "/ok"),
    ("h2 req/s, `return 200`", "h2", "/ok"),
    ("HTTP/1.1 req/s, `return 200`", "h1", "/ok"),
    ("h2 req/s, proxied", "h2", "/proxy"),
    ("HTTP/1.1 req/s, proxied", "h1", "/proxy"),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    args = ap.parse_args(argv)
    for tool in ("h2load", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"tls_bench: {tool} not found (Debian: apt-get install "
                  f"{'nghttp2-client' if tool == 'h2load' else tool if tool == 'wrk' else 'util-linux'})",
                  file=sys.stderr)
            return 2
    if not os.path.exists(NGINX):
        print(f"tls_bench: {NGINX} not found (Debian: apt-get install nginx-light)", file=sys.stderr)
        return 2
    procs = Procs()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyngx-tls-bench-") as tmp:
        d = Path(tmp)
        try:
            origin, ngx, py = free_port(), free_port(), free_port()
            fmt = {"d": d, "body": BODY.replace("\n", "\\n"), "cert": CERT, "key": KEY, "origin": origin}
            (d / "origin.conf").write_text(ORIGIN.format(port=origin, **fmt))
            (d / "nginx.conf").write_text(FRONT_NGINX.format(port=ngx, **fmt))
            (d / "pyngx.conf").write_text(FRONT_PYNGX.format(port=py, **fmt))
            procs.start(pinned(LOAD_CPU, [NGINX, "-p", str(d), "-c", str(d / "origin.conf"), "-e", str(d / "origin.err")]),
                        d / "origin.log")
            front = {
                "nginx": procs.start(pinned(FRONT_CPU, [NGINX, "-p", str(d), "-c", str(d / "nginx.conf"),
                                                        "-e", str(d / "nginx.err")]), d / "nginx.log"),
                "pyngx": procs.start(pinned(FRONT_CPU, [sys.executable, "-m", "pyngx", "--no-watch", "-c",
                                                        str(d / "pyngx.conf")]), d / "pyngx.log", cwd=ROOT),
            }
            ports = {"nginx": ngx, "pyngx": py}
            for name, proc in front.items():
                wait_tls(ports[name], proc, d / f"{name}.log")
            for rep in range(args.reps):
                for _, kind, path in FIGURES:
                    for name in ("pyngx", "nginx"):
                        port = ports[name]
                        value = handshakes(port, args.seconds) if kind == "hs" else h2load(
                            port, path, args.seconds, h1=kind == "h1")
                        results.setdefault((f"{kind}{path}", name), []).append(value)
                        print(f"rep {rep + 1}: {name:5} {kind:2} {path:6} {value:10.0f}", file=sys.stderr)
        finally:
            procs.stop_all()
    lines = [
        f"# TLS / HTTP/2: pyngx beside nginx ({datetime.date.today()})",
        "",
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{subprocess.run([NGINX, '-v'], capture_output=True, text=True).stderr.strip()}; "
        f"front end on core {FRONT_CPU}, origin and load on core {LOAD_CPU}; 1 worker each; "
        f"certificate {CERT.relative_to(ROOT)} (RSA 2048); median of {args.reps} runs of {args.seconds:g}s.",
        "",
        "| figure | pyngx | nginx | pyngx / nginx |",
        "| --- | ---: | ---: | ---: |",
    ]
    for title, kind, path in FIGURES:
        ours = statistics.median(results[(f"{kind}{path}", "pyngx")])
        theirs = statistics.median(results[(f"{kind}{path}", "nginx")])
        lines.append(f"| {title} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (BENCH / "tls_results.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
