"""`airgrid-rules`: AQI and NowCast calculators, rule file check and unit tests, and the
anomaly detector run over a CSV series."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from airgrid.cli_support import cli_main, json_dumps, new_parser
from alert_rules import aqi
from alert_rules.anomaly import Detector
from alert_rules.anomaly_onsets import Onsets, OnsetScores
from alert_rules.nowcast import nowcast


def _num(text: str) -> float | None:
    """A concentration from the command line; None for null/missing."""
    if text.strip().lower() in ("null", "none", "nan", "_", ""):
        return None
    return float(text)


def _cmd_aqi(args: argparse.Namespace) -> int:
    std = aqi.get(args.standard)
    bad = 0
    for i, text in enumerate(args.conc, 1):
        try:
            c = _num(text)
            if c is None or not math.isfinite(c) or c < 0:
                raise ValueError("expected a finite concentration >= 0")
        except ValueError as exc:
            print(f"error: argument {i} {text!r}: {exc}", file=sys.stderr)
            bad += 1
            continue
        index = float(std.iaqi(args.pollutant, [c])[0])
        used = float(std.concentration(args.pollutant, [c])[0])
        cat = std.category(index)
        print(json_dumps({
            "concentration": c, "concentration_used": used,
            "aqi": None if math.isnan(index) else int(index),
            "category": cat.en if cat else None, "category_zh": cat.zh if cat else None,
            "color": cat.color if cat else None, "standard": std.id,
            "standard_name": std.name,
            "pollutant": args.pollutant,
        }, ensure_ascii=False))
    return 1 if bad else 0


def _cmd_nowcast(args: argparse.Namespace) -> int:
    if not 1 <= len(args.values) <= 12:
        print(f"error: expected 1 to 12 hourly values, got {len(args.values)}", file=sys.stderr)
        return 2
    try:
        vals = [_num(v) for v in args.values]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    hours = [np.nan if v is None else v for v in reversed(vals)]  # newest first
    hours += [np.nan] * (12 - len(hours))
    nc = float(nowcast(hours)[0])
    if math.isnan(nc):
        print(json_dumps({"nowcast": None, "aqi": None}))
        return 0
    index = float(aqi.get("us-epa-2024").iaqi("pm2_5", [nc])[0])
    print(json_dumps({"nowcast": round(nc, 1), "aqi": int(index)}))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError, check_file, load_rules

    bad = 0
    for f in args.files:
        try:
            errors = check_file(f)
        except RuleFileError as exc:
            errors = [exc]
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        bad += len(errors)
        if not errors:
            print(f"{f}: ok ({len(load_rules(f))} rules)")
    return 1 if bad else 0


def _cmd_test(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError
    from alert_rules.ruletest import run_file

    failed = 0
    for f in args.files:
        try:
            checks, failures = run_file(f)
        except RuleFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for fail in failures:
            print(f"FAIL {fail}", file=sys.stderr)
        failed += len(failures)
        print(f"{f}: {checks - len(failures)}/{checks} checks passed")
    return 1 if failed else 0


def parse_timestamp(text: str) -> int | None:
    """Epoch ms of an ISO 8601 time (naive = UTC) or of epoch seconds / ms; None if
    neither."""
    t = text.strip()
    try:
        x = float(t)
    except ValueError:
        try:
            d = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        return int(d.timestamp() * 1000)
    if not math.isfinite(x):
        return None
    return int(x if abs(x) >= 1e11 else x * 1000)  # seconds until the year 5138


def score_rows(rows: Iterable[tuple[str, str]], detector: Detector | None = None,
               onsets: Onsets | None = None
               ) -> Iterator[tuple[str, str, float | None, str | None]]:
    """Stream a series through the detector: (timestamp, value, score, error) per row.
    The score is the detector's where the reading opens an anomaly and 0 where it only
    continues one (`alert_rules.anomaly_onsets`: what the anomaly rule alerts on).
    A missing value scores 0 (no evidence); a value or time that cannot be read is
    reported and its row gets no score."""
    scorer = OnsetScores(detector, onsets)
    row0 = np.zeros(1, np.int64)
    for i, (ts, text) in enumerate(rows, 2):
        t = parse_timestamp(ts)
        if t is None:
            yield ts, text, None, f"line {i}: timestamp {ts!r} is neither ISO 8601 nor epoch"
            continue
        if not text.strip():
            yield ts, text, 0.0, None
            continue
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            yield ts, text, None, f"line {i}: value {text!r} is not a finite number"
            continue
        score = scorer.update(row0, np.array([x]), np.array([t], np.int64))
        yield ts, text, float(score[0]), None


def _cmd_score(args: argparse.Namespace) -> int:
    bad = 0
    try:
        with args.csv.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip().lstrip("\ufeff") for h in header[:2]] \
                    != ["timestamp", "value"]:
                print(f"error: {args.csv}:1: expected the header `timestamp,value`",
                      file=sys.stderr)
                return 2
            out = csv.writer(sys.stdout, lineterminator="\n")
            out.writerow(["timestamp", "value", "anomaly_score"])
            rows = ((r[0], r[1] if len(r) > 1 else "") for r in reader if r)
            for ts, v, score, err in score_rows(rows):
                if err is not None:
                    print(f"error: {args.csv}: {err}", file=sys.stderr)
                    bad += 1
                out.writerow([ts, v, "" if score is None else f"{score:.4f}"])
    except UnicodeDecodeError as exc:
        print(f"error: {args.csv}: not UTF-8 ({exc.reason} at byte {exc.start}); save it as "
              "UTF-8 (Excel: CSV UTF-8)", file=sys.stderr)
        return 2
    except (OSError, csv.Error) as exc:
        print(f"error: {args.csv}: {exc}", file=sys.stderr)
        return 2
    if bad:
        print(f"error: {args.csv}: {bad} rows could not be scored", file=sys.stderr)
    return 1 if bad else 0


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = new_parser(prog="airgrid-rules", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("aqi", help="IAQI and category per concentration (µg/m³)")
    p.add_argument("--standard", default=aqi.DEFAULT_STANDARD, choices=sorted(aqi.standards()))
    p.add_argument("--pollutant", default="pm2_5", choices=["pm2_5", "pm10"])
    p.add_argument("conc", nargs="+")
    p.set_defaults(func=_cmd_aqi)
    p = sub.add_parser("nowcast", help="EPA NowCast of hourly PM2.5, oldest first")
    p.add_argument("values", nargs="+", help="µg/m³ per hour, oldest first; null = missing")
    p.set_defaults(func=_cmd_nowcast)
    p = sub.add_parser("check", help="validate rule files")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("test", help="run rule unit test files")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_cmd_test)
    p = sub.add_parser("score", help="anomaly score of each reading of a series",
                       description="Streams a CSV `timestamp,value` (ISO 8601 or epoch "
                       "seconds/ms) to stdout as `timestamp,value,anomaly_score`, one row "
                       "per input row, score in 0..1 (empty when the row cannot be read; "
                       "0 for a missing value). A reading scores where it opens an "
                       "anomaly and 0 where it continues one that has already scored as "
                       "high, as the anomaly rule alerts once per episode. Exit 1 if any "
                       "row could not be read, 2 if the file cannot.")
    p.add_argument("--csv", type=Path, required=True, help="columns timestamp,value")
    p.set_defaults(func=_cmd_score)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
