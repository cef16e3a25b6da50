"""A/B of two pyngx revisions beside the ASGI peer, new processes every repetition.

run.py times one pyngx. To tell whether a change helps, this starts the
ASGI peer, pyngx at ``--base REV`` and pyngx as the working tree is, and
in each repetition starts all three anew (a process's luck lasts its
whole life, see bench/README "New processes per repetition"), warms them
(13 B at 32 conns and 1 MiB at 8 conns, 1 s each), then runs the chosen
cases in run.py's order (13 B, 1 MiB, upload, download), every target
back to back, in an order rotated per repetition.

Reports medians per target and the change against the base paired per
repetition: the median of (pyngx ÷ base) and in how many repetitions the
change did better (lower CPU, seconds and RSS; higher req/s). Transfers
are two of ``--size`` bytes (default 256 MiB) each; RSS is the peak
sampled while they stream, as run.py samples it.

Usage:
    python bench/ab.py --base REV [--reps N] [--cases 13b,1m,upload,download] [--size BYTES]

Needs what bench/run.py needs. Writes its report to stdout and
bench/out/ab.md.

Must not: change pyngx or what bench/run.py measures.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import (OUT, ROOT, Bed, Procs, RssPeak, cpu_seconds, curl_transfer, export_commit, hold_signals, loaded,
                     machine, pyngx_version, wrk)

CASES = ("13b", "1m", "upload", "download")
#: metric -> (label, higher is better)
METRICS = {
    "13b_rps": ("13 B ×32: req/s", True), "13b_cpu": ("13 B ×32: CPU µs per request", False),
    "1m_rps": ("1 MiB ×8: req/s", True), "1m_cpu": ("1 MiB ×8: CPU µs per request", False),
    "upload_s": ("upload: seconds", False), "upload_cpu": ("upload: CPU seconds", False),
    "upload_rss": ("upload: peak RSS MiB", False),
    "download_s": ("download: seconds", False), "download_cpu": ("download: CPU seconds", False),
    "download_rss": ("download: peak RSS MiB", False),
}
TARGETS = ("asgi", "base", "pyngx")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the pyngx revision (git rev) to compare with, e.g. HEAD~1")
    p.add_argument("--reps", type=int, default=10, help="repetitions (default 10)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    p.add_argument("--size", type=int, default=256 * 2**20, help="bytes per transfer (default 256 MiB)")
    p.add_argument("--duration", type=float, default=3, help="seconds per wrk case (default 3)")
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="pyngx-ab-"))
    res: dict[tuple[str, str], list[float]] = {}
    try:
        bed = Bed(procs, tmp)
        bed.start_origin(args.size)
        base_dir = tmp / "base"
        base_dir.mkdir()
        base_label = export_commit(args.base, base_dir)
        roots = {"base": base_dir, "pyngx": ROOT}
        for rep in range(args.reps):
            for name in TARGETS:
                bed.pyngx_root = roots.get(name, ROOT)
                if name in bed.targets:
                    bed.restart_proxy(name)
                else:
                    bed.start_proxy(name, kind="asgi" if name == "asgi" else "pyngx")
                url = f"http://127.0.0.1:{bed.targets[name].port}"
                wrk(procs, url + "/13", 32, 1)
                wrk(procs, url + "/files/1m", 8, 1)
            order = TARGETS[rep % 3:] + TARGETS[:rep % 3]
            for name in order if "13b" in cases else ():
                r, cpu = loaded(procs, bed.targets[name], "/13", 32, args.duration)
                res.setdefault(("13b_rps", name), []).append(r.rps)
                res.setdefault(("13b_cpu", name), []).append(cpu or 0.0)
            for name in order if "1m" in cases else ():
                r, cpu = loaded(procs, bed.targets[name], "/files/1m", 8, args.duration)
                res.setdefault(("1m_rps", name), []).append(r.rps)
                res.setdefault(("1m_cpu", name), []).append(cpu or 0.0)
            for case in ("upload", "download"):
                for name in order if case in cases else ():
                    t = bed.targets[name]
                    assert t.pid is not None
                    c0 = cpu_seconds(t.pid)
                    with RssPeak(t.pid) as peak:
                        secs = sum(curl_transfer(procs, t, args.size, case == "upload") for _ in range(2))
                    res.setdefault((f"{case}_s", name), []).append(secs)
                    res.setdefault((f"{case}_cpu", name), []).append(cpu_seconds(t.pid) - c0)
                    res.setdefault((f"{case}_rss", name), []).append(peak.peak / 1024)
            print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    finally:
        hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["# pyngx A/B", "", machine(), f"- base: {base_label}; pyngx: {pyngx_version(ROOT)}",
             f"- `python bench/ab.py {' '.join(sys.argv[1:])}`", "",
             f"Medians of {args.reps} repetitions, new processes in each. Paired: the median of pyngx ÷ base "
             "per repetition, and in how many pyngx did better.", "",
             "| metric | ASGI peer | base | pyngx | paired pyngx ÷ base | pyngx better |",
             "|---|---|---|---|---|---|"]
    for key, (label, higher) in METRICS.items():
        if (key, "pyngx") not in res:
            continue
        new, old = res[(key, "pyngx")], res[(key, "base")]
        better = sum((a > b) if higher else (a < b) for a, b in zip(new, old))
        paired = statistics.median(a / b for a, b in zip(new, old) if b)
        cells = " | ".join(_fmt(statistics.median(res[(key, n)])) for n in TARGETS)
        lines.append(f"| {label} | {cells} | {paired:.3f} | {better} of {len(new)} |")
    report = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "ab.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
