"""pyngx's benchmark: pyngx against nginx and minimal Python proxies, in one run.

Owns: the command line, the cases (what runs, in which order, over how
many interleaved repetitions) and the Markdown report of medians, printed
and written to bench/results.md. harness.py starts the origin (nginx,
``return 200`` with a 13-byte body, static files of 1 MiB and 1 GiB), the
upload sink (which also serves the WebSocket echo, /ws) and the proxies, and
runs wrk, curl and the WebSocket client (ws_load.py); ``--profile``
(profiling.py, bench/profile.sh) runs pyngx under py-spy instead.

Targets (the proxy under test on core 0; origin, sink, wrk, curl and the
WebSocket client on core 1):

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
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (BENCH, GIB, MIB, PEERS, ROOT, TARGETS, Bed, CpuWatch, Procs, RssPeak, Target, WrkResult, check_run,
                     cpu_seconds, curl_transfer, export_commit, guarded, hold_signals, interrupt_on_signals, loaded,
                     machine, pyngx_version, tree, wrk, ws_echo)
from profiling import profile

TITLES = {
    "direct": "direct (origin)",
    "nginx": "nginx proxy",
    "aiohttp": "aiohttp.web peer",
    "asgi": "ASGI peer (Hypercorn+aiohttp)",
    "pyngx": "pyngx",
}

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
    Metric("ws1_rate", "WebSocket echo, 1 conn: msg/s", "msg/s", True, _int),
    Metric("ws100_rate", "WebSocket echo, 100 conns: msg/s", "msg/s", True, _int),
    Metric("ws100_cpu", "WebSocket echo, 100 conns: proxy CPU per message", "µs", False, lambda v: f"{v:.0f} µs"),
    Metric("ws100_rss", "WebSocket echo, 100 conns: peak RSS", "MiB", False, lambda v: f"{v:.0f} MiB"),
)

# --cases: the groups of cases that can be run alone.
CASES = {
    "13b": "13 B at 32 conns and at 1 conn",
    "1m": "1 MiB at 8 conns",
    "big": "the upload and the download",
    "ws": "WebSocket echo at 1 and 100 conns",
}
#: The cases that talk HTTP (the rest: WebSocket).
HTTP_CASES = frozenset({"13b", "1m", "big"})


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


def measured(res: Results) -> list[Metric]:
    """The metrics with at least one value: those of the cases that ran."""
    return [m for m in METRICS if any(key == m.key for key, _ in res.values)]


def table(res: Results, targets: list[str], big: int) -> str:
    head = ["case"] + [TITLES[t] for t in targets] + ["fastest Py peer (P)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in measured(res):
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
    return "\n".join(lines)


def paired_table(res: Results, big: int, target: str = "pyngx", peer: str = "asgi") -> str | None:
    """``target`` against ``peer`` repetition by repetition, as Markdown.

    The two run within the same repetition, a minute apart at most, so a
    ratio per repetition cancels most of the machine's drift that moves
    the medians from run to run. Each ratio is oriented so that above
    1.00× means ``target`` did better (for latency, seconds, CPU and RSS,
    peer ÷ target). None when either target was not measured.
    """
    lines = []
    for m in measured(res):
        a, b = res.values.get((m.key, target)), res.values.get((m.key, peer))
        if not a or not b or len(a) != len(b):
            continue
        ratios = [(x / y if m.higher_is_better else y / x) for x, y in zip(a, b) if x and y]
        if ratios:
            ahead = sum(r > 1.0 for r in ratios)
            lines.append(f"| {m.label.format(big=size_name(big))} | {statistics.median(ratios):.2f}× | "
                         f"{min(ratios):.2f}–{max(ratios):.2f}× | {ahead} of {len(ratios)} |")
    if not lines:
        return None
    return "\n".join([f"| case | median | range | repetitions with {target} ahead |", "|---|---|---|---|", *lines])


def raw_table(res: Results, targets: list[str], big: int) -> str:
    lines = ["| case | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for m in measured(res):
        cells = []
        for t in targets:
            vals = res.values.get((m.key, t))
            cells.append(", ".join(m.fmt(v) for v in vals) if vals else "n/a")
        lines.append(f"| {m.label.format(big=size_name(big))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The run.


def measure(bed: Bed, res: Results, args: argparse.Namespace, names: list[str], ws: dict[str, Target]) -> None:
    """One repetition per loop: each case runs every target back to back,
    in an order rotated per repetition, so that drift hits all alike.

    ``ws`` holds the processes that run the WebSocket cases: other ones
    than the HTTP cases', see ``ws_targets``. Unless ``--same-processes``,
    every repetition after the first runs against newly started (and
    warmed) proxies, see ``fresh``."""
    d, cases = args.duration, args.cases
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        if rep and not args.same_processes:
            fresh(bed, names, cases, ws)
        print(f"repetition {rep + 1}/{args.reps} (order: {', '.join(order)})", flush=True)
        for t in order if "13b" in cases else ():
            r, cpu = loaded(bed.procs, bed.targets[t], "/13", 32, d)
            res.add("a_rps", t, r.rps)
            res.add("a_p50", t, r.p50)
            res.add("a_p99", t, r.p99)
            res.add("a_cpu", t, cpu)
            record_errors(res, t, "13 B, 32 conns", r)
            print(f"  {t:8} 13 B x32: {r.rps:9,.0f} req/s  p50 {_ms_fmt(r.p50)}  p99 {_ms_fmt(r.p99)}"
                  + (f"  {cpu:.0f} µs CPU/req" if cpu is not None else ""), flush=True)
        for t in order if "13b" in cases else ():
            r, _ = loaded(bed.procs, bed.targets[t], "/13", 1, d)
            res.add("b_p50", t, r.p50)
            res.add("b_rps", t, r.rps)
            record_errors(res, t, "13 B, 1 conn", r)
            print(f"  {t:8} 13 B x1:  {r.rps:9,.0f} req/s  p50 {_ms_fmt(r.p50)}", flush=True)
        for t in order if "1m" in cases else ():
            r, cpu = loaded(bed.procs, bed.targets[t], "/files/1m", 8, d)
            res.add("c_rps", t, r.rps)
            res.add("c_cpu", t, cpu)
            record_errors(res, t, "1 MiB, 8 conns", r)
            print(f"  {t:8} 1 MiB x8: {r.rps:9,.0f} req/s" + (f"  {cpu:.0f} µs CPU/req" if cpu is not None else ""),
                  flush=True)
        for upload in (True, False) if "big" in cases else ():
            for t in order:
                secs, cpu, peak = transfer(bed, res, t, args.big, upload)
                line = f"  {t:8} {size_name(args.big)} {'up' if upload else 'down'}load: {secs:6.2f} s"
                if cpu is not None:
                    line += f"  peak RSS {peak / 1024:.0f} MiB  CPU {cpu:.2f} s"
                print(line, flush=True)
        for conns in (1, 100) if "ws" in cases else ():
            for t in order:
                target = ws[t]
                # RSS is sampled at 100 conns only: the sampler's wake-ups would add to 1 conn's latency.
                with RssPeak(target.pid if conns == 100 else None) as peak:
                    w = ws_echo(bed.procs, target, conns, d)
                res.add(f"ws{conns}_rate", t, w.rate)
                if conns == 100:
                    res.add("ws100_cpu", t, w.cpu)
                    if target.pid is not None:
                        res.add("ws100_rss", t, peak.peak / 1024)
                print(f"  {t:8} WS x{conns:<3}: {w.rate:9,.0f} msg/s"
                      + (f"  {w.cpu:.0f} µs CPU/msg" if w.cpu is not None else ""), flush=True)


def transfer(bed: Bed, res: Results, t: str, size: int, upload: bool, times: int = 1) -> tuple[float, float | None, int]:
    """Move ``size`` bytes through target ``t`` ``times`` times, one after the other,
    and record up_s/down_s and (for a proxy process) its CPU seconds and the
    peak RSS sampled meanwhile. Returns (seconds, CPU seconds or None, peak KiB)."""
    kind = "up" if upload else "down"
    target = bed.targets[t]
    c0 = cpu_seconds(target.pid)
    with RssPeak(target.pid) as peak:
        secs = sum(curl_transfer(bed.procs, target, size, upload) for _ in range(times))
    res.add(f"{kind}_s", t, secs)
    if target.pid is None:
        return secs, None, 0
    cpu = cpu_seconds(target.pid) - c0
    res.add(f"{kind}_rss", t, peak.peak / 1024)
    res.add(f"{kind}_cpu", t, cpu)
    return secs, cpu, peak.peak


def record_errors(res: Results, t: str, case: str, r: WrkResult) -> None:
    """Note wrk's socket errors and non-2xx answers of ``t`` in ``case`` for the report."""
    if r.errors:
        res.errors.append(f"{t}, {case}: {r.errors}")


