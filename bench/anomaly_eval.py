"""The anomaly detector on real PM2.5 traces with injected faults, scored per fault family
and NAB-style, side by side with the same detector with the anomaly-likelihood layer on
(`with_likelihood`, on request), the detector shipped before it (`before`: a pinned copy, commit
5dbccfc), the spike detector before that (`previous`) and a plain EWMA z-score.

    python -m bench.anomaly_eval [--data ../shared/data] [--seed 1] [--per-kind 40]

Traces (skipped with a message when the data folder is absent): Beijing US Embassy hourly
PM2.5 2010–2014 and a Sensor.Community SDS011 node (~148 s interval, January 2018); and
two derived from them: the Beijing trace ×1000 after injection (the same faults: its
figures must equal the original's, the detector being scale-free) and the SDS011 trace
as 10-minute means (another reading rate).
Fault families, each injected `--per-kind` times into its own copy of the trace:
- spike: one reading + U(80, 300) µg/m³ (a puff at the inlet or a glitch);
- stuck: 8–30 readings frozen at the first one's value;
- shift: the reading × U(1.6, 2.5) from a point on, for 12–60 readings (a calibration
  jump, a sensor swapped or re-seated);
- variance: + N(0, (U(3, 5)·s)²) noise for 12–60 readings, s the trace's robust
  reading-to-reading scale (a failing fan, a loose connector);
- drift: + a ramp up to U(30, 80) µg/m³ over 48–200 readings (fouled optics);
- zeros: 3–20 readings of 0 (a sensor that lost its laser or its serial frames).
Every copy is streamed through the detectors exactly as the engine sees readings (all
copies as rows of one vectorized detector). A detection is a reading whose score reaches
the threshold, followed by a cooldown (`--cooldown-min`, what the rule's `cooldown` does)
in which further readings are not new detections. Labelled window: the fault's readings
plus `max(3 readings, 1 h)` after them.
Per family: recall, median detection delay, recall within an hour of the fault's start,
false alarms per device-day outside windows, and the NAB score (standard profile:
A_TP = 1, A_FP = −0.11, A_FN = −1; a detection's weight is the scaled sigmoid of its
position relative to the window; normalised so never firing is 0 and perfect is 100).
The unmodified traces give false alarms per device-day; they contain real episodes,
so part of those are real events. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alert_rules.anomaly import Detector

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.anomaly_baselines import EwmaZ, SpikeReference
from bench.anomaly_detector_before import Detector as DetectorBefore
from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them). Each
#: trace holds `detector@threshold` → figures per fault family; None when not run.
RESULT_KEYS = ("seed", "faults_per_kind", "cooldown_min", "beijing_hourly", "sds011",
               "beijing_hourly_x1000", "sds011_10min")

FAMILIES = ("spike", "stuck", "shift", "variance", "drift", "zeros")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
A_TP, A_FP, A_FN = 1.0, -0.11, -1.0  # NAB standard profile
Arr = npt.NDArray[np.float64]
Fault = tuple[str, int, int]


def beijing(data: Path) -> tuple[npt.NDArray[np.int64], Arr]:
    ts, v = [], []
    with (data / "pm25" / "beijing_us_embassy_hourly_2010_2014.csv").open() as fh:
        for r in csv.DictReader(fh):
            t = datetime(int(r["year"]), int(r["month"]), int(r["day"]), int(r["hour"]),
                         tzinfo=UTC)
            ts.append(int(t.timestamp() * 1000))
            v.append(float(r["pm2.5"]) if r["pm2.5"] else np.nan)
    return np.array(ts, np.int64), np.array(v)


def sds011(data: Path) -> tuple[npt.NDArray[np.int64], Arr]:
    ts, v = [], []
    with (data / "pm25" / "sensor_community_sds011_5331_2018-01.csv").open() as fh:
        for r in csv.DictReader(fh, delimiter=";"):
            t = datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC)
            ts.append(int(t.timestamp() * 1000))
            v.append(float(r["P2"]) if r["P2"] else np.nan)
    return np.array(ts, np.int64), np.array(v)


def resample(ts: npt.NDArray[np.int64], x: Arr, step_ms: int
             ) -> tuple[npt.NDArray[np.int64], Arr]:
    """Means over `step_ms` buckets (a bucket without readings is NaN)."""
    b = (ts - ts[0]) // step_ms
    ok = np.isfinite(x)
    n = int(b[-1]) + 1
    tot = np.bincount(b[ok], x[ok], minlength=n)
    cnt = np.bincount(b[ok], minlength=n)
    with np.errstate(invalid="ignore"):
        mean = np.round(tot / cnt, 1)
    return ts[0] + step_ms * np.arange(n, dtype=np.int64), np.where(cnt > 0, mean, np.nan)


#: trace → (loader, factor applied to every copy after injection, resampling step ms):
#: the derived traces show the detector's figures do not depend on the series' units
#: (×1000: the same as the original) and how they move with the reading rate
TRACES: dict[str, tuple[Callable[[Path], tuple[npt.NDArray[np.int64], Arr]], float, int]] = {
    "beijing_hourly": (beijing, 1.0, 0),
    "sds011": (sds011, 1.0, 0),
    "beijing_hourly_x1000": (beijing, 1000.0, 0),
    "sds011_10min": (sds011, 1.0, 600_000),
}


def inject(x: Arr, kind: str, rng: np.random.Generator, per_kind: int
           ) -> tuple[Arr, list[Fault]]:
    """Faulty copy of x and its faults (kind, start, end exclusive)."""
    y = x.copy()
    n = x.size
    taken = np.zeros(n, bool)
    faults: list[Fault] = []
    step = np.abs(np.diff(x[~np.isnan(x)]))
    s_robust = float(np.median(step)) * 1.4826 or 1.0
    tries = 0
    while len(faults) < per_kind and tries < 100_000:
        tries += 1
        length = {"spike": 1, "stuck": int(rng.integers(8, 31)),
                  "shift": int(rng.integers(12, 61)), "variance": int(rng.integers(12, 61)),
                  "drift": int(rng.integers(48, 201)),
                  "zeros": int(rng.integers(3, 21))}[kind]
        s = int(rng.integers(200, n - length - 5))
        # faults apart (and 100 readings between them to settle) and on valid data
        if taken[max(0, s - 100):s + length + 100].any() or np.isnan(x[s:s + length]).any():
            continue
        seg = slice(s, s + length)
        if kind == "spike":
            y[s] = x[s] + rng.uniform(80, 300)
        elif kind == "stuck":
            y[seg] = x[s]
        elif kind == "shift":
            y[seg] = x[seg] * rng.uniform(1.6, 2.5)
        elif kind == "variance":
            y[seg] = np.maximum(x[seg] + rng.normal(0, rng.uniform(3, 5) * s_robust, length), 0)
        elif kind == "drift":
            y[seg] = x[seg] + np.linspace(0, rng.uniform(30, 80), length)
        else:
            y[seg] = 0.0
        y[seg] = np.round(y[seg], 1)
        taken[seg] = True
        faults.append((kind, s, s + length))
    return y, sorted(faults, key=lambda f: f[1])


SETTINGS: dict[str, float] = {}  # --set: the detector's parameters for this run
ScoreFn = Callable[[npt.NDArray[np.int64], Arr], Arr]


def vectorized(make: Callable[[], Detector | DetectorBefore]) -> ScoreFn:
    def run(ts: npt.NDArray[np.int64], ys: Arr) -> Arr:
        return score_detector(make(), ts, ys)
    return run


def score_detector(det: Detector | DetectorBefore, ts: npt.NDArray[np.int64], ys: Arr) -> Arr:
    """All copies (rows of ys) through one vectorized Detector, reading by reading."""
    k, n = ys.shape
    rows = np.arange(k, dtype=np.int64)
    out = np.zeros((k, n))
    tcol = np.empty(k, np.int64)
    for i in range(n):
        tcol.fill(ts[i])
        out[:, i] = det.update(rows, ys[:, i], tcol)
    return out


def scalar(make: Callable[[], SpikeReference | EwmaZ]) -> ScoreFn:
    def run(ts: npt.NDArray[np.int64], ys: Arr) -> Arr:
        out = np.zeros(ys.shape)
        for j, y in enumerate(ys):
            d = make()
            upd = d.update
            for i, v in enumerate(y.tolist()):
                if not math.isnan(v):
                    out[j, i] = upd(v)
        return out
    return run


DETECTORS: dict[str, ScoreFn] = {
    "detector": vectorized(lambda: Detector(**SETTINGS)),
    "with_likelihood": vectorized(lambda: Detector(**{**SETTINGS, "likelihood": True})),
    # the detector as shipped before this one (pinned copy, 5dbccfc)
    "before": vectorized(DetectorBefore),
    "previous": scalar(SpikeReference),
    "ewma_z": scalar(EwmaZ),
}


def detections(scores: Arr, ts: npt.NDArray[np.int64], thr: float, cooldown_ms: int
               ) -> list[int]:
    out: list[int] = []
    until = -1
    for i in np.flatnonzero(scores >= thr).tolist():
        if ts[i] >= until:
            out.append(i)
            until = int(ts[i]) + cooldown_ms
    return out


def scaled_sigmoid(pos: float) -> float:
    """NAB: weight of a detection at relative position pos (−1 window start, 0 end)."""
    return -1.0 if pos > 3.0 else 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


def windows(faults: list[Fault], ts: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    n = ts.size
    out = []
    for _, s, e in faults:
        end = e + 3
        while end < n and ts[end] - ts[e - 1] < HOUR_MS:
            end += 1
        out.append((s, min(end, n)))
    return out


def judge(det: list[int], wins: list[tuple[int, int]], ts: npt.NDArray[np.int64]
          ) -> dict[str, float]:
    days = (int(ts[-1]) - int(ts[0])) / DAY_MS
    found: dict[int, int] = {}
    fp: list[int] = []
    raw = 0.0
    for i in det:
        w = next((j for j, (s, e) in enumerate(wins) if s <= i < e), None)
        if w is not None:
            if w not in found:
                found[w] = i
                s, e = wins[w]
                raw += A_TP * scaled_sigmoid(-(e - 1 - i) / max(e - s, 1))
            continue
        fp.append(i)
        prev = [j for j, (s, e) in enumerate(wins) if e <= i]
        if prev:
            s, e = wins[prev[-1]]
            raw += -A_FP * scaled_sigmoid((i - (e - 1)) / max(e - s, 1))
        else:
            raw += A_FP
    raw += A_FN * (len(wins) - len(found))
    null, perfect = A_FN * len(wins), A_TP * len(wins) * scaled_sigmoid(-1.0)
    delays = [(int(ts[i]) - int(ts[wins[w][0]])) / 60_000 for w, i in found.items()]
    within_h = sum(d <= 60 for d in delays)
    return {
        "recall": round(len(found) / len(wins), 3),
        "recall_1h": round(within_h / len(wins), 3),
        "delay_min_median": round(statistics.median(delays), 1) if delays else None,  # type: ignore[dict-item]
        "false_per_device_day": round(len(fp) / days, 4),
        "nab": round(100 * (raw - null) / (perfect - null), 1),
    }


def evaluate_trace(name: str, ts: npt.NDArray[np.int64], x: Arr, rng: np.random.Generator,
                   per_kind: int, thresholds: dict[str, list[float]], cooldown_ms: int,
                   detectors: list[str], factor: float = 1.0) -> dict[str, object]:
    copies, labels = [x], []
    for kind in FAMILIES:
        y, faults = inject(x, kind, rng, per_kind)
        copies.append(y)
        labels.append(faults)
    ys = np.vstack(copies) * factor
    days = (int(ts[-1]) - int(ts[0])) / DAY_MS
    out: dict[str, object] = {}
    for dname in detectors:
        scores = DETECTORS[dname](ts, ys)
        for thr in thresholds[dname]:
            key = f"{dname}@{thr}"
            clean = len(detections(scores[0], ts, thr, cooldown_ms)) / days
            res: dict[str, object] = {"clean_false_per_device_day": round(clean, 4)}
            for j, kind in enumerate(FAMILIES, 1):
                det = detections(scores[j], ts, thr, cooldown_ms)
                res[kind] = judge(det, windows(labels[j - 1], ts), ts)
            nabs = [r["nab"] for k, r in res.items() if isinstance(r, dict)]
            res["nab_mean"] = round(sum(nabs) / len(nabs), 1)
            out[key] = res
            print(f"{name}:{key}: clean {res['clean_false_per_device_day']}/device-day, "
                  f"nab {res['nab_mean']}; " + "; ".join(
                      f"{k} r={v['recall']} r1h={v['recall_1h']} d={v['delay_min_median']}"
                      f" fp={v['false_per_device_day']}"
                      for k, v in res.items() if isinstance(v, dict)), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--cooldown-min", type=float, default=60.0)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    # the likelihood variant only on request: it doubles the run's time and was
    # measured worse (bench/notes/anomaly_eval.md)
    ap.add_argument("--detectors", nargs="+", choices=list(DETECTORS),
                    default=[d for d in DETECTORS if d != "with_likelihood"])
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="detector parameters for this run (e.g. k_shift=1.5)")
    args = ap.parse_args(argv)
    SETTINGS.update({k: float(v) for k, v in (kv.split("=", 1) for kv in args.set)})
    result: dict[str, object] = {"seed": args.seed, "faults_per_kind": args.per_kind,
                                 "cooldown_min": args.cooldown_min,
                                 **dict.fromkeys(TRACES)}
    if not (args.data / "pm25").is_dir():
        print(f"skipped: no traces under {args.data / 'pm25'}", file=sys.stderr)
        emit("anomaly_eval", result, RESULT_KEYS)
        return 0
    shared = np.random.default_rng(args.seed)
    thresholds = {"detector": args.thresholds, "with_likelihood": [0.9],
                  "before": [0.9], "previous": [0.9], "ewma_z": [0.9]}
    for name in args.traces:
        load, factor, step_ms = TRACES[name]
        ts, x = load(args.data)
        if step_ms:
            ts, x = resample(ts, x, step_ms)
        # the two real traces draw their faults from one generator in turn (as every
        # earlier run did, so a seed means the same faults as before); the ×1000 trace
        # gets exactly the Beijing trace's faults, the resampled one its own
        rng = (shared if name in ("beijing_hourly", "sds011")
               else np.random.default_rng(args.seed if factor != 1.0 else [args.seed, 3]))
        result[name] = evaluate_trace(name, ts, x, rng, args.per_kind, thresholds,
                                      int(args.cooldown_min * 60_000), args.detectors,
                                      factor)
    emit("anomaly_eval", result, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
