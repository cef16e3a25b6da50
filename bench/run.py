"""pyngx's benchmark: pyngx against nginx and minimal Python proxies, in one run.

Owns: starting a fast origin (nginx, ``return 200`` with a 13-byte body and
static files of 1 MiB and 1 GiB), an upload sink, and the proxies under
test; driving them with wrk and curl, interleaved over repetitions; and the
Markdown table of medians, printed and written to bench/results.md.
``--profile`` runs pyngx under py-spy while wrk loads it instead
(bench/profile.sh), writing to bench/out/.

Targets (the proxy under test on core 0, origin, sink, wrk and curl on core 1):

    direct    wrk/curl straight to the origin (the limit)
    nginx     nginx as reverse proxy: 1 worker, upstream keepalive
    aiohttp   bench/peers/aiohttp_proxy.py: the fastest plain-Python peer
    asgi      bench/peers/asgi_proxy.py: Hypercorn + aiohttp, no pyngx feature
    pyngx     python -m pyngx -c FILE, 1 worker, access_log off

Installs nothing: needs Debian's nginx (/usr/sbin/nginx), wrk, curl and
taskset (util-linux) on PATH, and py-spy for --profile. Every process it
starts binds 127.0.0.1 only and is killed on exit, Ctrl-C included.

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
PROXY_CPU = "0"  # the proxy under test
LOAD_CPU = "1"  # origin, sink, wrk, curl

BODY_13 = "hello world!\n"  # 13 bytes
MIB = 1 << 20
GIB = 1 << 30

TARGETS = ("direct", "nginx", "aiohttp", "asgi", "pyngx")
PEERS = ("aiohttp", "asgi")  # the "fastest Python peer" is the best of these, per figure
TITLES = {
    "direct": "direct (origin)",
    "nginx": "nginx proxy",
    "aiohttp": "aiohttp.web peer",
    "asgi": "ASGI peer (Hypercorn+aiohttp)",
    "pyngx": "pyngx",
}


# --------------------------------------------------------------------------
# Processes: every one is registered and killed at exit, even on Ctrl-C.


class Procs:
    """The processes this run started; ``stop_all`` ends each by its id."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        # A new session per server: Ctrl-C reaches only this script, which
        # then stops each server's process group (nginx master + worker).
        with open(log, "ab") as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=cwd,
                                 start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # The leader is gone; make sure no child of its group lingers.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self) -> None:
        for _, p in reversed(list(self.procs)):
            self.stop(p)

    def run(self, argv: list[str], timeout: float) -> str:
        """Run a load generator to completion; returns its stdout."""
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        self.procs.append((argv[0], p))
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p, grace=1.0)
            raise RuntimeError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from None
        finally:
            self.procs = [(n, q) for n, q in self.procs if q is not p]
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {' '.join(argv)}\n{err.decode(errors='replace')}")
        return out.decode(errors="replace")


def _hold_signals() -> None:
    """A second Ctrl-C must not cut the cleanup short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, proc: subprocess.Popen[bytes], log: Path, path: str = "/13", timeout: float = 20.0) -> None:
    """Wait until ``GET path`` on 127.0.0.1:port answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} did not answer 200 on {path} in {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def thread_cpu(pid: int | None) -> dict[str, float]:
    """CPU seconds per thread of ``pid``'s tree: "main" for the first
    thread of each process, others by name (/proc/PID/task/TID/comm)."""
    out: dict[str, float] = {}
    if pid is None:
        return out
    hz = os.sysconf("SC_CLK_TCK")
    for p in tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
                name = "main" if task.name == str(p) else (task / "comm").read_text().strip()
            except OSError:
                continue
            out[name] = out.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / hz
    return out


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) used so far by ``pid`` and its descendants."""
    if pid is None:
        return 0.0
    ticks = 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(x) for x in stat[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssPeak:
    """Samples VmRSS of the process doing the proxying every 10 ms.

    For a master/worker tree (nginx) that is the largest worker; a single
    process (pyngx with 1 worker, the peers) is itself.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        assert self.pid is not None
        pids = tree(self.pid)
        workers = pids[1:] or pids
        self.peak = max(self.peak, max(rss_kib(p) for p in workers))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.01)

    def __enter__(self) -> RssPeak:
        if self.pid is not None:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            self._stop.set()
            self._thread.join()


class CpuWatch:
    """CPU time used on this machine by processes outside this bench.

    Other work on a 2-core machine (a test suite, a build) skews every
    figure; the report says how much there was: busy time from /proc/stat
    minus this script's, its reaped children's (wrk, curl) and its live
    servers'.
    """

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]]
        user, nice, system = fields[:3]
        # irq/softirq time is left out: loopback traffic of the bench's own
        # processes is partly charged there, to no process.
        busy = (user + nice + system) / self.hz
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        servers = sum(cpu_seconds(p.pid) for _, p in self.procs.procs if p.poll() is None)
        return time.monotonic(), busy, own + servers

    def foreign(self) -> float:
        """Share of all cores used outside the bench since creation, 0..1."""
        t1, busy1, ours1 = self._now()
        t0, busy0, ours0 = self.start
        wall = (t1 - t0) * (os.cpu_count() or 1)
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall if wall > 0 else 0.0