def warm(bed: Bed, names: list[str], cases: set[str], ws: dict[str, Target]) -> None:
    """Fill every pool and cache before the first measured second."""
    for t in names:
        wrk(bed.procs, f"http://127.0.0.1:{bed.targets[t].port}/13", 32, 1)
        wrk(bed.procs, f"http://127.0.0.1:{bed.targets[t].port}/files/1m", 8, 1)
        if "ws" in cases:
            ws_echo(bed.procs, ws[t], 100, 0.5)


def fresh(bed: Bed, names: list[str], cases: set[str], ws: dict[str, Target]) -> None:
    """Replace every proxy process (and its WebSocket twin) with a new one, then warm them.

    Two processes of the same proxy, started the same way, can differ by
    up to about 20 % in speed for their whole life (where their heap and code land
    in memory; measured: pyngx against itself at 100 WebSockets, 9,466
    against 11,264 msg/s over 6 interleaved repetitions). With one process
    per proxy for the whole run that luck would be in every repetition;
    with new ones per repetition it is one more thing the median evens out.
    """
    twins = ws_twins(cases)
    for t in names:
        if t == "direct":
            continue
        bed.restart_proxy(t)
        if t in ws:
            ws[t] = bed.restart_proxy(f"{t}-ws") if twins else bed.targets[t]
    warm(bed, names, cases, ws)


