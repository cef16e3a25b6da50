#!/bin/sh
# Profile pyngx (and, for comparison, the raw ASGI peer) under py-spy while
# wrk loads it with 13-byte responses at 32 connections. Writes to bench/out/:
#   pyngx.flame.svg, pyngx.speedscope.json, pyngx.collapsed.txt (and asgi.*),
#   summary.md: where the time goes per request, by layer.
# Needs py-spy (pip install py-spy) besides nginx and wrk; see bench/README.md.
# Options go to run.py, e.g. bench/profile.sh --duration 10 --rate 500.
set -e
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" bench/run.py --profile "$@"
