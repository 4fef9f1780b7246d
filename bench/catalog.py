"""Every benchmark in bench/ and the two forms `make bench` knows it by.

The quick form is what `make bench` runs (the whole set in about 15 minutes on a 2-core
machine); the full form is the one the figures in a bench's notes were first taken with,
where that takes more than a few minutes. A bench module not listed here fails
tests/bench/test_results.py, and so does an entry without its module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: Modules of bench/ that are its machinery, not benchmarks.
TOOLS = frozenset({"__init__", "anomaly_baselines", "anomaly_corpus", "anomaly_detector_before",
                   "catalog", "record", "render_results", "run_all", "stall_sampler"})


@dataclass(frozen=True)
class Forms:
    quick: tuple[str, ...]
    full: tuple[str, ...]
    #: Seconds `make bench` waits for the quick form before giving up on it.
    timeout_s: float = 600.0


BENCHES: dict[str, Forms] = {
    "alert_latency": Forms(
        quick=("--devices", "1000", "--seconds", "15", "--publishers", "2", "--reference"),
        # issue 22's second target: 10,000 devices at one reading each per 10 s
        full=("--devices", "10000", "--interval-s", "10", "--seconds", "60",
              "--publishers", "2", "--reference"), timeout_s=900),
    "app_first_load": Forms(quick=("--runs", "2"), full=("--runs", "3")),
    "anomaly_eval": Forms(quick=("--seed", "1"), full=("--seed", "1"), timeout_s=2400),
    "broker_connect": Forms(quick=("--n", "100"), full=("--n", "200")),
    "chaos": Forms(
        quick=("--devices", "6", "--seconds", "120", "--seed", "7"),
        full=("--devices", "20", "--seconds", "300", "--seed", "1"), timeout_s=900),
    "cluster": Forms(
        quick=("--devices", "1000", "--collectors", "4"),
        full=("--devices", "10000", "--collectors", "4"), timeout_s=900),
    "collector_scale": Forms(quick=("--quick",), full=(), timeout_s=5400),
    "edge": Forms(
        quick=("--readings", "10000", "--repeats", "3", "--agent-seconds", "20"),
        full=("--readings", "20000", "--repeats", "3", "--agent-seconds", "60")),
    "hostile": Forms(quick=(), full=()),
    "ingest": Forms(
        quick=("--devices", "200", "--readings", "100000"),
        full=("--devices", "500", "--readings", "6000000"), timeout_s=900),
    # the reference (the search before) takes about a minute at 94 devices per km²
    "neighbours": Forms(quick=("--devices", "100000", "--repeats", "3"),
                        full=("--devices", "100000", "--repeats", "3")),
    "report_render": Forms(quick=("--runs", "2"), full=("--runs", "3")),
    "rules": Forms(
        quick=("--devices", "100000", "--ticks", "11", "--naive-devices", "1000",
               "--naive-ticks", "2"),
        full=("--devices", "100000", "--ticks", "21", "--naive-devices", "1000",
              "--naive-ticks", "3")),
}


def bench_modules() -> list[str]:
    """Names of the benchmark modules in bench/, sorted."""
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in TOOLS)


def form_of(bench: str, args: list[str]) -> str:
    """"full", "quick" or "custom": which listed form these arguments are (a bench whose
    two forms are the same runs in full)."""
    forms = BENCHES.get(bench)
    if forms is not None and tuple(args) == forms.full:
        return "full"
    if forms is not None and tuple(args) == forms.quick:
        return "quick"
    return "custom"
