"""Reading published by a device → alert event on MQTT, from 1,000 to 10,000 devices.

Real Mosquitto, real InfluxDB, the real collector process. Every device publishes one
reading per `--interval-s` (1 s by default; a county's devices report once a minute),
the fleet's readings spread evenly over the interval, each device on its own MQTT
connection (`orchestration.device_swarm`, QoS 1, outbox until PUBACK) in `--publishers`
processes. Each second after the first interval a few devices cross 150 µg/m³ (the rule
fires on the first reading above: `for: 0s`) and stay above for `HOLD_S`. Latency is from
the publish of the crossing reading (its batch handed to its connection) to the arrival
of its `org.airgrid.alert.firing` event, both on CLOCK_MONOTONIC. Runs the lifecycle
(SQLite outbox, grouping, channel worker) and, with `--reference`, also the collector
publishing transitions directly (`[alerting] enabled = false`), side by side; each side
runs in its own folder with fresh collector state (the devices' seqs start at 1 again).
The engine ticks on arrival (at most `--max-arrival-ticks` a second) and on its 0.5 s
timer. Also printed: the messages a second the publishers carried and the p99 lag from
a crossing reading's capture to its publish (a publisher falling behind shows there).
Last line: JSON {"devices", "interval_s", "messages_per_s", "alerts", "p50_ms",
"p99_ms", ...}.

    .venv/bin/python bench/alert_latency.py [--devices 1000] [--seconds 30] [--reference]
    .venv/bin/python bench/alert_latency.py --devices 10000 --interval-s 10 --seconds 60 \
        --publishers 2 --reference
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import Reading
from orchestration.device_swarm import SimDevice, Swarm, SwarmSettings, make_devices
from orchestration.services import InfluxDB, Mosquitto

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("devices", "interval_s", "seconds", "messages_per_s", "publish_lag_p99_ms",
               "alerts", "missing", "p50_ms", "p99_ms", "max_ms", "reference",
               "p99_ratio_vs_reference")
#: a side's figures in the result (its run prints more: publish rate, connect time, …)
SIDE_KEYS = ("alerts", "missing", "p50_ms", "p99_ms", "max_ms")
#: seconds a crossing device stays above the threshold
HOLD_S = 3.0
#: seconds the fleet may take to connect (10,000 CONNECTs, 100 in flight at once)
CONNECT_TIMEOUT_S = 300.0
#: seconds after the last reading for the last crossings' alerts to arrive
GRACE_S = 5.0

RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: latest
    above: 150
    clear_below: 135
    for: 0s
    severity: warning
"""


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


def reading_time_s(k: int, devices: int, interval_s: float) -> float:
    """Seconds into the run of the fleet's k-th reading: device k mod N at phase
    (k mod N)/N of each interval, so the readings are spread evenly over it."""
    return k * interval_s / devices


def first_reading_at(t_s: float, devices: int, interval_s: float) -> int:
    """The index of the fleet's first reading due at or after t_s."""
    return max(0, math.ceil(t_s * devices / interval_s - 1e-9))


