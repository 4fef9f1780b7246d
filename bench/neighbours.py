"""Building the spatial neighbour layout (`alert_rules.neighbours`), against the search it
replaced (`tests.support.neighbours_reference`: one cell the radius wide, quadratic in
density), both in the same run on the same layouts.

    python bench/neighbours.py [--devices 100000] [--repeats 3] [--county-density 2]

Two layouts of `--devices` devices, the radius and k of the default rules (3 km, 8):
`dense` is the registry of bench/collector_scale.py (`registry_csv`: a regular grid in a
1° × 0.1° box, about 94 devices per km², every distance repeated many times), `county` a
uniform random layout at `--county-density` devices per km² (a county's density). For
each: the new search's median time of `--repeats` builds (`*_build_s`, wall; `*_cpu_s`,
this process's CPU time, steadier on a shared machine), the reference's one build
(`*_reference_s`, `*_reference_cpu_s`) and their CPU-time ratio (`*_speedup`);
`identical` says both gave exactly the same neighbour matrix on both layouts.

Then the layout cache at the dense layout (`alert_rules.neighbour_layout`): `reuse_ms`,
a registry reload that moved nobody (inputs compared, no search); `extend_ms`, one row
added without a position (an unregistered device): extended, no search. Prints one JSON
object as its last line.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from alert_rules.neighbour_layout import build_layout
from alert_rules.neighbours import EARTH_RADIUS_KM, neighbours
from alert_rules.registry import Device
from alert_rules.rule_anomaly import AnomalyRule
from alert_rules.rule_sensor_fault import SensorFaultRule
from alert_rules.rule_spatial import SpatialRule
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from alert_rules.state import FloatArr, IntArr
from bench.collector_scale import registry_csv
from bench.record import emit
from tests.support.neighbours_reference import one_radius_neighbours

RESULT_KEYS = ("devices", "radius_km", "k",
               "dense_per_km2", "dense_build_s", "dense_cpu_s", "dense_reference_s",
               "dense_reference_cpu_s", "dense_speedup",
               "county_per_km2", "county_build_s", "county_cpu_s", "county_reference_s",
               "county_reference_cpu_s", "county_speedup",
               "identical", "reuse_ms", "extend_ms")


def rule_radius_and_k() -> tuple[float, int]:
    """The (radius, k) the default rule files share (spatial, sensor fault, anomaly)."""
    rules = [r for name in ("default_rules.yaml", "spatial_rules.yaml", "sensor_fault_rules.yaml")
             for r in load_rules(DEFAULT_RULES.with_name(name))]
    pairs = {(r.radius_km, r.max_neighbours) for r in rules
             if isinstance(r, SpatialRule | SensorFaultRule | AnomalyRule)}
    if len(pairs) != 1:
        raise SystemExit(f"the default rules use several (radius, k): {sorted(pairs)}")
    return pairs.pop()


def dense_layout(n: int) -> tuple[list[Device], FloatArr, FloatArr]:
    rows = list(csv.DictReader(io.StringIO(registry_csv(n))))
    reg = [Device(id=r["id"], township=r["township"], lat=float(r["lat"]), lon=float(r["lon"]))
           for r in rows]
    return reg, np.array([d.lat for d in reg]), np.array([d.lon for d in reg])


def county_layout(n: int, per_km2: float, seed: int = 1) -> tuple[FloatArr, FloatArr]:
    """Uniform in a square of n / per_km2 km² around 30° N, 114° E."""
    side_km = math.sqrt(n / per_km2)
    rng = np.random.default_rng(seed)
    dlat = math.degrees(side_km / EARTH_RADIUS_KM)
    dlon = dlat / math.cos(math.radians(30))
    return 30 + rng.uniform(0, dlat, n), 114 + rng.uniform(0, dlon, n)


def density(lat: FloatArr, lon: FloatArr) -> float:
    h = math.radians(float(np.ptp(lat))) * EARTH_RADIUS_KM
    w = math.radians(float(np.ptp(lon))) * EARTH_RADIUS_KM * math.cos(math.radians(
        float(lat.mean())))
    return lat.size / (h * w)


def timed(f: Callable[[], IntArr]) -> tuple[IntArr, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def compare(name: str, lat: FloatArr, lon: FloatArr, radius: float, k: int,
            repeats: int) -> tuple[dict[str, float], bool]:
    runs = [timed(lambda: neighbours(lat, lon, radius, k)) for _ in range(repeats)]
    ref, ref_wall, ref_cpu = timed(lambda: one_radius_neighbours(lat, lon, radius, k))
    cpu = statistics.median(r[2] for r in runs)
    fig = {f"{name}_per_km2": round(density(lat, lon), 1),
           f"{name}_build_s": round(statistics.median(r[1] for r in runs), 3),
           f"{name}_cpu_s": round(cpu, 3),
           f"{name}_reference_s": round(ref_wall, 3),
           f"{name}_reference_cpu_s": round(ref_cpu, 3),
           f"{name}_speedup": round(ref_cpu / cpu, 1) if cpu > 0 else 0.0}
    print(f"{name}: {fig}", flush=True)
    return fig, all(np.array_equal(r[0], ref) for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3, help="builds of the new search (median)")
    ap.add_argument("--county-density", type=float, default=2.0,
                    help="devices per km² of the county layout")
    a = ap.parse_args()
    radius, k = rule_radius_and_k()
    reg, lat, lon = dense_layout(a.devices)
    dense, same_dense = compare("dense", lat, lon, radius, k, a.repeats)
    clat, clon = county_layout(a.devices, a.county_density)
    county, same_county = compare("county", clat, clon, radius, k, a.repeats)

    ids = [d.id for d in reg]
    first = build_layout(ids, {d.id: d for d in reg}, radius, k)
    reloaded = {d.id: d for d in reg}  # equal, not the same mapping
    t = time.perf_counter()
    again = build_layout(ids, reloaded, radius, k, first)
    reuse_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    grown = build_layout([*ids, "stranger"], again.registry, radius, k, again)
    extend_ms = (time.perf_counter() - t) * 1000
    if again.nbr_t is not first.nbr_t or grown.size != a.devices + 1:
        raise SystemExit("the layout was searched again where it should have been reused")
    emit("neighbours", {"devices": a.devices, "radius_km": radius, "k": k, **dense, **county,
                        "identical": same_dense and same_county,
                        "reuse_ms": round(reuse_ms, 1), "extend_ms": round(extend_ms, 1)},
         RESULT_KEYS)


if __name__ == "__main__":
    main()