# --------------------------------------------------------------------------
# Configs.


def nginx_common(tmp: Path, name: str) -> str:
    temp = tmp / f"{name}-temp"
    temp.mkdir(mode=0o777, exist_ok=True)
    temp.chmod(0o777)  # nginx workers run as nobody when started by root
    paths = "".join(f"    {k}_temp_path {temp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"worker_processes 1;\ndaemon off;\npid {tmp}/{name}.pid;\nerror_log stderr error;\n"
        "events { worker_connections 4096; }\n"
        f"http {{\n    access_log off;\n{paths}"
    )


def origin_conf(tmp: Path, port: int) -> str:
    return nginx_common(tmp, "origin") + f"""    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /13 {{ default_type text/plain; return 200 "{BODY_13.strip()}\\n"; }}
        location /files/ {{ default_type application/octet-stream; }}
    }}
}}
"""


def nginx_proxy_conf(tmp: Path, port: int, origin: int, sink: int) -> str:
    up = "proxy_http_version 1.1; proxy_set_header Connection \"\";"
    return nginx_common(tmp, "proxy") + f"""    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
    upstream sink {{ server 127.0.0.1:{sink}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        # As pyngx does, stream through memory buffers only: with the default
        # proxy_max_temp_file_size 1024m nginx spools large answers to disk.
        proxy_max_temp_file_size 0;
        location / {{ proxy_pass http://origin; {up} }}
        # Stream uploads as pyngx does (nginx's default spools the whole body first).
        location /upload {{ proxy_pass http://sink; {up} proxy_request_buffering off; }}
    }}
}}
"""


def pyngx_conf(port: int, origin: int, sink: int, workers: int, body_size: bool) -> str:
    size = "    client_max_body_size 0;\n" if body_size else ""
    return f"""worker_processes {workers};
error_log stderr error;
http {{
    access_log off;
{size}    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{origin}; }}
        location /upload {{ proxy_pass http://127.0.0.1:{sink}; }}
    }}
}}
"""


# --------------------------------------------------------------------------
# The bed: origin, sink and the proxies under test.


@dataclass
class Target:
    name: str
    port: int  # where GET /13 and /files/ go
    upload_port: int  # where PUT /upload goes
    pid: int | None  # the proxy process (None for direct)


@dataclass
class Bed:
    procs: Procs
    tmp: Path
    targets: dict[str, Target] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    origin: int = 0
    sink: int = 0
    pyngx_root: Path = ROOT

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start_origin(self, big: int) -> None:
        www = self.tmp / "www" / "files"
        www.mkdir(parents=True)
        for d in (self.tmp, self.tmp / "www", www):
            d.chmod(0o755)
        (www / "1m").write_bytes(os.urandom(MIB))
        with open(www / "big", "wb") as out:
            out.truncate(big)  # sparse: served from the page cache, no disk
        for path in www.iterdir():
            path.chmod(0o644)
        self.origin, self.sink = free_port(), free_port()
        conf = self.tmp / "origin.conf"
        conf.write_text(origin_conf(self.tmp, self.origin))
        p = self.procs.start("origin", pinned(LOAD_CPU, [nginx(), "-p", str(self.tmp), "-e", "stderr", "-c", str(conf)]),
                             self.log("origin"))
        wait_http(self.origin, p, self.log("origin"))
        p = self.procs.start("sink", pinned(LOAD_CPU, [sys.executable, str(BENCH / "peers" / "sink.py"), str(self.sink)]),
                             self.log("sink"))
        wait_http(self.sink, p, self.log("sink"), path="/")
        self.targets["direct"] = Target("direct", self.origin, self.sink, None)

    def start_proxy(self, name: str, workers: int = 1, cpu: str = PROXY_CPU) -> Target:
        port = free_port()
        log = self.log(name)
        origin, sink = f"http://127.0.0.1:{self.origin}", f"http://127.0.0.1:{self.sink}"
        cwd = None
        if name == "nginx":
            conf = self.tmp / "proxy.conf"
            conf.write_text(nginx_proxy_conf(self.tmp, port, self.origin, self.sink))
            argv = [nginx(), "-p", str(self.tmp), "-e", "stderr", "-c", str(conf)]
        elif name in PEERS:
            argv = [sys.executable, str(BENCH / "peers" / f"{name}_proxy.py"), str(port), origin, "--sink", sink]
        else:  # pyngx
            conf = self.tmp / f"{name}.conf"
            conf.write_text(pyngx_conf(port, self.origin, self.sink, workers, body_size=True))
            if not pyngx_accepts(conf, self.pyngx_root):
                conf.write_text(pyngx_conf(port, self.origin, self.sink, workers, body_size=False))
            argv = [sys.executable, "-m", "pyngx", "-c", str(conf)]
            cwd = self.pyngx_root  # python -m pyngx imports the pyngx/ found there first
        p = self.procs.start(name, pinned(cpu, argv), log, cwd=cwd)
        wait_http(port, p, log)
        t = Target(name, port, port, p.pid)
        self.targets[name] = t
        return t


def nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def pyngx_accepts(conf: Path, root: Path) -> bool:
    """Whether ``pyngx -t`` accepts the config (client_max_body_size may not exist yet)."""
    r = subprocess.run([sys.executable, "-m", "pyngx", "-t", "-q", "-c", str(conf)], cwd=root,
                       capture_output=True, timeout=60)
    return r.returncode == 0


# --------------------------------------------------------------------------
# Load: wrk and curl, always on LOAD_CPU.

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m[1]) * _UNITS[m[2]]


@dataclass
class WrkResult:
    rps: float
    p50: float  # ms
    p99: float  # ms
    requests: int
    errors: str


def wrk(procs: Procs, url: str, conns: int, duration: float) -> WrkResult:
    out = procs.run(pinned(LOAD_CPU, ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency", url]),
                    timeout=duration + 30)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    errors = []
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors.append(f"{m[1]} non-2xx")
    m = re.search(r"Socket errors: (.*)", out)
    if m:
        errors.append(f"socket errors: {m[1]}")
    count = re.search(r"(\d+) requests in", out)
    return WrkResult(float(rps[1]), _ms(p50[1]), _ms(p99[1]), int(count[1]) if count else 0, "; ".join(errors))


def loaded(procs: Procs, target: Target, path: str, conns: int, duration: float) -> tuple[WrkResult, float | None]:
    """wrk against the target, and the proxy's CPU µs per request during it.

    CPU per request barely moves when other processes compete for the
    cores, unlike req/s: it is the steadiest figure on a busy machine.
    """
    c0 = cpu_seconds(target.pid)
    r = wrk(procs, f"http://127.0.0.1:{target.port}{path}", conns, duration)
    c1 = cpu_seconds(target.pid)
    return r, (1e6 * (c1 - c0) / r.requests if target.pid is not None and r.requests else None)


def curl_transfer(procs: Procs, target: Target, size: int, upload: bool) -> float:
    """Move ``size`` bytes through the target with curl; returns seconds."""
    if upload:
        url = f"http://127.0.0.1:{target.upload_port}/upload"
        # "Expect:" off: curl would otherwise wait up to 1 s for a
        # 100 Continue that not every server sends; that is not throughput.
        sh = f"head -c {size} /dev/zero | curl -sS -H 'Expect:' -T - -w ' %{{http_code}} %{{time_total}}' {url}"
    else:
        url = f"http://127.0.0.1:{target.port}/files/big"
        sh = f"curl -sS -o /dev/null -w '%{{size_download}} %{{http_code}} %{{time_total}}' {url}"
    out = procs.run(pinned(LOAD_CPU, ["sh", "-c", sh]), timeout=300).split()
    moved, code, seconds = int(out[0]), out[1], float(out[2])
    if code != "200" or moved != size:
        raise RuntimeError(f"{target.name}: {'upload' if upload else 'download'} moved {moved} of {size} bytes, "
                           f"status {code}")
    return seconds


# --------------------------------------------------------------------------
# Metrics and the table.


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    fmt: Callable[[float], str]


def _int(v: float) -> str:
    return f"{v:,.0f}"


def _ms_fmt(v: float) -> str:
    return f"{v:.2f} ms" if v >= 1 else f"{v * 1000:.0f} µs"


METRICS = (
    Metric("a_rps", "13 B, 32 conns: req/s", "req/s", True, _int),
    Metric("a_p50", "13 B, 32 conns: p50", "ms", False, _ms_fmt),
    Metric("a_p99", "13 B, 32 conns: p99", "ms", False, _ms_fmt),
    Metric("a_cpu", "13 B, 32 conns: proxy CPU per request", "µs", False, lambda v: f"{v:.0f} µs"),
    Metric("b_p50", "13 B, 1 conn: p50", "ms", False, _ms_fmt),
    Metric("b_rps", "13 B, 1 conn: req/s", "req/s", True, _int),
    Metric("c_rps", "1 MiB, 8 conns: req/s", "req/s", True, _int),
    Metric("c_cpu", "1 MiB, 8 conns: proxy CPU per request", "µs", False, lambda v: f"{v:.0f} µs"),
    Metric("up_s", "{big} upload: seconds", "s", False, lambda v: f"{v:.2f} s"),
    Metric("up_rss", "{big} upload: peak RSS", "MiB", False, lambda v: f"{v:.0f} MiB"),
    Metric("up_cpu", "{big} upload: proxy CPU seconds", "s", False, lambda v: f"{v:.2f} s"),
    Metric("down_s", "{big} download: seconds", "s", False, lambda v: f"{v:.2f} s"),
    Metric("down_rss", "{big} download: peak RSS", "MiB", False, lambda v: f"{v:.0f} MiB"),
    Metric("down_cpu", "{big} download: proxy CPU seconds", "s", False, lambda v: f"{v:.2f} s"),
)


def size_name(n: int) -> str:
    return f"{n // GIB} GiB" if n % GIB == 0 else f"{n // MIB} MiB"


@dataclass
class Results:
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    foreign: float = 0.0  # share of the cores used by other processes while measuring

    def add(self, metric: str, target: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault((metric, target), []).append(value)

    def median(self, metric: str, target: str) -> float | None:
        vals = self.values.get((metric, target))
        return statistics.median(vals) if vals else None


def ratio(v: float, ref: float | None) -> str:
    return f"{v / ref:.2f}×" if ref else "–"


def best_peer(res: Results, m: Metric) -> tuple[str, float] | None:
    found = [(t, v) for t in PEERS if (v := res.median(m.key, t)) is not None]
    if not found:
        return None
    return (max if m.higher_is_better else min)(found, key=lambda tv: tv[1])


def table(res: Results, targets: list[str], big: int, ws_row: str) -> str:
    head = ["case"] + [TITLES[t] for t in targets] + ["fastest Py peer (P)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        ngx = res.median(m.key, "nginx")
        best = best_peer(res, m)
        cells = [m.label.format(big=size_name(big))]
        for t in targets:
            v = res.median(m.key, t)
            if v is None:
                cells.append("n/a")
            else:
                cells.append(f"{m.fmt(v)} ({ratio(v, ngx)} N, {ratio(v, best[1] if best else None)} P)")
        cells.append(best[0] if best else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| WebSocket echo msg/s, 1 and 100 conns | " + " | ".join([ws_row] + [""] * (len(targets) - 1))
                 + " | |")
    return "\n".join(lines)


def raw_table(res: Results, targets: list[str], big: int) -> str:
    lines = ["| case | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for m in METRICS:
        cells = []
        for t in targets:
            vals = res.values.get((m.key, t))
            cells.append(", ".join(m.fmt(v) for v in vals) if vals else "n/a")
        lines.append(f"| {m.label.format(big=size_name(big))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pyngx_version(root: Path, commit: str | None = None) -> str:
    """Which pyngx ran: the commit and whether pyngx/ had local changes."""
    if commit:
        return f"pyngx at {commit}"
    if root.resolve() != ROOT:
        return f"pyngx from {root}"
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "pyngx"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "pyngx from this checkout"
    return f"pyngx at {head or 'unknown commit'}" + (" with uncommitted changes in pyngx/" if dirty else "")


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"- date: {date}\n- uname -m: {platform.machine()}\n- CPU: {cpu} ({os.cpu_count()} cores)\n"
            f"- Python: {platform.python_version()} ({sys.executable})\n- {nginx_version()}; {wrk_version()}")


def nginx_version() -> str:
    r = subprocess.run([nginx(), "-v"], capture_output=True, text=True)
    return (r.stderr or r.stdout).strip().replace("nginx version: ", "")


def wrk_version() -> str:
    r = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return " ".join((r.stdout or r.stderr).split()[:2])


# --------------------------------------------------------------------------
# The run.


def measure(bed: Bed, res: Results, args: argparse.Namespace, names: list[str]) -> None:
    """One repetition per loop: each case runs every target back to back,
    in an order rotated per repetition, so that drift hits all alike."""
    d = args.duration
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        print(f"repetition {rep + 1}/{args.reps} (order: {', '.join(order)})", flush=True)
        for t in order:
            r, cpu = loaded(bed.procs, bed.targets[t], "/13", 32, d)
            res.add("a_rps", t, r.rps)
            res.add("a_p50", t, r.p50)
            res.add("a_p99", t, r.p99)
            res.add("a_cpu", t, cpu)
            _errors(res, t, "13 B, 32 conns", r)
            print(f"  {t:8} 13 B x32: {r.rps:9,.0f} req/s  p50 {_ms_fmt(r.p50)}  p99 {_ms_fmt(r.p99)}"
                  + (f"  {cpu:.0f} µs CPU/req" if cpu is not None else ""), flush=True)
        for t in order:
            r, _ = loaded(bed.procs, bed.targets[t], "/13", 1, d)
            res.add("b_p50", t, r.p50)
            res.add("b_rps", t, r.rps)
            _errors(res, t, "13 B, 1 conn", r)
            print(f"  {t:8} 13 B x1:  {r.rps:9,.0f} req/s  p50 {_ms_fmt(r.p50)}", flush=True)
        for t in order:
            r, cpu = loaded(bed.procs, bed.targets[t], "/files/1m", 8, d)
            res.add("c_rps", t, r.rps)
            res.add("c_cpu", t, cpu)
            _errors(res, t, "1 MiB, 8 conns", r)
            print(f"  {t:8} 1 MiB x8: {r.rps:9,.0f} req/s" + (f"  {cpu:.0f} µs CPU/req" if cpu is not None else ""),
                  flush=True)
        for upload in (True, False):
            kind = "up" if upload else "down"
            for t in order:
                target = bed.targets[t]
                c0 = cpu_seconds(target.pid)
                with RssPeak(target.pid) as peak:
                    secs = curl_transfer(bed.procs, target, args.big, upload)
                res.add(f"{kind}_s", t, secs)
                line = f"  {t:8} {size_name(args.big)} {kind}load: {secs:6.2f} s"
                if target.pid is not None:
                    cpu = cpu_seconds(target.pid) - c0
                    res.add(f"{kind}_rss", t, peak.peak / 1024)
                    res.add(f"{kind}_cpu", t, cpu)
                    line += f"  peak RSS {peak.peak / 1024:.0f} MiB  CPU {cpu:.2f} s"
                print(line, flush=True)


def _errors(res: Results, t: str, case: str, r: WrkResult) -> None:
    if r.errors:
        res.errors.append(f"{t}, {case}: {r.errors}")


def warm(bed: Bed, names: list[str]) -> None:
    """Fill every pool and cache before the first measured second."""
    for t in names:
        wrk(bed.procs, f"http://127.0.0.1:{bed.targets[t].port}/13", 32, 1)
        wrk(bed.procs, f"http://127.0.0.1:{bed.targets[t].port}/files/1m", 8, 1)


def workers_line(bed: Bed, res: Results, args: argparse.Namespace) -> str:
    """pyngx with worker_processes 2: measured only if it starts more processes."""
    try:
        t = bed.start_proxy("pyngx-w2", workers=2, cpu="0,1")
    except RuntimeError as exc:
        return f"n/a (did not start: {str(exc).splitlines()[0]})"
    assert t.pid is not None
    time.sleep(1.0)  # let a master fork its workers before counting
    procs = len(tree(t.pid))
    if procs < 2:
        return f"n/a (`worker_processes 2` runs {procs} process; pyngx has no workers yet)"
    runs = [loaded(bed.procs, t, "/13", 32, args.duration) for _ in range(args.reps)]
    rps = statistics.median(r.rps for r, _ in runs)
    cpu = statistics.median(c for _, c in runs if c is not None)
    return (f"{rps:,.0f} req/s for 13 B at 32 conns, {cpu:.0f} µs CPU per request over all its processes "
            f"({procs} processes: master and workers, on cores 0-1, sharing core 1 with wrk and the origin: "
            "the req/s is not comparable to the pinned figures above, the CPU per request is)")


def ws_row() -> str:
    return "see `python bench/ws_bench.py` (`--ws`)" if (BENCH / "ws_bench.py").exists() else "n/a"


def ws_bench(procs: Procs) -> str:
    """Run bench/ws_bench.py (another file, its own setup) and return its output."""
    try:
        out = procs.run([sys.executable, str(BENCH / "ws_bench.py")], timeout=600)
    except RuntimeError as exc:
        out = f"ws_bench.py failed: {exc}"
    return "## WebSocket (bench/ws_bench.py, unpinned)\n\n```\n" + out.strip() + "\n```"


def bench(args: argparse.Namespace) -> int:
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="pyngx-bench-"))
    try:
        idle = CpuWatch(procs)
        time.sleep(1.0)
        if (busy := idle.foreign()) > 0.05:
            print(f"warning: other processes use {100 * busy:.0f}% of the cores; the figures will be skewed",
                  file=sys.stderr, flush=True)
        bed = Bed(procs, tmp, pyngx_root=args.pyngx)
        bed.start_origin(args.big)
        names = [t for t in TARGETS if t in args.only]
        for t in names:
            if t != "direct":
                bed.start_proxy(t)
        print(f"origin 127.0.0.1:{bed.origin}, sink 127.0.0.1:{bed.sink}; "
              + ", ".join(f"{t} :{bed.targets[t].port}" for t in names), flush=True)
        warm(bed, names)
        res = Results()
        t0 = time.monotonic()
        cpu = CpuWatch(procs)
        measure(bed, res, args, names)
        res.foreign = cpu.foreign()
        w2 = workers_line(bed, res, args) if "pyngx" in names else "not run"
        elapsed = time.monotonic() - t0
        report = render(res, names, args, w2, elapsed)
        if args.ws and (BENCH / "ws_bench.py").exists():
            print("running bench/ws_bench.py", flush=True)
            report += "\n\n" + ws_bench(procs)
        print()
        print(report)
        if not args.no_write:
            (BENCH / "results.md").write_text(report + "\n")
            print(f"\nwritten to {BENCH / 'results.md'}")
        return 0
    finally:
        _hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def render(res: Results, names: list[str], args: argparse.Namespace, w2: str, elapsed: float) -> str:
    big = size_name(args.big)
    parts = [
        "# pyngx benchmark",
        "",
        machine(),
        f"- {pyngx_version(args.pyngx, args.commit_label)}",
        f"- run: `python bench/run.py {' '.join(sys.argv[1:])}`".rstrip() + f", {args.reps} repetitions, "
        f"wrk {args.duration:g} s per case, {big} transfers; measuring took {elapsed / 60:.1f} min",
        "",
        f"Medians of {args.reps} interleaved repetitions. The proxy under test runs on core 0; the origin "
        "(nginx 1 worker: `return 200` with 13 bytes, static files), the upload sink, wrk (1 thread) and curl "
        "on core 1. Each figure is followed by its ratio to nginx (N) and to the fastest Python peer (P, "
        "the best of the aiohttp.web and ASGI peers for that row). Latency, seconds and RSS: lower is better.",
        "",
        table(res, names, args.big, ws_row()),
        "",
        f"pyngx `worker_processes 2`: {w2}",
        "",
        f"Other processes on this machine used {100 * res.foreign:.0f}% of its {os.cpu_count()} cores while "
        "measuring" + (" — the figures are skewed; rerun on an idle machine." if res.foreign > 0.05 else "."),
    ]
    if res.errors:
        parts += ["", "wrk reported errors (a response not 2xx/3xx, or a socket error):", ""]
        parts += [f"- {e}" for e in res.errors]
    parts += ["", "<details><summary>Every repetition</summary>", "", raw_table(res, names, args.big), "",
              "</details>"]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# --profile: pyngx under py-spy while wrk loads it.


def profile(args: argparse.Namespace) -> int:
    """pyngx, then the raw ASGI peer (same stack, no pyngx feature), each
    under py-spy while wrk loads it with 13 B at 32 conns."""
    if shutil.which("py-spy") is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 1
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="pyngx-prof-"))
    OUT.mkdir(exist_ok=True)
    try:
        bed = Bed(procs, tmp, pyngx_root=args.pyngx)
        bed.start_origin(GIB)
        profiles: dict[str, Profile] = {}
        transfers: list[Profile] = []
        for name in ("pyngx", "asgi"):
            t = bed.start_proxy(name)
            assert t.pid is not None
            url = f"http://127.0.0.1:{t.port}/13"
            wrk(procs, url, 32, 2)  # warm up
            before = thread_cpu(t.pid)
            runs = [wrk(procs, url, 32, args.duration) for _ in range(3)]
            after = thread_cpu(t.pid)
            requests = sum(r.requests for r in runs)
            rps = statistics.median(r.rps for r in runs)
            # µs of CPU per request, per thread: py-spy's samples say how the
            # main thread's share splits; other threads are named apart.
            threads = {k: 1e6 * (after[k] - before.get(k, 0.0)) / requests for k in after}
            cpu = threads.pop("main", 0.0)
            print(f"{name}: {rps:,.0f} req/s, {cpu:.0f} µs CPU per request in the main thread"
                  + "".join(f", {v:.1f} µs in thread {k}" for k, v in threads.items()) + " (without the profiler)",
                  flush=True)
            for fmt, suffix in (("raw", "collapsed.txt"), ("flamegraph", "flame.svg"), ("speedscope", "speedscope.json")):
                out = OUT / f"{name}.{suffix}"
                spy = procs.start("py-spy", pinned(LOAD_CPU, [
                    "py-spy", "record", "--subprocesses", "--pid", str(t.pid), "--rate", str(args.rate), "--duration",
                    f"{args.duration + 1:g}", "--format", fmt, "--output", str(out)]), tmp / "py-spy.log")
                time.sleep(0.5)  # py-spy attaches
                r = wrk(procs, url, 32, args.duration)
                spy.wait(timeout=args.duration + 30)
                if spy.returncode != 0:
                    raise RuntimeError(f"py-spy failed:\n{_tail(tmp / 'py-spy.log')}")
                print(f"  py-spy {fmt}: {r.rps:,.0f} req/s while sampled -> bench/out/{out.name}", flush=True)
            profiles[name] = read_profile(OUT / f"{name}.collapsed.txt", rps, cpu, threads)
            if name == "pyngx":
                transfers = [profile_transfer(procs, tmp, t, upload, args) for upload in (True, False)]
            p = next(q for n, q in procs.procs if n == name)
            procs.stop(p)
        summary = ("# pyngx profile\n\n" + machine() + f"\n- {pyngx_version(args.pyngx, args.commit_label)}\n- run: `bench/profile.sh "
                   f"{' '.join(sys.argv[2:])}`, py-spy {args.rate} Hz, wrk {args.duration:g} s\n\n"
                   + summarize(profiles["pyngx"], profiles["asgi"]) + "\n\n" + summarize_transfers(*transfers))
        (OUT / "summary.md").write_text(summary + "\n")
        print()
        print(summary)
        print(f"\nwritten to {OUT / 'summary.md'}")
        return 0
    finally:
        _hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def profile_transfer(procs: Procs, tmp: Path, t: Target, upload: bool, args: argparse.Namespace) -> Profile:
    """1 GiB uploads or downloads through ``t`` under py-spy; CPU per GiB from an unsampled one."""
    kind = "upload" if upload else "download"
    c0 = cpu_seconds(t.pid)
    curl_transfer(procs, t, GIB, upload)
    cpu = 1e6 * (cpu_seconds(t.pid) - c0)  # µs per GiB
    out = OUT / f"{t.name}-{kind}.collapsed.txt"
    spy = procs.start("py-spy", pinned(LOAD_CPU, [
        "py-spy", "record", "--subprocesses", "--pid", str(t.pid), "--rate", str(args.rate), "--duration",
        f"{args.duration:g}", "--format", "raw", "--output", str(out)]), tmp / "py-spy.log")
    time.sleep(0.5)  # py-spy attaches
    while spy.poll() is None:
        curl_transfer(procs, t, GIB, upload)
    print(f"  py-spy {kind}: {cpu / 1e6:.2f} s CPU per GiB without the profiler -> bench/out/{out.name}", flush=True)
    return read_profile(out, 0.0, cpu, {})


