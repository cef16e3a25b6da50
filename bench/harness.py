"""The bench's bed: processes, configs, load generators and /proc readings.

Owns: starting and stopping every process the bench runs (each in its own
process group, stopped by its id), the nginx and pyngx configs, the origin,
the upload sink and WebSocket echo and the proxies under test (``Bed``),
wrk, curl and WebSocket (ws_load.py) runs pinned to the load core, CPU,
thread and RSS readings from /proc, and the machine description printed at
the top of a report.

Must not: decide what is measured or render tables (run.py, profiling.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
PROXY_CPU = "0"  # the proxy under test
LOAD_CPU = "1"  # origin, sink (and WebSocket echo), wrk, curl, ws_load.py

BODY_13 = "hello world!\n"  # 13 bytes
MIB = 1 << 20
GIB = 1 << 30

TARGETS = ("direct", "nginx", "aiohttp", "asgi", "pyngx")
PEERS = ("aiohttp", "asgi")  # the "fastest Python peer" is the best of these, per figure


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


def hold_signals() -> None:
    """A second Ctrl-C must not cut the cleanup short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def interrupt_on_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP end the run as Ctrl-C does (KeyboardInterrupt),
    through the finally blocks that stop every process. SIGINT too: a shell
    starts background jobs with SIGINT ignored."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def guarded(what: str, body: Callable[[], int]) -> int:
    """Run ``body`` (the tool's work; it stops its processes in its own
    finally blocks) and turn Ctrl-C or a signal (see ``interrupt_on_signals``)
    into exit status 130 and a RuntimeError into 1, each with one line on
    stderr instead of a traceback."""
    try:
        return body()
    except KeyboardInterrupt:
        print("\ninterrupted; every process stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"{what} failed: {exc}", file=sys.stderr)
        return 1


def write_report(name: str, text: str) -> None:
    """Print a report and keep it as bench/out/NAME (git-ignored)."""
    OUT.mkdir(exist_ok=True)
    (OUT / name).write_text(text)
    print(text)


def check_run(p: argparse.ArgumentParser, cases: Iterable[str], known: Iterable[str], reps: int) -> None:
    """Exit through ``p.error`` on no or unknown cases, fewer than one
    repetition, or a tool the bench needs that is missing."""
    cases, known = set(cases), tuple(known)
    if not cases or cases - set(known):
        p.error(f"--cases: choose from {', '.join(known)}")
    if reps < 1:
        p.error("--reps must be at least 1")
    if missing := missing_tool():
        p.error(missing)


def missing_tool() -> str | None:
    """What the bench needs and does not find (wrk, curl, taskset, nginx), as
    an error message; None when everything is there."""
    for tool in ("wrk", "curl", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (see bench/README.md)"
    if not Path(nginx()).exists():
        return "nginx not found (apt-get install nginx-light; see bench/README.md)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, proc: subprocess.Popen[bytes], log: Path, path: str = "/13", timeout: float = 20.0) -> None:
    """Wait until ``GET path`` on 127.0.0.1:port answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving:\n{log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} did not answer 200 on {path} in {timeout:.0f}s:\n{log_tail(log)}")


def log_tail(log: Path, lines: int = 15) -> str:
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


def nginx_proxy_conf(tmp: Path, port: int, origin: int, sink: int, name: str) -> str:
    up = "proxy_http_version 1.1; proxy_set_header Connection \"\";"
    return nginx_common(tmp, name) + f"""    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
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
        # The WebSocket echo (in the sink's process): the upgrade must be asked for.
        location /ws {{ proxy_pass http://127.0.0.1:{sink}; {WS_UPGRADE} }}
    }}
}}
"""


# Both nginx and pyngx pass an Upgrade only when told to (nginx docs: WebSocket proxying).
WS_UPGRADE = 'proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";'


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
        location /ws {{ proxy_pass http://127.0.0.1:{sink}; {WS_UPGRADE} }}
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
    ws_port: int  # where the WebSocket echo, GET /ws, goes
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
    #: How each proxy was started (workers, cpu, kind, wrap, ready), for ``restart_proxy``.
    started: dict[str, tuple[int, str, str, tuple[str, ...], float]] = field(default_factory=dict)
    #: Per pyngx/ tree run, whether it accepts client_max_body_size (checked
    #: once, after compiling the tree: restarts start the same code).
    body_size: dict[Path, bool] = field(default_factory=dict)

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
        self.targets["direct"] = Target("direct", self.origin, self.sink, self.sink, None)

    def start_proxy(self, name: str, workers: int = 1, cpu: str = PROXY_CPU, kind: str = "",
                    wrap: tuple[str, ...] = (), ready: float = 20.0) -> Target:
        """Start the proxy ``kind`` (nginx, a peer's name, else pyngx; default: ``name``) as ``name``.

        ``wrap`` goes before its command line (e.g. valgrind's); ``ready``:
        seconds it has to answer its first request.
        """
        kind = kind or name
        port = free_port()
        log = self.log(name)
        origin, sink = f"http://127.0.0.1:{self.origin}", f"http://127.0.0.1:{self.sink}"
        cwd = None
        if kind == "nginx":
            conf = self.tmp / f"{name}.proxy.conf"
            conf.write_text(nginx_proxy_conf(self.tmp, port, self.origin, self.sink, f"{name}.proxy"))
            argv = [nginx(), "-p", str(self.tmp), "-e", "stderr", "-c", str(conf)]
        elif kind in PEERS:
            argv = [sys.executable, str(BENCH / "peers" / f"{kind}_proxy.py"), str(port), origin, "--sink", sink,
                    "--ws", sink]
        else:  # pyngx
            conf = self.tmp / f"{name}.conf"
            if self.pyngx_root not in self.body_size:
                compile_pyngx(self.pyngx_root)
                conf.write_text(pyngx_conf(port, self.origin, self.sink, workers, body_size=True))
                self.body_size[self.pyngx_root] = pyngx_accepts(conf, self.pyngx_root)
            conf.write_text(pyngx_conf(port, self.origin, self.sink, workers, body_size=self.body_size[self.pyngx_root]))
            argv = [sys.executable, "-m", "pyngx", "-c", str(conf)]
            cwd = self.pyngx_root  # python -m pyngx imports the pyngx/ found there first
        p = self.procs.start(name, pinned(cpu, [*wrap, *argv]), log, cwd=cwd)
        wait_http(port, p, log, timeout=ready)
        t = Target(name, port, port, port, p.pid)
        self.targets[name] = t
        self.started[name] = (workers, cpu, kind, wrap, ready)
        return t

    def restart_proxy(self, name: str) -> Target:
        """Stop the proxy started as ``name`` and start a new one the same way (on another port)."""
        pid = self.targets[name].pid
        for _, p in list(self.procs.procs):
            if p.pid == pid:
                self.procs.stop(p)
        return self.start_proxy(name, *self.started[name])


def nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def compile_pyngx(root: Path) -> None:
    """Byte-compile ``root/pyngx`` as ``pip install`` does, so start-up compiling does not count.

    Compiling from source at each start leaves about 0.7 MiB more resident
    memory behind than loading .pyc files, which an installed pyngx always
    has; the peers' packages are installed and have them too. Writes
    ``__pycache__/`` (git-ignored) even when PYTHONDONTWRITEBYTECODE is set.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "pyngx")], env=env, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=120)