class Plan:
    """Which readings cross 150 µg/m³: each second from `warmup_s` on, `crossings_per_s`
    devices whose reading is due that second go above it; a device stays above for
    `HOLD_S` and falls back below `clear_below` with its first reading after that.

    The hold is what keeps a crossing judged: a publisher that fell behind sends a
    device's readings in one batch, and a crossing with its fall-back in one batch (or one
    tick) never fires (`aggregate: latest`)."""

    def __init__(self, devices: int, interval_s: float, crossings_per_s: int, warmup_s: float,
                 rng: random.Random, mine: Callable[[int], bool] = lambda i: True) -> None:
        self.devices, self.interval_s, self.mine = devices, interval_s, mine
        self.crossings_per_s, self.warmup_s, self.rng = crossings_per_s, warmup_s, rng
        self.crossing: set[int] = set()  # reading indices that cross
        self.high: dict[int, float] = {}  # device above the threshold → since (s)
        self.planned_to = 0  # seconds planned so far

    def plan_until(self, t_s: float) -> None:
        while self.planned_to <= t_s:
            s = self.planned_to
            self.planned_to += 1
            if s < self.warmup_s:
                continue
            span = range(first_reading_at(s, self.devices, self.interval_s),
                         first_reading_at(s + 1, self.devices, self.interval_s))
            chosen: set[int] = set()
            for k in self.rng.sample(span, len(span)):
                if len(chosen) >= self.crossings_per_s:
                    break
                i = k % self.devices
                if self.mine(i) and i not in self.high and i not in chosen:
                    chosen.add(i)
                    self.crossing.add(k)

    def value(self, k: int) -> float:
        """PM2.5 of the fleet's k-th reading."""
        i, t = k % self.devices, reading_time_s(k, self.devices, self.interval_s)
        if k in self.crossing:
            self.crossing.discard(k)
            self.high[i] = t
            return round(200.0 + self.rng.random() * 50, 1)
        since = self.high.get(i)
        if since is not None:
            if t - since < HOLD_S:
                return 190.0
            del self.high[i]
        return round(30.0 + self.rng.random() * 20, 1)


@dataclass(frozen=True)
class FleetPart:
    """What one publisher process runs: devices i with i mod parts == part."""

    port: int
    devices: int
    part: int
    parts: int
    seconds: float
    interval_s: float
    crossings_per_s: int


async def drive_fleet(fp: FleetPart, started: Any) -> dict[str, Any]:
    """This part of the fleet on one event loop (`orchestration.device_swarm`: one MQTT
    connection per device, QoS 1, outbox until PUBACK). A crossing reading is timed as its
    batch is handed to its connection (CLOCK_MONOTONIC, which every process shares)."""
    mine = range(fp.part, fp.devices, fp.parts)
    fleet = make_devices([f"bench-{i:05d}" for i in mine], [f"127.0.0.1:{fp.port}"])
    by_index = dict(zip(mine, fleet, strict=True))
    waiting: dict[str, tuple[int, float]] = {}  # device → (crossing seq, captured at)
    crossings: list[tuple[str, float]] = []  # (device, published at)
    lags: list[float] = []

    def on_publish(d: SimDevice, batch: tuple[Reading, ...]) -> None:
        w = waiting.get(d.name)
        if w is not None and any(r.seq == w[0] for r in batch):
            now = time.monotonic()
            del waiting[d.name]
            lags.append((now - w[1]) * 1000)
            crossings.append((d.name, now))

    # A CONNACK may take long while thousands connect on a loaded machine: waiting for it
    # beats giving up after 5 s and connecting again (a reconnect storm of the fleet).
    swarm = Swarm(fleet, SwarmSettings(status=False, ack_timeout_s=60.0),
                  on_publish=on_publish)
    t_connect = time.monotonic()
    swarm.start()
    while swarm.connected() < len(fleet) and time.monotonic() - t_connect < CONNECT_TIMEOUT_S:
        await asyncio.sleep(0.2)
    connect_s = time.monotonic() - t_connect
    # every part is connected: the clock starts for all at once (waited for on a thread:
    # the loop keeps answering its connections' keepalives meanwhile)
    await asyncio.to_thread(started.wait)
    # the first interval warms the engine's arrays (every device's first reading): no
    # crossings yet
    plan = Plan(fp.devices, fp.interval_s, fp.crossings_per_s, max(3.0, math.ceil(fp.interval_s)),
                random.Random(fp.part), lambda i: i % fp.parts == fp.part)
    published_before = sum(d.published for d in fleet)
    start = time.monotonic()
    k = 0
    while (t := time.monotonic() - start) < fp.seconds:
        plan.plan_until(t)
        ts_ms = int(time.time() * 1000)
        upto = first_reading_at(t, fp.devices, fp.interval_s)
        while k < upto:
            d = by_index.get(k % fp.devices)
            if d is not None:
                crossing = k in plan.crossing
                seq = d.capture(ts_ms, plan.value(k))
                if crossing:
                    waiting[d.name] = (seq, time.monotonic())
            k += 1
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - start
    published = sum(d.published for d in fleet) - published_before
    # the last crossings leave
    grace_end = time.monotonic() + GRACE_S
    while waiting and time.monotonic() < grace_end:
        await asyncio.sleep(0.05)
    result = {"connected": swarm.connected(), "connect_s": round(connect_s, 1),
              "captured": sum(d.captured for d in fleet), "published": published,
              "elapsed_s": elapsed, "lags_ms": lags, "crossings": crossings,
              "unpublished_crossings": len(waiting), "left_in_outboxes": swarm.depth()}
    await swarm.stop()
    return result


