"""Tick time of the vectorized rule engine versus the per-device Python reference.

    python bench/rules.py --devices 100000 [--rules FILE ...] [--ticks 15] [--naive-devices 2000]

Rules: the default set and the spatial rules (`--rules` once per file to choose others).
Fleet: every device reports once a minute (values around 60 µg/m³, a few above 150),
with 26 hours of hourly history and 30 minutes of minute data before the timed ticks.
Each timed round ingests one minute of readings (not timed) and then times one tick:
the worst case, every device changed and the clock in a new bucket. `tick_cpu_ms_median`
is the tick thread's CPU time (steadier than wall time on a shared machine).

Then the fleet falls silent and the engine ticks once a second for `--silent-seconds`
(the collector's timer): `silent_tick_ms_*` (the median is a tick inside a bucket; the
mean includes the once-a-minute tick that enters a new bucket). Then the collector's
engine snapshot (`collector.engine_state_file`): `snapshot_copy_ms` is what the ingest
thread pays, `snapshot_write_ms` the background write, `snapshot_bytes_per_device` its
size; `snapshot_inline_ms` is building the same snapshot as bytes in one go (as it was
written before, on the ingest thread).

The reference runs on a subset of devices (`--naive-devices`) and is scaled linearly to
the full fleet; the last line says so. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rule_base import RuleBase
from alert_rules.rulefile import DEFAULT_RULES, load_rules

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit
from collector.engine_state_file import EngineStateFile
from tests.support.reference_rules import from_engine

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("devices", "rules", "tick_ms_median", "tick_ms_min", "tick_ms_max",
               "ingest_ms_median", "tick_cpu_ms_median", "naive_tick_ms_median",
               "naive_measured_devices", "naive_scaled", "speedup", "prime_s",
               "silent_tick_ms_median", "silent_tick_ms_mean", "silent_tick_ms_max",
               "snapshot_copy_ms", "snapshot_copy_cold_ms", "snapshot_write_ms",
               "snapshot_inline_ms",
               "snapshot_bytes_per_device", "snapshot_mb")

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # an hour boundary
MIN = 60_000
SPATIAL_RULES = DEFAULT_RULES.with_name("spatial_rules.yaml")


def fleet(n: int, seed: int) -> tuple[list[str], list[Device], np.random.Generator]:
    rng = np.random.default_rng(seed)
    ids = [f"dev{i:06d}" for i in range(n)]
    towns = [f"town{i % 200:03d}" for i in range(n)]
    lat = 39.9 + rng.uniform(-0.5, 0.5, n)
    lon = 116.4 + rng.uniform(-0.5, 0.5, n)
    reg = [Device(id=d, township=t, lat=float(a), lon=float(o),
                  link="cellular" if i % 3 == 0 else "wired")
           for i, (d, t, a, o) in enumerate(zip(ids, towns, lat, lon, strict=True))]
    return ids, reg, rng


def values(rng: np.random.Generator, n: int) -> np.ndarray:
    # each device has its own level (mean 60 µg/m³, a long upper tail past 150) and
    # reads it with ±10 % noise; a few readings are missing
    base = np.random.default_rng(7).gamma(4.0, 15.0, n)
    v = base * (1 + 0.1 * rng.standard_normal(n))
    v[rng.random(n) < 0.002] = np.nan
    return np.round(np.maximum(v, 0), 1)


class Judge(Protocol):
    """What the timed rounds drive: the engine, or the per-device Python reference."""

    def ingest(self, devices: list[str], ts: Sequence[int], values: Mapping[str, Sequence[float]],
               flagged: Sequence[bool] | None = None, /) -> None: ...

    def tick(self, now: int, /) -> Sequence[object]: ...


def feed(ids: list[str], rng: np.random.Generator, now: int,
         devices_alive: int) -> tuple[list[str], list[int], dict[str, list[float]], list[bool]]:
    n = devices_alive
    v = values(rng, n)
    ts = (now - rng.integers(0, MIN // 2, n)).tolist()
    flagged = (rng.random(n) < 0.05).tolist()
    return ids[:n], ts, {"pm2_5": v.tolist()}, flagged


def prime(engine: Judge, ids: list[str], seed: int, start: int) -> int:
    """26 h of one reading an hour, then 30 min of one a minute; returns the clock."""
    rng = np.random.default_rng(seed)
    n = int(len(ids) * 0.995)  # 0.5 % of the registry never report: deadman
    for h in range(26, 0, -1):
        engine.ingest(*feed(ids, rng, start - h * 3_600_000 + 1_800_000, n))
    now = start
    for _ in range(30):
        now += MIN
        engine.ingest(*feed(ids, rng, now, n))
        engine.tick(now)
    return now


def timed_ticks(engine: Judge, ids: list[str], seed: int, now: int, ticks: int,
                cpu: list[float] | None = None,
                ingest_ms: list[float] | None = None) -> list[float]:
    """Wall ms per tick; the thread's CPU ms too into `cpu` (steadier on a shared box),
    and each minute's ingest into `ingest_ms`."""
    rng = np.random.default_rng(seed + 1)
    n = int(len(ids) * 0.995)
    out = []
    for _ in range(ticks):
        now += MIN
        batch = feed(ids, rng, now, n)
        t = time.perf_counter()
        engine.ingest(*batch)
        if ingest_ms is not None:
            ingest_ms.append((time.perf_counter() - t) * 1000)
        t, c = time.perf_counter(), time.thread_time()
        engine.tick(now)
        out.append((time.perf_counter() - t) * 1000)
        if cpu is not None:
            cpu.append((time.thread_time() - c) * 1000)
    return out