def pyngx_accepts(conf: Path, root: Path) -> bool:
    """Whether ``pyngx -t`` accepts the config (client_max_body_size may not exist yet)."""
    r = subprocess.run([sys.executable, "-m", "pyngx", "-t", "-q", "-c", str(conf)], cwd=root,
                       capture_output=True, timeout=60)
    return r.returncode == 0


# --------------------------------------------------------------------------
# Load: wrk, curl and ws_load.py, always on LOAD_CPU.

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


@dataclass
class WsResult:
    rate: float  # echo round trips (messages) per second
    cpu: float | None  # the proxy's CPU µs per message


def ws_echo(procs: Procs, target: Target, conns: int, duration: float,
            edges: tuple[str, str] | None = None) -> WsResult:
    """WebSocket echo round trips through the target: ``ws_load.py`` on LOAD_CPU.

    The client checks every echo and reads the proxy's CPU time itself, at
    the edges of its timed window, so connecting and closing do not count;
    ``edges`` are shell commands it runs there (start, end).
    """
    url = f"ws://127.0.0.1:{target.ws_port}/ws"
    argv = [sys.executable, str(BENCH / "ws_load.py"), url, str(conns), f"{duration:g}"]
    if target.pid is not None:
        argv += ["--pid", str(target.pid)]
    if edges is not None:
        argv += ["--at-start", edges[0], "--at-end", edges[1]]
    out = json.loads(procs.run(pinned(LOAD_CPU, argv), timeout=duration + 60).strip().splitlines()[-1])
    if not out["messages"]:
        raise RuntimeError(f"{target.name}: no WebSocket message echoed in {duration:g} s at {conns} conns")
    cpu = 1e6 * out["cpu"] / out["messages"] if out["cpu"] is not None else None
    return WsResult(out["messages"] / out["seconds"], cpu)


# --------------------------------------------------------------------------
# The report's header: what ran, on what.


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

