"""Report rendering for a county of 1,000 devices (target: under 10 s).

A day of hourly means per device in 40 townships (`readings_hourly`, what the report
reads; the day before too, for the change column) is written to a real InfluxDB 1.x, then
`airgrid-report daily … --out X.pdf` runs as a fresh process, as the 07:00 timer runs it
(imports, queries, computation, PDF with Noto Sans CJK embedded), and its wall time is
taken; in-process phases (query+compute, render) are timed beside it. The reference in
the same run is a county of 100 devices; runs are interleaved. The font cut is cached on
disk between runs (as on a real host): "cold" is the first run with an empty cache.
Last line: one JSON object.

    python bench/report_render.py [--devices 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from collector.aggregates import HourlyAggregates
from collector.line_protocol import tag_set
from orchestration.services import InfluxDB
from report import build, render
from report.period import TZ, day

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("cold_font_cache_cli_wall_s", "cold_font_cache_cli_cpu_s", "load_average_1min",
               "cores", "county", "reference", "ratio", "cpu_under_10s")

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 25)
EPISODE = {"乡镇03", "乡镇07"}


def pm25(device: int, town: str, ts_ms: int) -> float:
    """A daily cycle per device; the episode townships rise by 140 from 14:00 to 20:00."""
    h = dt.datetime.fromtimestamp(ts_ms / 1000, TZ).hour
    v = 40 + 15 * math.sin((h - 6) / 24 * 2 * math.pi) + device % 7
    return round(v + (140 if town in EPISODE and 14 <= h < 20 else 0), 1)


def write(url: str, db: str, lines: list[str]) -> None:
    for i in range(0, len(lines), 20_000):
        body = gzip.compress("\n".join(lines[i:i + 20_000]).encode(), 1)
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data=body,
                                     headers={"Content-Encoding": "gzip"})
        urllib.request.urlopen(req, timeout=120).close()


def populate(influx: InfluxDB, db: str, devices: int) -> None:
    """Hourly aggregates for the day and the day before (one reading per device every
    5 minutes reduced by the collector's own HourlyAggregates)."""
    influx.create_database(db)
    fleet = [(i, f"d{i:04d}", f"乡镇{i % 40:02d}") for i in range(devices)]
    for d in (DAY - dt.timedelta(days=1), DAY):
        agg = HourlyAggregates()
        start = day(d).start_ms
        ts = list(range(start, start + 86_400_000, 300_000))
        for i, dev, town in fleet:
            col = [pm25(i, town, t) for t in ts]
            agg.add(dev, ts, [col, [v * 1.4 for v in col]])
        tags = {dev: tag_set({"device": dev, "township": town, "site": f"{town}站{i}",
                              "grid": f"g{i % 9}"}) for i, dev, town in fleet}
        write(influx.url, db, agg.lines(tags))


def one(cfg: Path, out: Path) -> tuple[float, float]:
    """In-process: (query + compute, render) seconds."""
    t0 = time.perf_counter()
    r = build.build(cfg, day(DAY))
    t1 = time.perf_counter()
    render.write(r, "pdf", out, "zh", "基准县", build.colors("hj633-2026"))
    return t1 - t0, time.perf_counter() - t1


def cli(cfg: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """A fresh `airgrid-report daily` process: (wall, CPU) seconds. CPU (user + system)
    is the figure that does not depend on how many other jobs share the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "report.cli", "daily", "--date", DAY.isoformat(),
                    "--config", str(cfg), "--out", str(out), "--county", "基准县"],
                   check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--reference", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        influx = InfluxDB(Path(tmp) / "influx")
        influx.start()
        try:
            cfgs = {}
            for n in (args.reference, args.devices):
                populate(influx, f"c{n}", n)
                cfg = Path(tmp) / f"c{n}.toml"
                cfg.write_text(f'[influx]\nurl = "{influx.url}"\ndatabase = "c{n}"\n'
                               "[alerting]\nenabled = false\n", encoding="utf-8")
                cfgs[n] = cfg
            env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache"),
                   }
            env.pop("CACHE_DIRECTORY", None)
            os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
            cold = cli(cfgs[args.devices], Path(tmp) / "cold.pdf", env)
            walls: dict[int, list[tuple[float, float]]] = {n: [] for n in cfgs}
            phases: dict[int, list[tuple[float, float]]] = {n: [] for n in cfgs}
            for _ in range(args.runs):  # interleaved: both see the same machine load
                for n, cfg in cfgs.items():
                    walls[n].append(cli(cfg, Path(tmp) / f"r{n}.pdf", env))
                    phases[n].append(one(cfg, Path(tmp) / f"p{n}.pdf"))
        finally:
            influx.stop()
    result: dict[str, object] = {"cold_font_cache_cli_wall_s": round(cold[0], 2),
                                 "cold_font_cache_cli_cpu_s": round(cold[1], 2),
                                 "load_average_1min": round(os.getloadavg()[0], 1),
                                 "cores": os.cpu_count()}
    for side, n in (("reference", args.reference), ("county", args.devices)):
        w = statistics.median(a for a, _ in walls[n])
        c = statistics.median(b for _, b in walls[n])
        q = statistics.median(a for a, _ in phases[n])
        r = statistics.median(b for _, b in phases[n])
        result[side] = {"devices": n, "cli_wall_s": round(w, 2), "cli_cpu_s": round(c, 2),
                                  "query_compute_s": round(q, 2), "render_pdf_s": round(r, 2)}
        print(f"{n:5d} devices: CLI {w:.2f} s wall, {c:.2f} s CPU; in-process "
              f"query+compute {q:.2f} s, render {r:.2f} s", file=sys.stderr)
    big = statistics.median(b for _, b in walls[args.devices])
    small = statistics.median(b for _, b in walls[args.reference])
    result["ratio"] = round(big / small, 2) if small else None
    result["cpu_under_10s"] = big < 10
    emit("report_render", result, RESULT_KEYS)


if __name__ == "__main__":
    main()