def silent_ticks(engine: Engine, now: int, seconds: int) -> list[float]:
    """One tick a second with nothing arriving, as the collector's timer ticks."""
    out = []
    for _ in range(seconds):
        now += 1000
        t = time.perf_counter()
        engine.tick(now)
        out.append((time.perf_counter() - t) * 1000)
    return out


def snapshot_figures(engine: Engine) -> dict[str, float]:
    """The collector's engine snapshot: ingest-thread copy (into fresh memory, and into
    the buffers the collector keeps warm), background write, size."""
    t = time.perf_counter()
    inline = len(engine.snapshot())
    inline_ms = (time.perf_counter() - t) * 1000
    with tempfile.TemporaryDirectory() as tmp:
        saving = EngineStateFile(engine, Path(tmp) / "engine.npz")
        saving.save()
        saving.wait()
        cold_ms = saving.copy_ms
        saving.save()  # the collector's steady state: its buffers are warm
        saving.wait()
        n = engine.fleet.size
        return {"snapshot_copy_ms": round(saving.copy_ms, 1),
                "snapshot_copy_cold_ms": round(cold_ms, 1),
                "snapshot_write_ms": round(saving.write_ms, 1),
                "snapshot_inline_ms": round(inline_ms, 1),
                "snapshot_bytes_per_device": round(saving.bytes / n, 1),
                "snapshot_mb": round(inline / 1e6, 1)}


def load_all(paths: list[Path]) -> list[RuleBase]:
    return [r for p in paths for r in load_rules(p)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--rules", type=Path, action="append",
                    help="rule file (repeat for several; default: default + spatial rules)")
    ap.add_argument("--ticks", type=int, default=15)
    ap.add_argument("--silent-seconds", type=int, default=120)
    ap.add_argument("--naive-devices", type=int, default=1000)
    ap.add_argument("--naive-ticks", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    files: list[Path] = args.rules or [DEFAULT_RULES, SPATIAL_RULES]

    rules = load_all(files)
    ids, reg, _ = fleet(args.devices, args.seed)
    engine = Engine(rules, registry=reg)
    t = time.perf_counter()
    now = prime(engine, ids, args.seed, T0)
    prime_s = time.perf_counter() - t
    ingest: list[float] = []
    fast_cpu: list[float] = []
    fast = timed_ticks(engine, ids, args.seed, now, args.ticks, fast_cpu, ingest)
    now += args.ticks * MIN
    silent = silent_ticks(engine, now, args.silent_seconds)
    snap = snapshot_figures(engine)

    m = min(args.naive_devices, args.devices)
    sub_ids, sub_reg = ids[:m], reg[:m]
    sub_engine = Engine(load_all(files), registry=sub_reg)
    ref = from_engine(sub_engine, sub_reg)
    now = prime(ref, sub_ids, args.seed, T0)
    naive = timed_ticks(ref, sub_ids, args.seed, now, args.naive_ticks)
    naive_full = statistics.median(naive) * args.devices / m

    tick_ms = statistics.median(fast)
    result = {
        "devices": args.devices, "rules": len(rules),
        "tick_ms_median": round(tick_ms, 2),
        "tick_ms_min": round(min(fast), 2),
        "tick_ms_max": round(max(fast), 2),
        # the anomaly detectors learn in ingest (one minute of readings)
        "ingest_ms_median": round(statistics.median(ingest), 2),
        "tick_cpu_ms_median": round(statistics.median(fast_cpu), 2),
        "naive_tick_ms_median": round(naive_full, 1),
        "naive_measured_devices": m,
        "naive_scaled": m < args.devices,
        "speedup": round(naive_full / tick_ms, 1),
        "prime_s": round(prime_s, 1),
        "silent_tick_ms_median": round(statistics.median(silent), 3),
        "silent_tick_ms_mean": round(statistics.mean(silent), 3),
        "silent_tick_ms_max": round(max(silent), 2),
        **snap,
    }
    if m < args.devices:
        print(f"reference measured on {m} devices and scaled linearly to {args.devices}",
              file=sys.stderr)
    emit("rules", result, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
