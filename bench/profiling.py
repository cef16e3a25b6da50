"""``--profile``: pyngx and the raw ASGI peer under py-spy while wrk loads them.

Owns: the py-spy recordings written to bench/out/ (flamegraph SVG,
speedscope JSON, collapsed stacks), reading collapsed stacks into layers
(pyngx, Hypercorn/h11, aiohttp, event loop) and the summary in
bench/out/summary.md.

Must not: install py-spy or change pyngx.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (GIB, LOAD_CPU, OUT, Bed, Procs, Target, hold_signals, log_tail, curl_transfer, cpu_seconds,
                     machine, pinned, pyngx_version, thread_cpu, wrk, CpuWatch)


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
        cpu_watch = CpuWatch(procs)
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
                    raise RuntimeError(f"py-spy failed:\n{log_tail(tmp / 'py-spy.log')}")
                print(f"  py-spy {fmt}: {r.rps:,.0f} req/s while sampled -> bench/out/{out.name}", flush=True)
            profiles[name] = read_profile(OUT / f"{name}.collapsed.txt", rps, cpu, threads)
            if name == "pyngx":
                transfers = [profile_transfer(procs, tmp, t, upload, args) for upload in (True, False)]
            p = next(q for n, q in procs.procs if n == name)
            procs.stop(p)
        argv = [a for a in sys.argv[1:] if a != "--profile"]
        summary = "\n".join([
            "# pyngx profile",
            "",
            machine(),
            f"- {pyngx_version(args.pyngx, args.commit_label)}",
            f"- run: `{' '.join(['bench/profile.sh', *argv])}`, py-spy {args.rate} Hz, wrk {args.duration:g} s",
            f"- other processes used {100 * cpu_watch.foreign():.0f}% of the {os.cpu_count()} cores meanwhile "
            "(CPU per request is robust to it; req/s is not)",
            "",
            summarize(profiles["pyngx"], profiles["asgi"]),
            "",
            summarize_transfers(*transfers),
        ])
        (OUT / "summary.md").write_text(summary + "\n")
        print()
        print(summary)
        print(f"\nwritten to {OUT / 'summary.md'}")
        return 0
    finally:
        hold_signals()
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
    # pyngx's Connection (Hypercorn's TCPServer subclass, listener.py) is server work.
    ("Hypercorn server + h11", ("hypercorn/", "h11/", "pyngx/listener.py")),
    ("app code (pyngx; the peer's handler)", ("pyngx/", "asgi_proxy.py")),
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
    "Watch.__init__", "Watch.start", "Watch.stop", "AccessLogger.log", "ResponseFilter.__call__",
    "Connection.protocol_send", "Connection.flush", "_IdleTimer.restart",
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
