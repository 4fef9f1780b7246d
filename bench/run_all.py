"""Run every benchmark, record its result, then regenerate bench/RESULTS.md.

    python -m bench.run_all [--full] [--only NAME ...] [--list] [--no-render]

What `make bench` runs (quick forms; the forms are listed in bench/catalog.py). Each bench
runs as its own `python -m bench.NAME` process, one after another, with
`AIRGRID_BENCH_RECORD` pointing at bench/results, so each writes bench/results/NAME.json;
its output goes to a log file named in the progress line. A bench that fails keeps its
previous record (which names its own commit and date); the exit status says how many
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/run_all.py`: put the repo root first instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import render_results
from bench.catalog import BENCHES, bench_modules
from bench.record import RECORD_ENV, REPO

LOG_DIR = REPO / ".airgrid" / "bench-logs"


def run_one(name: str, args: tuple[str, ...], timeout_s: float, results: Path,
            form: str) -> tuple[int | None, float, Path]:
    """(exit status or None on timeout, seconds, log file)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    cmd = [sys.executable, "-m", f"bench.{name}", *args]
    env = {**os.environ, RECORD_ENV: str(results)}
    t0 = time.monotonic()
    with log.open("wb") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        try:
            status: int | None = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the bench and the services it started
            proc.wait()
            status = None
    return status, time.monotonic() - t0, log


def annotate(results: Path, name: str, status: int | None, started: float) -> bool:
    """Add the exit status to a record written by this run; False if it wrote none."""
    path = results / f"{name}.json"
    if not path.exists() or path.stat().st_mtime < started:
        return False
    record = json.loads(path.read_text(encoding="utf-8"))
    record["provenance"]["exit_status"] = status
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--full", action="store_true", help="full forms instead of quick ones")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BENCHES),
                    help="run only these benches")
    ap.add_argument("--list", action="store_true", help="print the forms and exit")
    ap.add_argument("--no-render", action="store_true", help="do not rewrite RESULTS.md")
    ap.add_argument("--results", type=Path, default=render_results.RESULTS_DIR,
                    help="where records go (default bench/results)")
    args = ap.parse_args(argv)
    unlisted = sorted(set(bench_modules()) - set(BENCHES))
    if unlisted:
        print(f"not in bench/catalog.py, not run: {', '.join(unlisted)}", file=sys.stderr)
    names = args.only or sorted(BENCHES)
    form = "full" if args.full else "quick"
    if args.list:
        for n in names:
            f = BENCHES[n]
            print(f"{n}\n  quick: {shlex.join(f.quick)}\n  full:  {shlex.join(f.full)}")
        return 0
    failed = []
    t_all = time.monotonic()
    for i, name in enumerate(names, 1):
        forms = BENCHES[name]
        bench_args = forms.full if args.full else forms.quick
        print(f"[{i}/{len(names)}] {name} ({form}): python -m bench.{name} "
              f"{shlex.join(bench_args)}", flush=True)
        started = time.time()
        status, seconds, log = run_one(name, bench_args, forms.timeout_s, args.results, form)
        recorded = annotate(args.results, name, status, started)
        verdict = ("ok" if status == 0 else
                   f"TIMED OUT after {forms.timeout_s:.0f} s" if status is None else
                   f"FAILED (exit {status})")
        print(f"    {verdict} in {seconds:.0f} s, "
              f"{'recorded' if recorded else 'NOT recorded'}; log {log.relative_to(REPO)}",
              flush=True)
        if status != 0 or not recorded:
            failed.append(name)
    print(f"{len(names) - len(failed)} of {len(names)} benches ok in "
          f"{(time.monotonic() - t_all) / 60:.1f} min"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}", flush=True)
    if not args.no_render:
        render_results.main([])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