def publish_part(fp: FleetPart, started: Any, results: Any) -> None:
    """A publisher process: its part of the fleet, its result on `results`."""
    results.put(asyncio.run(drive_fleet(fp, started)))


def match_alerts(crossings: list[tuple[str, float]], firings: list[tuple[str, float]]
                 ) -> tuple[list[float], int]:
    """Each crossing with the first firing event of its device that arrived after it
    (ms), and how many crossings got none."""
    arrivals: dict[str, list[float]] = {}
    for name, t in sorted(firings, key=lambda f: f[1]):
        arrivals.setdefault(name, []).append(t)
    latencies: list[float] = []
    missing = 0
    for name, t_pub in sorted(crossings, key=lambda c: c[1]):
        ts = arrivals.get(name, [])
        while ts and ts[0] < t_pub:
            ts.pop(0)  # an event before this crossing was published answers another one
        if ts:
            latencies.append((ts.pop(0) - t_pub) * 1000)
        else:
            missing += 1
    return latencies, missing


def run(root: Path, broker: Mosquitto, influx: InfluxDB, devices: int, seconds: float,
        lifecycle: bool, crossings_per_s: int, max_arrival_ticks: float, interval_s: float,
        publishers: int) -> dict[str, Any]:
    side = "lc" if lifecycle else "ref"
    db = f"bench_{side}_{int(time.time())}"
    influx.create_database(db)
    # A side's own folder: its collector-state (seqs, engine, quarantine) starts empty,
    # as the devices' seqs do. Shared, the second side dropped every reading as a repeat.
    workdir = root / side
    workdir.mkdir()
    (workdir / "rules.yaml").write_text(RULES)
    conf = workdir / "collector.toml"
    conf.write_text(
        f"[broker]\nport = {broker.port}\nclient_id = \"bench-{db}\"\n"
        f"[influx]\nurl = \"{influx.url}\"\ndatabase = \"{db}\"\n"
        "[batch]\nmax_wait_ms = 50\n"
        f"[rules]\nfiles = [\"{workdir / 'rules.yaml'}\"]\ntick_interval_s = 0.5\n"
        f"max_arrival_ticks_per_s = {max_arrival_ticks}\n"
        f"[alerting]\nenabled = {'true' if lifecycle else 'false'}\n"
        f"state_db = \"{workdir / (db + '.sqlite')}\"\n"
        "[alerting.ack]\nmqtt = false\n")
    log = (workdir / f"{db}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "--log-level", "WARNING",
                             "run", "--config", str(conf)], stdout=log, stderr=log)
    firings: list[tuple[str, float]] = []  # (device, arrived at), appended by paho's thread

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        ev = json.loads(msg.payload)
        if ev.get("type") == "org.airgrid.alert.firing":
            firings.append((ev["subject"], now))

    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("airgrid/v1/alerts/#", qos=1)
    watcher.loop_start()
    time.sleep(3)  # the collector connects and subscribes
    # Publishers in processes of their own (spawned: this one runs paho's thread): the
    # watcher's clock is not held up by their loops, and two cores can share them.
    mp = multiprocessing.get_context("spawn")
    started, results = mp.Barrier(publishers), mp.Queue()
    workers = [mp.Process(target=publish_part, args=(
        FleetPart(broker.port, devices, j, publishers, seconds, interval_s,
                  crossings_per_s // publishers + (j < crossings_per_s % publishers)),
        started, results)) for j in range(publishers)]
    try:
        for w in workers:
            w.start()
        try:
            parts = [results.get(timeout=2 * (CONNECT_TIMEOUT_S + seconds + GRACE_S))
                     for _ in workers]
        except queue.Empty:
            raise RuntimeError(f"a publisher process did not finish within "
                               f"{2 * (CONNECT_TIMEOUT_S + seconds + GRACE_S):.0f} s (the "
                               f"machine too busy to connect {devices} devices?)") from None
        for w in workers:
            w.join(30)
        crossings = [c for part in parts for c in part["crossings"]]
        # the last alerts arrive
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            if match_alerts(crossings, list(firings))[1] == 0:
                break
            time.sleep(0.1)
    finally:
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(20)
        watcher.disconnect()
        watcher.loop_stop()
        log.close()
        for w in workers:
            if w.is_alive():
                w.kill()
    lat, missing = match_alerts(crossings, list(firings))
    lags = sorted(x for part in parts for x in part["lags_ms"])
    elapsed = max(part["elapsed_s"] for part in parts)
    return {"alerts": len(lat), "missing": missing,
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
            "max_ms": round(max(lat), 1) if lat else None,
            "collector_alive": alive,
            "connected": sum(part["connected"] for part in parts),
            "connect_s": max(part["connect_s"] for part in parts),
            "captured": sum(part["captured"] for part in parts),
            "published_per_s": round(sum(part["published"] for part in parts) / elapsed),
            "publish_lag_p99_ms": round(percentile(lags, 0.99), 1) if lags else None,
            "unpublished_crossings": sum(part["unpublished_crossings"] for part in parts),
            "left_in_outboxes": sum(part["left_in_outboxes"] for part in parts)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--interval-s", type=float, default=1.0,
                   help="seconds between a device's readings, spread evenly over the fleet "
                        "(60 is a county's rate)")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="seconds of readings (crossings start after the first interval)")
    p.add_argument("--crossings-per-s", type=int, default=20)
    p.add_argument("--max-arrival-ticks", type=float, default=20.0,
                   help="[rules] max_arrival_ticks_per_s (0: tick on the timer only)")
    p.add_argument("--publishers", type=int, default=1,
                   help="publisher processes the fleet is split over (each one event loop)")
    p.add_argument("--reference", action="store_true",
                   help="also run without the lifecycle (direct events) for comparison")
    args = p.parse_args()
    if args.seconds <= max(3.0, math.ceil(args.interval_s)):
        p.error("--seconds must be longer than the warm-up (3 s or one interval)")
    with tempfile.TemporaryDirectory(prefix="alert-bench-") as tmp:
        work = Path(tmp)
        broker, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
        broker.start()
        influx.start()
        try:
            out: dict[str, Any] = {"devices": args.devices, "interval_s": args.interval_s,
                                   "seconds": args.seconds, "reference": None,
                                   "p99_ratio_vs_reference": None}
            if args.reference:
                ref = run(work, broker, influx, args.devices, args.seconds, False,
                          args.crossings_per_s, args.max_arrival_ticks, args.interval_s,
                          args.publishers)
                print("reference (no lifecycle):", json.dumps(ref), flush=True)
                out["reference"] = {k: ref[k] for k in SIDE_KEYS}
            res = run(work, broker, influx, args.devices, args.seconds, True,
                      args.crossings_per_s, args.max_arrival_ticks, args.interval_s,
                          args.publishers)
            print("lifecycle:", json.dumps(res), flush=True)
        finally:
            influx.stop()
            broker.stop()
    out.update({k: res[k] for k in SIDE_KEYS})
    out["messages_per_s"] = res["published_per_s"]
    out["publish_lag_p99_ms"] = res["publish_lag_p99_ms"]
    if args.reference and res["p99_ms"] and out["reference"]["p99_ms"]:
        out["p99_ratio_vs_reference"] = round(res["p99_ms"] / out["reference"]["p99_ms"], 2)
    emit("alert_latency", out, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
