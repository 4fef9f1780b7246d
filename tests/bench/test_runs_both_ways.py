"""Every bench runs as `python bench/X.py` and as `python -m bench.X` (its `--help` here:
the imports and the argument parser, without running the benchmark)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from bench.catalog import BENCH_DIR, bench_modules

ROOT = BENCH_DIR.parent


def _help(cmd: list[str]) -> tuple[list[str], int, str]:
    p = subprocess.run([sys.executable, *cmd, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    return cmd, p.returncode, p.stdout + p.stderr


def test_every_bench_runs_both_ways() -> None:
    benches = bench_modules()
    assert "rules" in benches
    cmds = [c for b in benches for c in ([f"bench/{b}.py"], ["-m", f"bench.{b}"])]
    # Processes in parallel: most of each one is imports (numpy, matplotlib, paho).
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(_help, cmds))
    failed = [f"{' '.join(cmd)}: exit {rc}\n{out[-600:]}" for cmd, rc, out in outcomes
              if rc != 0 or "usage:" not in out]
    assert failed == [], "\n".join(failed)