#: The layer a sampled stack belongs to: the innermost frame from one of these
#: (frames are "Qualname (path:line)", path relative to its sys.path entry).
LAYERS = (
    ("app code (pyngx; the peer's handler)", ("pyngx/", "asgi_proxy.py")),
    ("Hypercorn server + h11", ("hypercorn/", "h11/")),
    ("aiohttp client (+ yarl, multidict)", ("aiohttp/", "yarl/", "multidict/", "propcache/", "aiohappyeyeballs/")),
    ("logging (structlog, logging)", ("structlog/", "logging/")),
)
EVENT_LOOP = "event loop (uvloop's C loop, asyncio scheduling)"
#: Frames that run the loop: what is above the last of them is a callback or a task step.
_LOOP_ENTRY = ("asyncio/runners.py", "asyncio/base_events.py")

#: pyngx functions whose inclusive share is worth naming (qualnames).
INCLUSIVE = (
    "App.serve", "App.request", "Request.__init__", "normalize_uri", "RouteTable.group", "RouteTable.location",
    "proxy_http", "ProxyPlan.upstream_uri", "RequestHeaderPlan.build", "response_headers", "server_header",
    "_Disconnect.__init__", "_Disconnect.start", "_Disconnect._watch", "_Disconnect.stop", "AccessLogger.log",
)


