"""Precision / recall of the anomaly detector on real PM2.5 traces with injected faults.

    python -m bench.anomaly_eval [--data ../shared/data] [--seed 1]

Traces: Beijing US Embassy hourly PM2.5 2010–2014 and a Sensor.Community SDS011 node
(~148 s interval, January 2018). Faults injected and labelled here:
- spike: one reading replaced by value + U(80, 300) µg/m³ (a local puff or a glitch);
- stuck: 8–30 readings frozen at the first one's value;
- drift: 48–200 readings with an added ramp up to +U(30, 80) µg/m³ (fouled optics).
Scores are streamed exactly as the engine sees readings. A fault counts as detected if
any of its readings (or the two after it) scores above the threshold; precision counts
flagged readings that fall in a labelled fault (or the two readings after it). The
traces themselves contain real episodes, so "false" positives include real events.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alert_rules.anomaly import Detector

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("seed", "faults_per_kind", "beijing_hourly", "sds011")

KINDS = ("spike", "stuck", "drift")


def beijing(data: Path) -> npt.NDArray[np.float64]:
    with (data / "pm25" / "beijing_us_embassy_hourly_2010_2014.csv").open() as fh:
        return np.array([float(r["pm2.5"]) if r["pm2.5"] else np.nan
                         for r in csv.DictReader(fh)])


def sds011(data: Path) -> npt.NDArray[np.float64]:
    with (data / "pm25" / "sensor_community_sds011_5331_2018-01.csv").open() as fh:
        return np.array([float(r["P2"]) if r["P2"] else np.nan
                         for r in csv.DictReader(fh, delimiter=";")])


def inject(x: npt.NDArray[np.float64], rng: np.random.Generator, per_kind: int
           ) -> tuple[npt.NDArray[np.float64], list[tuple[str, int, int]]]:
    """Faulty copy of x and the fault segments (kind, start, end exclusive)."""
    y = x.copy()
    n = x.size
    taken = np.zeros(n, bool)
    faults: list[tuple[str, int, int]] = []
    for kind in KINDS:
        made = 0
        while made < per_kind:
            length = {"spike": 1, "stuck": int(rng.integers(8, 31)),
                      "drift": int(rng.integers(48, 201))}[kind]
            s = int(rng.integers(50, n - length - 5))
            # keep faults apart (and 20 readings of warm-up between them) and on valid data
            if taken[max(0, s - 20):s + length + 20].any() or np.isnan(x[s:s + length]).any():
                continue
            taken[s:s + length] = True
            if kind == "spike":
                y[s] = x[s] + rng.uniform(80, 300)
            elif kind == "stuck":
                y[s:s + length] = x[s]
            else:
                y[s:s + length] = x[s:s + length] + np.linspace(0, rng.uniform(30, 80), length)
            faults.append((kind, s, s + length))
            made += 1
    return y, faults


def score(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    det = Detector()
    row = np.zeros(1, np.int64)
    out = np.zeros(y.size)
    for i, v in enumerate(y):
        if not np.isnan(v):
            out[i] = det.update(row, np.array([v]))[0]
    return out


def evaluate(scores: npt.NDArray[np.float64], faults: list[tuple[str, int, int]],
             threshold: float, n: int) -> dict[str, object]:
    flagged = scores > threshold
    in_fault = np.zeros(n, bool)
    res: dict[str, object] = {}
    for kind in KINDS:
        segs = [(s, e) for k, s, e in faults if k == kind]
        hit = sum(bool(flagged[s:min(e + 2, n)].any()) for s, e in segs)
        res[f"recall_{kind}"] = round(hit / len(segs), 3)
        for s, e in segs:
            in_fault[s:min(e + 2, n)] = True
    hits = int((flagged & in_fault).sum())
    res["precision"] = round(hits / max(int(flagged.sum()), 1), 3)
    res["flagged"] = int(flagged.sum())
    res["recall_all"] = round(sum(bool(flagged[s:min(e + 2, n)].any()) for _, s, e in faults)
                              / len(faults), 3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.9])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    result: dict[str, object] = {"seed": args.seed, "faults_per_kind": args.per_kind}
    for name, series in (("beijing_hourly", beijing(args.data)), ("sds011", sds011(args.data))):
        y, faults = inject(series, rng, args.per_kind)
        s = score(y)
        clean = score(series)
        by_threshold: dict[str, object] = {}
        result[name] = by_threshold
        for thr in args.thresholds:
            r = evaluate(s, faults, thr, y.size)
            r["clean_flag_rate"] = round(float((clean > thr).mean()), 4)
            by_threshold[str(thr)] = r
            print(f"{name} threshold {thr}: {r}")
    emit("anomaly_eval", result, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
