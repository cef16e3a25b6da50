"""A/B of two pyngx revisions beside the ASGI peer, new processes every repetition.

run.py times one pyngx. To tell whether a change helps, this starts the
ASGI peer, pyngx at ``--base REV`` and pyngx as the working tree is, and
in each repetition starts all three anew (a process's luck lasts its
whole life, see bench/README "New processes per repetition"), warms them
(13 B at 32 conns and 1 MiB at 8 conns, 1 s each), then runs the chosen
cases in run.py's order: 13 B at 32 conns, 1 MiB at 8 conns, the upload
and the download (two of ``--size`` bytes each; not run.py's 1-conn and
WebSocket cases), every target back to back, in an order rotated per
repetition. The figures are run.py's (its metrics, and RSS sampled as it
samples it while transfers stream).

Reports the medians per target and, as run.py's paired table, the
change against the base per repetition, oriented so that above 1.00×
the change did better. wrk errors are listed, as run.py lists them.

Usage:
    python bench/ab.py --base REV [--reps N] [--cases 13b,1m,upload,download]
                       [--size BYTES] [--duration SECONDS]

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

from harness import (ROOT, Bed, Procs, check_run, export_commit, guarded, hold_signals, interrupt_on_signals, loaded,
                     machine, pyngx_version, write_report)
from run import Results, measured, paired_table, record_errors, size_name, transfer, warm

CASES = ("13b", "1m", "upload", "download")
TARGETS = ("asgi", "base", "pyngx")


def measure(bed: Bed, res: Results, args: argparse.Namespace, cases: list[str], roots: dict[str, Path]) -> None:
    """Every repetition: start the three anew, warm them, run the cases (run.py's metric keys)."""
    procs = bed.procs
    for rep in range(args.reps):
        for name in TARGETS:
            bed.pyngx_root = roots.get(name, ROOT)
            if name in bed.targets:
                bed.restart_proxy(name)
            else:
                bed.start_proxy(name, kind="asgi" if name == "asgi" else "pyngx")
        warm(bed, list(TARGETS), set(), {})
        order = TARGETS[rep % len(TARGETS):] + TARGETS[:rep % len(TARGETS)]
        for name in order if "13b" in cases else ():
            r, cpu = loaded(procs, bed.targets[name], "/13", 32, args.duration)
            res.add("a_rps", name, r.rps)
            res.add("a_cpu", name, cpu)
            record_errors(res, name, "13 B, 32 conns", r)
        for name in order if "1m" in cases else ():
            r, cpu = loaded(procs, bed.targets[name], "/files/1m", 8, args.duration)
            res.add("c_rps", name, r.rps)
            res.add("c_cpu", name, cpu)
            record_errors(res, name, "1 MiB, 8 conns", r)
        for case in ("upload", "download"):
            for name in order if case in cases else ():
                transfer(bed, res, name, args.size, case == "upload", times=2)
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)


def report(res: Results, args: argparse.Namespace, base_label: str) -> str:
    big = 2 * args.size
    lines = ["# pyngx A/B", "", machine(), f"- base: {base_label}; pyngx: {pyngx_version(ROOT)}",
             f"- `python bench/ab.py {' '.join(sys.argv[1:])}`", "",
             f"Medians of {args.reps} repetitions, new processes in each ({size_name(big)}: two transfers).", "",
             "| case | ASGI peer | base | pyngx |", "|---|---|---|---|"]
    for m in measured(res):
        cells = [m.fmt(statistics.median(v)) if (v := res.values.get((m.key, t))) else "n/a" for t in TARGETS]
        lines.append(f"| {m.label.format(big=size_name(big))} | " + " | ".join(cells) + " |")
    paired = paired_table(res, big, target="pyngx", peer="base")
    if paired:
        lines += ["", "pyngx against base, repetition by repetition (above 1.00×: pyngx did better):", "", paired]
    if res.errors:
        lines += ["", "wrk errors: " + "; ".join(res.errors)]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the pyngx revision (git rev) to compare with, e.g. HEAD~1")
    p.add_argument("--reps", type=int, default=10, help="repetitions (default 10)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    p.add_argument("--size", type=int, default=256 * 2**20, help="bytes per transfer (default 256 MiB)")
    p.add_argument("--duration", type=float, default=3, help="seconds per wrk case (default 3)")
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    check_run(p, cases, CASES, args.reps)
    interrupt_on_signals()
    return guarded("A/B", lambda: run(args, cases))


def run(args: argparse.Namespace, cases: list[str]) -> int:
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="pyngx-ab-"))
    res = Results()
    try:
        bed = Bed(procs, tmp)
        bed.start_origin(args.size)
        base_dir = tmp / "base"
        base_dir.mkdir()
        base_label = export_commit(args.base, base_dir)
        measure(bed, res, args, cases, {"base": base_dir, "pyngx": ROOT})
    finally:
        hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    write_report("ab.md", report(res, args, base_label))
    return 0

if __name__ == "__main__":
    sys.exit(main())