def _path(frame: str) -> str:
    m = re.search(r"\(([^()]*):\d+\)$", frame)
    return m[1] if m else ""


def layer(frames: list[str]) -> str:
    """The layer that owns a sample: stdlib frames (asyncio streams, typing,
    ...) count for the library that called them; nothing above the loop is
    the loop itself."""
    entry = max((i for i, f in enumerate(frames) if _path(f).startswith(_LOOP_ENTRY)), default=-1)
    for f in reversed(frames[entry + 1:]):
        path = _path(f)
        for name, prefixes in LAYERS:
            if path.startswith(prefixes):
                return name
    return EVENT_LOOP


@dataclass
class Profile:
    rps: float  # without the profiler
    cpu: float  # µs of CPU per request in the main thread, without the profiler
    threads: dict[str, float] = field(default_factory=dict)  # other threads: name -> µs per request
    thread_samples: int = 0  # samples in other threads, left out
    total: int = 0
    layers: dict[str, int] = field(default_factory=dict)
    leaves: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)

    def us(self, count: int) -> float:
        """Samples -> µs of CPU per request."""
        return self.cpu * count / self.total if self.total else 0.0


def read_profile(collapsed: Path, rps: float, cpu: float, threads: dict[str, float]) -> Profile:
    """Read py-spy's collapsed stacks ("frame;frame;... count") of the main thread.

    Other threads' samples are counted apart: py-spy cannot tell that a
    thread blocked in Rust or C (watchfiles' watcher) is idle, so their
    samples say nothing; /proc gives their real CPU time (``threads``).
    """
    prof = Profile(rps, cpu, threads=threads)
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        if any(_path(f) == "threading.py" for f in frames):
            prof.thread_samples += count
            continue
        prof.total += count
        name = layer(frames)
        prof.layers[name] = prof.layers.get(name, 0) + count
        prof.leaves[frames[-1]] = prof.leaves.get(frames[-1], 0) + count
        seen = {f.split(" (", 1)[0] for f in frames if _path(f).startswith("pyngx/")}
        for key in INCLUSIVE:
            if key in seen:
                prof.inclusive[key] = prof.inclusive.get(key, 0) + count
    return prof


