"""Reading published by a device → alert event on MQTT, with 1,000 devices publishing.

Real Mosquitto, real InfluxDB, the real collector process. Every device publishes one
reading a second; each second a few devices cross 150 µg/m³ (the rule fires on the first
reading above: `for: 0s`) and earlier ones fall back. Latency is from the publish of the
crossing reading to the arrival of its `org.airgrid.alert.firing` event, both timed in
this process. Runs the lifecycle (SQLite outbox, grouping, channel worker) and, with
`--reference`, also the collector publishing transitions directly (`[alerting] enabled =
false`), side by side; each side runs in its own folder with fresh collector state (the
devices' seqs start at 1 again). The engine ticks on arrival (at most
`--max-arrival-ticks` a second) and on its 0.5 s timer. Last line: JSON {"devices",
"alerts", "p50_ms", "p99_ms", ...}.

    .venv/bin/python bench/alert_latency.py [--devices 1000] [--seconds 30] [--reference]
    .venv/bin/python bench/alert_latency.py --devices 10000 --crossings-per-s 100
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic
from orchestration.services import InfluxDB, Mosquitto

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("devices", "seconds", "alerts", "missing", "p50_ms", "p99_ms", "max_ms", "reference",
               "p99_ratio_vs_reference")

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


def run(root: Path, broker: Mosquitto, influx: InfluxDB, devices: int, seconds: float,
        lifecycle: bool, crossings_per_s: int, max_arrival_ticks: float) -> dict[str, Any]:
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
    crossed: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        ev = json.loads(msg.payload)
        if ev.get("type") != "org.airgrid.alert.firing":
            return
        with lock:
            t = crossed.pop(ev["subject"], None)
            if t is not None:
                latencies.append((now - t) * 1000)

    watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("airgrid/v1/alerts/#", qos=1)
    watcher.loop_start()
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(2000)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    time.sleep(3)  # the collector connects and subscribes

    names = [f"bench-{i:05d}" for i in range(devices)]
    high: set[str] = set()
    seq = dict.fromkeys(names, 0)
    rng = random.Random(1)
    start = time.monotonic()
    second = 0
    try:
        while time.monotonic() - start < seconds:
            # the first seconds warm up the engine's arrays: no crossings yet
            to_high = set(rng.sample([n for n in names if n not in high],
                                     crossings_per_s)) if second >= 3 else set()
            to_low = set(rng.sample(sorted(high), min(len(high), crossings_per_s)))
            slice_s = 1.0 / 10
            for k in range(10):
                t_slice = start + second + k * slice_s
                while time.monotonic() < t_slice:
                    time.sleep(0.002)
                for name in names[k::10]:
                    seq[name] += 1
                    if name in to_high:
                        value = 200.0 + rng.random() * 50
                    elif name in high and name not in to_low:
                        value = 190.0
                    else:
                        value = 30.0 + rng.random() * 20
                    r = Reading(seq=seq[name], ts=int(time.time() * 1000), sensor="pms5003",
                                pm2_5=round(value, 1))
                    payload = encode_up(UpBatch(v=SCHEMA_VERSION, device=name, boot="b",
                                                readings=(r,)))
                    if name in to_high:
                        with lock:
                            crossed[name] = time.monotonic()
                    pub.publish(up_topic(name), payload, qos=1)
            high = (high | to_high) - to_low
            second += 1
        time.sleep(3)  # the last alerts arrive
    finally:
        proc.terminate()
        proc.wait(20)
        pub.disconnect()
        pub.loop_stop()
        watcher.disconnect()
        watcher.loop_stop()
        log.close()
    with lock:
        missing = len(crossed)
        lat = list(latencies)
    return {"alerts": len(lat), "missing": missing,
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
            "max_ms": round(max(lat), 1) if lat else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--crossings-per-s", type=int, default=20)
    p.add_argument("--max-arrival-ticks", type=float, default=20.0,
                   help="[rules] max_arrival_ticks_per_s (0: tick on the timer only)")
    p.add_argument("--reference", action="store_true",
                   help="also run without the lifecycle (direct events) for comparison")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="alert-bench-") as tmp:
        work = Path(tmp)
        broker, influx = Mosquitto(work / "mosquitto"), InfluxDB(work / "influxdb")
        broker.start()
        influx.start()
        try:
            out: dict[str, Any] = {"devices": args.devices, "seconds": args.seconds,
                                   "reference": None, "p99_ratio_vs_reference": None}
            if args.reference:
                ref = run(work, broker, influx, args.devices, args.seconds, False,
                          args.crossings_per_s, args.max_arrival_ticks)
                print("reference (no lifecycle):", json.dumps(ref), flush=True)
                out["reference"] = ref
            res = run(work, broker, influx, args.devices, args.seconds, True,
                      args.crossings_per_s, args.max_arrival_ticks)
            print("lifecycle:", json.dumps(res), flush=True)
        finally:
            influx.stop()
            broker.stop()
    out.update(res)
    if args.reference and res["p99_ms"] and out["reference"]["p99_ms"]:
        out["p99_ratio_vs_reference"] = round(res["p99_ms"] / out["reference"]["p99_ms"], 2)
    emit("alert_latency", out, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
