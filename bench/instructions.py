"""Instructions per request under callgrind: pyngx against the raw ASGI peer, without the noise.

On this 2-core machine two processes of the same proxy differ by up to
~20 % in req/s and CPU time for their whole life, and paired timings of
level cases land on either side of 1.00x from run to run. The number of
instructions a proxy executes per request barely moves (±2 %): this runs
each target under valgrind's callgrind, counts the instructions it
executes while the load runs (``callgrind_control -z`` before, ``-d``
after; start-up and warm-up not counted), three times, and reports the
median per request, per message or per transfer. An A/B of two pyngx
revisions (``--base REV``) is then a matter of one run.

A WebSocket figure is the instructions over the messages of the client's
timed window: ws_load.py zeroes and dumps the counters itself, after its
handshakes and before its closes (with 100 connections under callgrind
the handshakes would otherwise outweigh the ~1,000 messages of a 4 s load).

What it does not see: the kernel's side (socket copies, page faults),
the CPU's caches and the time spent waiting. A large copy counts once per
byte (``rep movsb``), so copies weigh more here than in CPU time. It
guides; bench/run.py's timings decide.

Usage:
    python bench/instructions.py [--cases 13b,1m,upload,download,ws1,ws100] [--base REV] [--seconds S]

Needs: valgrind (Debian package ``valgrind``), plus what bench/run.py needs.
Under callgrind a proxy runs ~50x slower: about 5 minutes per target for
all cases (15 with --base). Writes its report (stdout, and
bench/out/instructions.md), and byte-compiles the pyngx trees it runs
(``__pycache__``, as bench/run.py does).

Must not: change pyngx or what bench/run.py measures.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import (ROOT, Bed, Procs, Target, curl_transfer, export_commit, hold_signals, machine, pyngx_version,
                     write_report, wrk, ws_echo)

#: The cases, named as in --cases: (row label, unit).
UNITS = {"13b": ("13 B ×32 conns", "request"), "1m": ("1 MiB ×8 conns", "request"),
         "upload": ("64 MiB upload", "transfer"), "download": ("64 MiB download", "transfer"),
         "ws1": ("WebSocket echo, 1 conn", "message"), "ws100": ("WebSocket echo, 100 conns", "message")}
CASES = tuple(UNITS)
TRANSFER = 64 * 2**20  # bytes per upload / download under callgrind


def start(bed: Bed, tmp: Path, name: str, root: Path | None) -> Target:
    """``name`` (asgi, or a pyngx tree at ``root``) under callgrind, serving
    (start-up under callgrind takes a minute or so)."""
    bed.pyngx_root = root or ROOT
    out = tmp / f"callgrind.{name}.%p"
    vg = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no", "--collect-jumps=no")
    return bed.start_proxy(name, kind="asgi" if root is None else "pyngx", wrap=vg, ready=300)


def load(procs: Procs, t: Target, case: str, seconds: float, edges: tuple[str, str] | None = None) -> float:
    """Run ``case`` once against ``t``; returns how many units (requests, messages, transfers) it made.

    ``edges``: commands run right before and after the load (a WebSocket
    load runs them itself, between its handshakes and its closes)."""
    if case.startswith("ws"):
        r = ws_echo(procs, Target(t.name, t.port, t.port, t.port, None), int(case[2:]), seconds, edges)
        return r.rate * seconds
    if edges is not None:
        subprocess.run(shlex.split(edges[0]), capture_output=True, timeout=120, check=True)
    url = f"http://127.0.0.1:{t.port}"
    if case == "13b":
        units = wrk(procs, url + "/13", 32, seconds).requests
    elif case == "1m":
        units = wrk(procs, url + "/files/1m", 8, seconds).requests
    elif case in ("upload", "download"):
        curl_transfer(procs, t, TRANSFER, case == "upload")
        units = 1
    else:
        raise ValueError(case)
    if edges is not None:
        subprocess.run(shlex.split(edges[1]), capture_output=True, timeout=120, check=True)
    return units


def dumps(tmp: Path, t: Target) -> list[str]:
    """The callgrind files of ``t``'s process: callgrind.NAME.PID and callgrind.NAME.PID.N."""
    base = str(tmp / f"callgrind.{t.name}.{t.pid}")
    return glob.glob(base) + glob.glob(base + ".*")


def counted(procs: Procs, tmp: Path, t: Target, case: str, seconds: float) -> float:
    """Instructions per unit of ``case``: the median of three counted loads."""
    assert t.pid is not None
    per_unit = []
    load(procs, t, case, seconds)  # warm up
    for _ in range(3):
        for old in dumps(tmp, t):
            os.unlink(old)
        units = load(procs, t, case, seconds, (f"callgrind_control -z {t.pid}", f"callgrind_control -d {t.pid}"))
        total = 0
        for dump in dumps(tmp, t):
            for line in open(dump):
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        per_unit.append(total / units if units else float("nan"))
    return statistics.median(per_unit)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    p.add_argument("--base", help="also count this pyngx revision (git rev), e.g. HEAD~1")
    p.add_argument("--seconds", type=float, default=10, help="seconds per wrk or WebSocket load (default 10)")
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 1
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="pyngx-instr-"))
    results: dict[tuple[str, str], float] = {}
    try:
        bed = Bed(procs, tmp)
        bed.start_origin(TRANSFER)
        names: list[tuple[str, Path | None]] = [("asgi", None)]
        base_label = ""
        if args.base:
            base_dir = tmp / "base"
            base_dir.mkdir()
            base_label = export_commit(args.base, base_dir)
            names.append(("base", base_dir))
        names.append(("pyngx", ROOT))
        for name, root in names:
            t = start(bed, tmp, name, root)
            for case in cases:
                results[(name, case)] = counted(procs, tmp, t, case, args.seconds)
                print(f"{name} {case}: {results[(name, case)] / 1e3:,.1f} k instructions per {UNITS[case][1]}",
                      flush=True)
            procs.stop(next(q for n, q in procs.procs if n == name))
    finally:
        hold_signals()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    cols = [n for n, _ in names]
    head = {"asgi": "ASGI peer", "base": f"pyngx {base_label}", "pyngx": "pyngx"}
    lines = ["# Instructions per unit (callgrind)", "", machine(), f"- {pyngx_version(ROOT)}",
             f"- `python bench/instructions.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             "| case | unit | " + " | ".join(head[c] for c in cols) + " | pyngx ÷ peer |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    for case in cases:
        label, unit = UNITS[case]
        row = [f"{results[(c, case)] / 1e3:,.0f} k" for c in cols]
        ratio = results[("pyngx", case)] / results[("asgi", case)]
        lines.append(f"| {label} | {unit} | " + " | ".join(row) + f" | {ratio:.2f} |")
    write_report("instructions.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
