"""How a bench reports its result: one JSON object on the last line, and, when asked, a
record of it with where it came from.

A bench declares the keys of its result once, at module level, and ends with one call::

    RESULT_KEYS = ("tick_ms_median", "speedup")
    ...
    emit("rules", result, RESULT_KEYS)

`emit` refuses a result whose keys differ from the declaration, so a bench that changes
its output changes its declaration, and tests/bench/test_results.py then fails until
`bench/results/<bench>.json` and `bench/RESULTS.md` follow (`make bench`).

With `AIRGRID_BENCH_RECORD=DIR` in the environment (`make bench` sets it to bench/results)
`emit` also writes `DIR/<bench>.json`: the result plus its provenance (commit and whether
the tree differed from it, UTC start and end, cores, CPU model, RAM, load average at start
and end, the command line and which form of it this was).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.catalog import BENCH_DIR, bench_modules, form_of

RECORD_ENV = "AIRGRID_BENCH_RECORD"
REPO = BENCH_DIR.parent
#: Paths whose changes do not make a tree "dirty" for a record: the records themselves.
RECORD_OUTPUTS = ("bench/results", "bench/RESULTS.md")

# Taken when the bench imports this module, i.e. as it starts: the load the run began in.
_STARTED = time.time()
_LOAD_AT_START = os.getloadavg()


class ResultKeysError(ValueError):
    """A bench produced a result whose keys are not the ones it declares: change
    `RESULT_KEYS` (and re-run `make bench`) or the result."""


def check_keys(bench: str, result: Mapping[str, object], declared: Sequence[str]) -> None:
    got, want = set(result), set(declared)
    if got != want:
        raise ResultKeysError(
            f"bench {bench}: result keys differ from RESULT_KEYS: "
            f"not declared {sorted(got - want)}, declared but missing {sorted(want - got)}")


def emit(bench: str, result: Mapping[str, object], declared: Sequence[str]) -> None:
    """Print `result` as the last line of stdout; record it if `AIRGRID_BENCH_RECORD` is set.

    Raises ResultKeysError (after printing the result to stderr, so the run's figures are
    not lost) when the keys differ from `declared`."""
    line = json.dumps(result, ensure_ascii=False)
    if bench not in bench_modules():
        raise ResultKeysError(f"no bench named {bench!r} in bench/ ({', '.join(bench_modules())})")
    try:
        check_keys(bench, result, declared)
    except ResultKeysError:
        print(line, file=sys.stderr, flush=True)
        raise
    target = os.environ.get(RECORD_ENV)
    if target:
        write_record(Path(target), bench, record_of(bench, result))
    print(line, flush=True)


def record_of(bench: str, result: Mapping[str, object]) -> dict[str, Any]:
    args = sys.argv[1:]
    commit, dirty = git_state()
    return {
        "bench": bench,
        "result": dict(result),
        "provenance": {
            "commit": commit,
            "dirty": dirty,
            "started_utc": _utc(_STARTED),
            "finished_utc": _utc(time.time()),
            "seconds": round(time.time() - _STARTED, 1),
            # Always spelled the module way: the same run whichever way it was started,
            # and no path of this machine in the record.
            "command": shlex.join(["python", "-m", f"bench.{bench}", *args]),
            "form": form_of(bench, args),
            "machine": machine(),
            "load_average_start": [round(x, 2) for x in _LOAD_AT_START],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


def write_record(directory: Path, bench: str, record: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{bench}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether the tree differs from it outside the records); Nones when
    this is not a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".",
             *(f":(exclude){p}" for p in RECORD_OUTPUTS)],
            cwd=REPO, capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head, bool(status.strip())


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpuinfo_model(),
        "ram_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _cpuinfo_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return None


def _mem_total_gib() -> float | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)  # kB
    return None


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