def summarize_transfers(up: Profile, down: Profile) -> str:
    """Where pyngx's time goes while it streams 1 GiB each way."""
    if not up.total or not down.total:
        return "no samples"
    lines = [
        "### 1 GiB through pyngx (curl: upload to the sink, chunked; download of a static file)",
        "",
        f"CPU per GiB without the profiler: upload {up.cpu / 1e6:.2f} s, download {down.cpu / 1e6:.2f} s.",
        "",
        "| layer | upload share | upload s/GiB | download share | download s/GiB |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(set(up.layers) | set(down.layers), key=lambda k: -up.layers.get(k, 0)):
        u, d = up.layers.get(name, 0), down.layers.get(name, 0)
        lines.append(f"| {name} | {100 * u / up.total:.1f}% | {up.us(u) / 1e6:.2f} | {100 * d / down.total:.1f}% | "
                     f"{down.us(d) / 1e6:.2f} |")
    for title, prof in (("upload", up), ("download", down)):
        lines += ["", f"Top 12 frames by self time, {title}:", "", "| frame | share |", "|---|---|"]
        for frame, cnt in sorted(prof.leaves.items(), key=lambda kv: -kv[1])[:12]:
            lines.append(f"| `{frame}` | {100 * cnt / prof.total:.1f}% |")
    return "\n".join(lines)


def summarize(ng: Profile, peer: Profile) -> str:
    """Where pyngx's time goes, next to the raw ASGI peer on the same stack."""
    if not ng.total or not peer.total:
        return "no samples"
    lines = [
        "## Where the time goes (py-spy; 1 process on core 0; 13 B at 32 conns)",
        "",
        f"pyngx: {ng.total} samples of the main thread; without the profiler {ng.rps:,.0f} req/s and "
        f"{ng.cpu:.0f} µs of main-thread CPU per request (from /proc). Raw ASGI peer (Hypercorn + aiohttp, no "
        f"pyngx feature): {peer.total} samples, {peer.rps:,.0f} req/s, {peer.cpu:.0f} µs of CPU per request.",
        "",
        "pyngx's other threads, by /proc: "
        + (", ".join(f"{k} {v:.1f} µs/request" for k, v in ng.threads.items()) or "none")
        + f"; their {ng.thread_samples} py-spy samples are left out (py-spy takes a thread blocked in Rust or C "
        "code, such as watchfiles' watcher, for a busy one).",
        "",
        "A sample belongs to the innermost frame of the app, Hypercorn/h11 or aiohttp on its stack: stdlib and C "
        "code count for the library that called them (a socket write by Hypercorn is Hypercorn's, a task that "
        "pyngx spawns is pyngx's while it runs pyngx code); a sample with none of them above the loop is the "
        "event loop's. µs/request = share × CPU time per request.",
        "",
        "| layer | pyngx share | pyngx µs/req | ASGI peer µs/req | pyngx − peer |",
        "|---|---|---|---|---|",
    ]
    names = sorted(set(ng.layers) | set(peer.layers), key=lambda k: -ng.layers.get(k, 0))
    for name in names:
        a, b = ng.us(ng.layers.get(name, 0)), peer.us(peer.layers.get(name, 0))
        lines.append(f"| {name} | {100 * ng.layers.get(name, 0) / ng.total:.1f}% | {a:.0f} | {b:.0f} | "
                     f"{a - b:+.0f} |")
    lines.append(f"| total | 100% | {ng.cpu:.0f} | {peer.cpu:.0f} | {ng.cpu - peer.cpu:+.0f} |")
    lines += ["", "Inclusive time of pyngx functions (on the CPU only: time awaiting is not counted):", "",
              "| function | share | ≈ µs/request |", "|---|---|---|"]
    for key in INCLUSIVE:
        if key in ng.inclusive:
            lines.append(f"| `{key}` | {100 * ng.inclusive[key] / ng.total:.1f}% | {ng.us(ng.inclusive[key]):.1f} |")
    lines += ["", "pyngx's top 30 frames by self time:", "", "| frame | share |", "|---|---|"]
    for name, cnt in sorted(ng.leaves.items(), key=lambda kv: -kv[1])[:30]:
        lines.append(f"| `{name}` | {100 * cnt / ng.total:.1f}% |")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3 repetitions, 2 s per wrk case, 256 MiB transfers (under 3 minutes)")
    p.add_argument("--reps", type=int, default=None, help="repetitions, interleaved (default 5; --quick 3)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per wrk case (default 4; --quick 2; --profile 8)")
    p.add_argument("--big", type=int, default=None,
                   help="bytes in the upload/download case (default 1 GiB; --quick 256 MiB)")
    p.add_argument("--only", default=",".join(TARGETS), help=f"comma-separated targets (default {','.join(TARGETS)})")
    p.add_argument("--ws", action="store_true", help="also run bench/ws_bench.py and append its output")
    p.add_argument("--no-write", action="store_true", help="print the table only, leave bench/results.md alone")
    p.add_argument("--profile", action="store_true",
                   help="run pyngx under py-spy while wrk loads it; write bench/out/ (see bench/profile.sh)")
    p.add_argument("--pyngx", type=Path, default=ROOT,
                   help="directory holding the pyngx/ package to run (default: this checkout)")
    p.add_argument("--commit", metavar="REV",
                   help="run the pyngx/ of this git revision (git archive into a temp dir), e.g. HEAD")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (--profile)")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else (8.0 if args.profile else 4.0)
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if args.big is None:
        args.big = 256 * MIB if args.quick else GIB
    args.only = {t.strip() for t in args.only.split(",") if t.strip()}
    unknown = args.only - set(TARGETS)
    if unknown:
        p.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if args.reps < 1:
        p.error("--reps must be at least 1")
    for tool in ("wrk", "curl", "taskset"):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found on PATH (see bench/README.md)")
    if not Path(nginx()).exists():
        p.error("nginx not found (apt-get install nginx-light; see bench/README.md)")

    # Signals end the run like Ctrl-C: through the finally blocks.
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    src: Path | None = None
    try:
        args.commit_label = None
        if args.commit:
            src = Path(tempfile.mkdtemp(prefix="pyngx-bench-src-"))
            args.pyngx, args.commit_label = src, export_commit(args.commit, src)
        return profile(args) if args.profile else bench(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every process stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if src is not None:
            shutil.rmtree(src, ignore_errors=True)


def export_commit(rev: str, dest: Path) -> str:
    """Write ``rev``'s pyngx/ into ``dest`` (read-only git: archive); returns "REV (hash)"."""
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"unknown revision {rev!r}: {r.stderr.strip()}")
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", rev, "pyngx"], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout)
    if archive.stdout is not None:
        archive.stdout.close()
    if archive.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"git archive {rev} pyngx failed")
    return f"{rev} ({r.stdout.strip()})" if r.stdout.strip() != rev else rev


if __name__ == "__main__":
    sys.exit(main())