def ws_twins(cases: set[str]) -> bool:
    """Whether the WebSocket cases get processes of their own (see ``ws_targets``)."""
    return "ws" in cases and bool(cases & HTTP_CASES)


def ws_targets(bed: Bed, names: list[str], cases: set[str]) -> dict[str, Target]:
    """The processes that run the WebSocket cases: a second one of each proxy.

    100 WebSockets leave 3-4 MiB of Python's allocator arenas behind in
    every Python proxy (a few surviving objects pin each 1 MiB arena), so
    in a process that ran them every later transfer would peak that much
    higher, and the transfer rows would measure the WebSocket cases. With
    a process of its own for them, the upload and download rows say what
    streaming costs, and the WebSocket row what 100 open WebSockets cost.
    When only the WebSocket cases run, their processes are the first ones.
    """
    if "ws" not in cases:
        return {}
    if not ws_twins(cases):
        return {t: bed.targets[t] for t in names}
    return {t: bed.targets[t] if t == "direct" else bed.start_proxy(f"{t}-ws", kind=t) for t in names}


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


def ws_bench(procs: Procs) -> str:
    """Run bench/ws_bench.py (another file, its own setup) and return its output."""
    try:
        out = procs.run([sys.executable, str(BENCH / "ws_bench.py")], timeout=600)
    except RuntimeError as exc:
        out = f"ws_bench.py failed: {exc}"
    return ("## WebSocket streaming and memory (bench/ws_bench.py, pyngx only, unpinned)\n\n```\n" + out.strip()
            + "\n```")


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
        ws = ws_targets(bed, names, args.cases)
        warm(bed, names, args.cases, ws)
        res = Results()
        t0 = time.monotonic()
        cpu = CpuWatch(procs)
        measure(bed, res, args, names, ws)
        res.foreign = cpu.foreign()
        w2 = workers_line(bed, res, args) if "pyngx" in names and "13b" in args.cases else "not run"
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
        hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def render(res: Results, names: list[str], args: argparse.Namespace, w2: str, elapsed: float) -> str:
    big = size_name(args.big)
    parts = [
        "# pyngx benchmark",
        "",
        machine(),
        f"- {pyngx_version(args.pyngx, args.commit_label)}",
        f"- run: `{' '.join(['python bench/run.py', *sys.argv[1:]])}`, {args.reps} repetitions, "
        f"wrk and WebSocket {args.duration:g} s per case, {big} transfers"
        + (f", cases {','.join(sorted(args.cases))}" if args.cases != set(CASES) else "")
        + f"; measuring took {elapsed / 60:.1f} min",
        "",
        f"Medians of {args.reps} interleaved repetitions"
        + (", all against the same proxy processes" if args.same_processes else
           ", each against newly started proxy processes")
        + (" (the WebSocket cases in processes of their own)" if ws_twins(args.cases) else "")
        + ". The proxy under test runs on core 0; the origin "
        "(nginx 1 worker: `return 200` with 13 bytes, static files), the upload sink and WebSocket echo "
        "(aiohttp.web), wrk (1 thread), curl and the WebSocket client (aiohttp, 64-byte text round trips; "
        "1 round trip = 1 message) on core 1. Each figure is followed by its ratio to nginx (N) and to the fastest Python peer (P, "
        "the best of the aiohttp.web and ASGI peers for that row). Latency, seconds and RSS: lower is better.",
        "",
        table(res, names, args.big),
        "",
    ]
    paired = paired_table(res, args.big)
    if paired is not None:
        parts += [
            "pyngx against the ASGI peer (its own stack without it), repetition by repetition: in each "
            "repetition the two run within a minute of each other, so these ratios move less from run to run "
            "than the medians above. Above 1.00×: pyngx did better (for latency, seconds, CPU and RSS the "
            "ratio is the peer's figure over pyngx's).",
            "",
            paired,
            "",
        ]
    parts += [
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
# The command line.


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3 repetitions, 2 s per wrk or WebSocket case, 256 MiB transfers (about 3.5 minutes)")
    p.add_argument("--reps", type=int, default=None, help="repetitions, interleaved (default 5; --quick 3)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per wrk or WebSocket case (default 4; --quick 2; --profile 8)")
    p.add_argument("--big", type=int, default=None,
                   help="bytes in the upload/download case (default 1 GiB; --quick 256 MiB)")
    p.add_argument("--only", default=",".join(TARGETS), help=f"comma-separated targets (default {','.join(TARGETS)})")
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated cases (default: all), e.g. --cases ws\n"
                        + "\n".join(f"  {k}: {v}" for k, v in CASES.items()))
    p.add_argument("--ws", action="store_true",
                   help="also run bench/ws_bench.py (WebSocket streaming and RSS with 500 open, pyngx only)\n"
                        "and append its output; the echo figures are in the table anyway")
    p.add_argument("--no-write", action="store_true", help="print the table only, leave bench/results.md alone")
    p.add_argument("--same-processes", action="store_true",
                   help="run every repetition against the same proxy processes (default: new ones per repetition)")
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
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    check_run(p, args.cases, CASES, args.reps)
    interrupt_on_signals()
    return guarded("bench", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    """The bench or the profile, of ``--commit``'s pyngx/ when given."""
    src: Path | None = None
    try:
        args.commit_label = None
        if args.commit:
            src = Path(tempfile.mkdtemp(prefix="pyngx-bench-src-"))
            args.pyngx, args.commit_label = src, export_commit(args.commit, src)
        return profile(args) if args.profile else bench(args)
    finally:
        if src is not None:
            shutil.rmtree(src, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
