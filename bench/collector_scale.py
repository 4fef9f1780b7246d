"""One collector for a large fleet: bounded state, and ingest that never stalls.

A registry of `--devices` devices (CSV, generated), of which a tenth report each
simulated minute with the readings of the minutes since their last report (so every
device reports every ten minutes), replayed faster than real time: the readings' clock
starts `--sim-minutes` (plus a margin) in the past and reaches the present at the end, so
hours roll over, and the hourly retention runs, at the simulated pace. Half-way through,
the registry file is rewritten with `--reload-changed` of its rows changed (a reload).

Real Mosquitto, InfluxDB 1.x and `python -m collector.cli run`. Ingest pauses are
measured from outside: a probe publishes an invalid message every `--probe-ms`; the
collector's pipeline thread dead-letters it the moment it takes it, so the longest time
between two dead letters is the longest the pipeline thread took nothing in
(`max_ingest_pause_ms`; a backlog in the broker delays every probe alike and does not
count, its delay is `max_probe_latency_ms`).

Every `--sample-minutes` of simulated time the sizes of the stores are sampled (the
collector's `airgrid_collector_store_entries` gauges, state.db on disk, RSS); the table
goes to stderr and into the JSON. Last line: one JSON object with `devices`, `rss_mb`
(peak), `cpu_pct` (collector CPU over the run, 100 = one core), `max_ingest_pause_ms`,
`state_db_mb`, `snapshot_ms` (the engine snapshot of this fleet, timed in this process
with the same rules), `lost` (readings sent and not in InfluxDB), and more.

    .venv/bin/python bench/collector_scale.py              # 100,000 devices, 30 sim minutes
    .venv/bin/python bench/collector_scale.py --quick      # about a minute
    .venv/bin/python bench/collector_scale.py --devices 20000 --sim-minutes 240 \\
        --minute-s 1.5                                     # four hours: the flat state.db
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import TypedDict

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from orchestration.services import InfluxDB, Mosquitto, QueryError, free_port

# Run as `python bench/X.py`, Python puts bench/ first on sys.path (see bench/rules.py).
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("devices", "rss_mb", "rss_end_mb", "cpu_pct", "max_ingest_pause_ms",
               "pause_around_reload_ms", "max_probe_latency_ms", "longest_pauses",
               "reload_at_s", "probes_unanswered", "state_db_mb", "snapshot_ms",
               "snapshot_mb", "lost", "readings", "stored_in_influx", "sim_minutes",
               "real_s_per_sim_minute", "drained_s_after_end", "startup_s", "check_config_s",
               "reload_parse_s", "final", "samples", "load")

READING = (
    '{{"seq":{seq},"ts":{ts},"sensor":"pms5003","pm1_0":{a}.0,"pm2_5":{b}.0,"pm10":{c}.0,'
    '"pm1_0_cf1":{a}.0,"pm2_5_cf1":{b}.0,"pm10_cf1":{c}.0,"n0_3":{n},"n0_5":300,'
    '"n1_0":90,"n2_5":12,"n5_0":3,"n10":1}}'
)
#: rules without the deadman: the readings' clock runs behind the wall clock the engine
#: ticks by, so a deadman would call the whole fleet silent (its cost at scale is the
#: engine's own benchmark, bench/rules.py)
RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: mean
    window: 10m
    above: 150
    clear_below: 135
    for: 10m
    severity: warning
  - name: pm25_out_of_range
    kind: out_of_range
    field: pm2_5
    min: 0
    max: 1000
    severity: warning
"""
MINUTE_MS = 60_000
#: the collector's stores sampled during the run (`airgrid_collector_store_entries`)
SAMPLED_STORES = ("dedup_keys", "device_health", "hourly_hours", "tag_cache",
                  "engine_devices", "seqs_rows", "hourly_rows")


class Sample(TypedDict):
    """The stores' sizes at one simulated minute (a row of `samples` in the last line)."""

    sim_min: int
    state_db_mb: float
    rss_mb: int
    stores: dict[str, float]  # store → entries, flattened into the row in the last line
    stored: float  # readings stored so far


def sample_row(sample: Sample) -> dict[str, float]:
    """A sample as the table and the last line have it: the stores between the RSS and
    the readings stored."""
    return {"sim_min": sample["sim_min"], "state_db_mb": sample["state_db_mb"],
            "rss_mb": sample["rss_mb"], **sample["stores"], "stored": sample["stored"]}


def device_id(i: int) -> str:
    return f"cs-{i:06d}"


def registry_csv(devices: int, changed: int = 0, seed: int = 1) -> str:
    """The fleet as the county keeps it; `changed` rows get a new site (a reload)."""
    rng = random.Random(seed)
    out = ["id,name,site,township,grid,lat,lon,sensor,link,calibration,contacts"]
    moved = set(rng.sample(range(devices), changed)) if changed else set()
    for i in range(devices):
        t = i % 300
        site = f"site-{i}" + ("-moved" if i in moved else "")
        out.append(f"{device_id(i)},站点{i},{site},乡镇{t},G-{t}-{i % 40},"
                   f"{30 + (i % 1000) / 1000:.4f},{114 + (i // 1000) / 1000:.4f},pms5003,"
                   f"{'cellular' if i % 7 == 0 else 'wired'},"
                   f"{'linear;slope=0.9;intercept=1' if i % 5 == 0 else ''},"
                   f"网格员{t}:+86139{i:08d}")
    return "\n".join(out) + "\n"


def payload(dev: int, first_seq: int, first_ts: int, n: int) -> bytes:
    body = ",".join(READING.format(seq=first_seq + k, ts=first_ts + k * MINUTE_MS,
                                   a=(b := 10 + (dev * 13 + first_seq + k) % 120) // 2, b=b,
                                   c=b + 15, n=1000 + b) for k in range(n))
    return f'{{"v":1,"device":"{device_id(dev)}","boot":"b","readings":[{body}]}}'.encode()


def publisher(port: int, devices: range, minutes: int, every: int, minute_s: float,
              t0: float, base_ms: int, sent: Synchronized[int]) -> None:
    """Device i reports in simulated minutes m with m % every == i % every, carrying the
    readings of the `every` minutes up to m (one a minute, seq = minute + 1); the reports
    of a minute are spread evenly over it."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"scale-pub-{devices.start}")
    c.max_inflight_messages_set(500)
    acked = [0]
    cond = threading.Condition()

    def on_publish(*_: object) -> None:
        with cond:
            acked[0] += 1
            cond.notify()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    n = pub = 0
    for m in range(minutes):
        # spread over the minute, as a fleet's reports are: a burst at its start would
        # queue thousands of messages between two probes, and the probe would time the
        # backlog instead of a pause
        due = [dev for dev in devices if dev % every == m % every]
        for i, dev in enumerate(due):
            if i % 20 == 0:
                wait = t0 + (m + 0.95 * i / len(due)) * minute_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            first = max(0, m - every + 1)  # the minutes since its last report
            c.publish(f"airgrid/v1/dev/{device_id(dev)}/up",
                      payload(dev, first + 1, base_ms + first * MINUTE_MS, m - first + 1),
                      qos=1)
            n += m - first + 1
            pub += 1
            with cond:  # bound what paho holds in memory
                while pub - acked[0] > 5000:
                    cond.wait(0.5)
        with sent.get_lock():
            sent.value = n
    with cond:
        while acked[0] < pub:
            cond.wait(0.5)
    c.loop_stop()
    c.disconnect()


class Probe:
    """Invalid messages every `every_s`; the time each takes to come back as a dead letter
    is how long the collector's pipeline thread was busy elsewhere."""

    def __init__(self, port: int, every_s: float) -> None:
        self.every_s = every_s
        self.sent: dict[int, float] = {}
        self.latency: list[tuple[float, float]] = []  # (sent at, seconds to dead letter)
        self.arrivals: list[float] = []
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id="scale-probe")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("airgrid/v1/deadletter", qos=0)
        self.c.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        # a dead letter is a JSON object; only the probe's own are of interest
        if not isinstance(body, dict) or body.get("topic") != "airgrid/v1/dev/scale-probe/up":
            return
        raw = base64.b64decode(body["payload_b64"])
        k = int(raw.split()[1])
        at = self.sent.pop(k, None)
        self.arrivals.append(time.monotonic())
        if at is not None:
            self.latency.append((at, time.monotonic() - at))

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(self.every_s):
            k += 1
            self.sent[k] = time.monotonic()
            self.c.publish("airgrid/v1/dev/scale-probe/up", f"probe {k}".encode(), qos=0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(1.0)
        self.c.loop_stop()
        self.c.disconnect()

    def max_latency_ms(self) -> float:
        return round(max((s for _, s in self.latency), default=0.0) * 1000, 1)

    def max_pause_ms(self, since: float = 0.0, until: float = float("inf")) -> float:
        """The longest time between two dead letters (ending in [since, until])."""
        a = self.arrivals
        gaps = [a[i] - a[i - 1] for i in range(1, len(a)) if since <= a[i] <= until]
        return round(max(gaps, default=0.0) * 1000, 1)

    def pauses(self, top: int = 5) -> list[tuple[float, float]]:
        """The longest gaps: (seconds into the run when it ended, ms)."""
        a = self.arrivals
        gaps = sorted(((a[i] - a[i - 1], a[i]) for i in range(1, len(a))), reverse=True)
        return [(round(at - a[0], 1), round(g * 1000)) for g, at in gaps[:top]]

    def unanswered(self) -> int:
        return len(self.sent)


class ProvinceInfluxDB(InfluxDB):
    """InfluxDB 1.x set up as docs/province.md says for more than 100,000 devices: no cap
    on a tag's values (`max-values-per-tag`, 100,000 by default; every device has its own
    `site`, so a reload that moves devices to new sites would pass it)."""

    def _command(self) -> list[str]:
        cmd = super()._command()
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[data]\n", "[data]\n  max-values-per-tag = 0\n"))
        return cmd


def scrape(port: int, timeout: float = 60.0) -> str:
    """/metrics; at 100,000 devices the per-device completeness series make it large."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        body: bytes = r.read()
    return body.decode()


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def proc_stats(pid: int) -> tuple[float, float, float]:
    """(RSS MB, peak RSS MB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss, hwm = status_kb(status, "VmRSS") / 1024, status_kb(status, "VmHWM") / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, hwm, cpu


def status_kb(status: str, field: str) -> int:
    """A kB field of /proc/PID/status (every Linux process has VmRSS and VmHWM)."""
    m = re.search(rf"{field}:\s+(\d+)", status)
    if m is None:
        raise RuntimeError(f"no {field} in /proc/PID/status")
    return int(m.group(1))


def db_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 1e6


def snapshot_ms(devices: int, rules: Path) -> tuple[float, float]:
    """The engine snapshot of this fleet with these rules, every device with readings."""
    from alert_rules.engine import Engine
    from alert_rules.registry import Device
    from alert_rules.rulefile import load_rules

    ids = [device_id(i) for i in range(devices)]
    engine = Engine(load_rules(rules), registry=[
        Device(id=d, township="t", grid="g", lat=30.0, lon=114.0) for d in ids])
    now = int(time.time() * 1000)
    for k in range(10):
        engine.ingest(ids, [now - (10 - k) * MINUTE_MS] * devices, {"pm2_5": [40.0] * devices})
    engine.tick(now)
    t = time.perf_counter()
    blob = engine.snapshot()
    return round((time.perf_counter() - t) * 1000, 1), round(len(blob) / 1e6, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000, help="registered devices")
    ap.add_argument("--every", type=int, default=10,
                    help="each device reports every this many simulated minutes")
    ap.add_argument("--sim-minutes", type=int, default=30, help="simulated minutes")
    ap.add_argument("--minute-s", type=float, default=8.0,
                    help="real seconds per simulated minute")
    ap.add_argument("--sample-minutes", type=int, default=5,
                    help="sample the stores every this many simulated minutes")
    ap.add_argument("--reload-changed", type=float, default=0.01,
                    help="share of registry rows changed by the mid-run reload")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--probe-ms", type=float, default=50.0)
    ap.add_argument("--hourly-retention-s", type=int, default=7200,
                    help="[retention] hourly_s of the collector (the minimum, 2 h)")
    ap.add_argument("--drain-s", type=float, default=900,
                    help="after the last publish, wait at most this long for the collector "
                         "to store the backlog")
    ap.add_argument("--stall-stacks", type=Path, default=None,
                    help="run the collector under bench.stall_sampler, its report here")
    ap.add_argument("--quick", action="store_true",
                    help="about a minute: 10,000 devices, 12 simulated minutes at 3 s each")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (data, logs) instead of removing it")
    a = ap.parse_args()
    if a.quick:
        a.devices, a.sim_minutes, a.minute_s, a.sample_minutes = 10_000, 12, 3.0, 3
    margin_min = 5
    now_ms = int(time.time() * 1000)
    run_real_s = a.sim_minutes * a.minute_s
    # the readings' clock reaches the present when the run ends
    base_ms = now_ms + int(run_real_s * 1000) - (a.sim_minutes + margin_min) * MINUTE_MS
    base_ms -= base_ms % MINUTE_MS

    work = Path(tempfile.mkdtemp(prefix="airgrid-scale-"))
    reg = work / "registry.csv"
    t = time.perf_counter()
    reg.write_text(registry_csv(a.devices), encoding="utf-8")
    print(f"registry: {a.devices} devices, {reg.stat().st_size / 1e6:.1f} MB "
          f"({time.perf_counter() - t:.1f} s to write)", file=sys.stderr)
    rules = work / "rules.yaml"
    rules.write_text(RULES)
    broker, influx = Mosquitto(work / "mosquitto"), ProvinceInfluxDB(work / "influxdb")
    broker.start()
    influx.start()
    influx.create_database("scale")
    mport = free_port()
    state = work / "state" / "state.db"
    cfg = work / "collector.toml"
    cfg.write_text(
        f"[broker]\nport = {broker.port}\nmax_unacked = 2000\n"
        f'[influx]\nurl = "{influx.url}"\ndatabase = "scale"\n'
        f'[state]\nfile = "{state}"\n[spool]\ndir = "{work / "spool"}"\n'
        f'[registry]\nfile = "{reg}"\nreload_check_s = 1.0\n'
        f'[rules]\nfiles = ["{rules}"]\nlate_after_s = 864000\n'
        f"[retention]\nhourly_s = {a.hourly_retention_s}\n"
        f'[alerting]\nstate_db = "{work / "alerting.sqlite"}"\n'
        f"[metrics]\nport = {mport}\n")
    t = time.perf_counter()
    check = subprocess.run([sys.executable, "-m", "collector.cli", "check-config", str(cfg)],
                           capture_output=True, text=True, timeout=300)
    check_config_s = round(time.perf_counter() - t, 2)
    if check.returncode != 0:
        print(check.stdout, check.stderr, file=sys.stderr)
        broker.stop()  # nothing else started yet: leave no service behind
        influx.stop()
        return 2
    log = (work / "collector.log").open("wb")
    started = time.monotonic()
    run = ["-m", "collector.cli"] if a.stall_stacks is None else [
        str(Path(__file__).with_name("stall_sampler.py")), "--out",
        str(a.stall_stacks.resolve()), "collector.cli"]
    coll = subprocess.Popen([sys.executable, *run, "--log-level", "INFO", "run", "--config",
                             str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=work)
    procs: list[mp.Process] = []
    probe: Probe | None = None
    samples: list[Sample] = []
    try:
        while True:
            try:
                scrape(mport, 5)
                break
            except OSError:
                if time.monotonic() - started > 300 or coll.poll() is not None:
                    raise RuntimeError((work / "collector.log").read_text()[-3000:]) from None
                time.sleep(0.1)
        startup_s = round(time.monotonic() - started, 2)
        time.sleep(1.0)  # subscribed
        probe = Probe(broker.port, a.probe_ms / 1000)
        probe.start()
        cpu0, wall0 = proc_stats(coll.pid)[2], time.monotonic()
        t0 = time.monotonic() + 1.0
        share = -(-a.devices // a.publishers)
        counters = [mp.Value("q", 0) for _ in range(0, a.devices, share)]
        procs = [mp.Process(target=publisher, args=(
            broker.port, range(i, min(i + share, a.devices)), a.sim_minutes, a.every,
            a.minute_s, t0, base_ms + margin_min * MINUTE_MS, counters[k]))
            for k, i in enumerate(range(0, a.devices, share))]
        for p in procs:
            p.start()
        reload_at = t0 + a.sim_minutes * a.minute_s / 2
        reloaded: tuple[float, float] | None = None
        next_sample = t0
        minute = 0
        while any(p.is_alive() for p in procs):
            nowm = time.monotonic()
            if reloaded is None and nowm >= reload_at:
                tmp = reg.with_suffix(".new")
                tmp.write_text(registry_csv(a.devices, int(a.devices * a.reload_changed)),
                               encoding="utf-8")
                os.replace(tmp, reg)
                reloaded = (nowm, 0.0)
            if nowm >= next_sample:
                try:
                    text = scrape(mport)
                except OSError as exc:  # a slow scrape loses a sample, not the run
                    print(f"sample skipped: {exc}", file=sys.stderr)
                    minute += a.sample_minutes
                    next_sample = t0 + minute * a.minute_s
                    continue
                rss, hwm, _ = proc_stats(coll.pid)
                sample: Sample = {
                    "sim_min": minute, "state_db_mb": round(db_mb(state), 2),
                    "rss_mb": round(rss),
                    "stores": {store: metric(text, "airgrid_collector_store_entries",
                                             f'store="{store}"') for store in SAMPLED_STORES},
                    "stored": metric(text, "airgrid_collector_readings_stored_total")}
                samples.append(sample)
                print(" ".join(f"{k}={v:g}" for k, v in sample_row(sample).items()),
                      file=sys.stderr)
                minute += a.sample_minutes
                next_sample = t0 + minute * a.minute_s
            time.sleep(0.1)
        for p in procs:
            p.join()
        total = sum(c.value for c in counters)
        deadline = time.monotonic() + a.drain_s
        while True:  # stored counts the spool too: wait for it to be replayed as well
            text = scrape(mport)
            if (metric(text, "airgrid_collector_readings_stored_total") >= total
                    and metric(text, "airgrid_collector_spool_depth_lines") == 0):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        drained_s = round(time.monotonic() - t0 - run_real_s, 1)
        time.sleep(3 * 10)  # the gauges of the checkpoint are counted every 30 s
        text = scrape(mport)
        rss, hwm, cpu1 = proc_stats(coll.pid)
        cpu_pct = round((cpu1 - cpu0) / (time.monotonic() - wall0) * 100, 1)
        final = {store: metric(text, "airgrid_collector_store_entries", f'store="{store}"')
                 for store in ("dedup_keys", "hourly_hours", "seqs_rows", "hourly_rows")}
        for reason in ("slow", "down", "queued"):  # batches acked from the spool, and why
            final[f"spooled_{reason}"] = metric(
                text, "airgrid_collector_spooled_batches_total", f'reason="{reason}"')
        probe.stop()
        coll.send_signal(signal.SIGTERM)
        coll.wait(120)
        try:
            series = influx.series("SELECT count(seq) FROM readings WHERE device =~ /^cs-/",
                                   db="scale")
        except QueryError:  # counted as none stored: every reading shows as lost
            series = []
        in_db = int(series[0].values[0][1]) if series else 0
        logtext = (work / "collector.log").read_text(errors="replace")
        parse = re.search(r"registry reloaded: \d+ devices \(parsed in ([0-9.]+) s", logtext)
        snap_ms, snap_mb = snapshot_ms(a.devices, rules)
        state_mb = round(db_mb(state), 2)  # before the work directory goes
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if probe is not None and probe._thread.is_alive():
            probe.stop()
        if coll.poll() is None:
            os.kill(coll.pid, signal.SIGKILL)
        broker.stop()
        influx.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    assert reloaded is not None
    out = {
        "devices": a.devices, "rss_mb": round(hwm), "rss_end_mb": round(rss),
        "cpu_pct": cpu_pct, "max_ingest_pause_ms": probe.max_pause_ms(),
        "pause_around_reload_ms": probe.max_pause_ms(reloaded[0], reloaded[0] + 30),
        "max_probe_latency_ms": probe.max_latency_ms(), "longest_pauses": probe.pauses(),
        "reload_at_s": round(reloaded[0] - (probe.arrivals or [0.0])[0], 1),
        "probes_unanswered": probe.unanswered(),
        "state_db_mb": state_mb, "snapshot_ms": snap_ms,
        "snapshot_mb": snap_mb, "lost": total - in_db, "readings": total,
        "stored_in_influx": in_db, "sim_minutes": a.sim_minutes,
        "real_s_per_sim_minute": a.minute_s, "drained_s_after_end": drained_s,
        "startup_s": startup_s, "check_config_s": check_config_s,
        "reload_parse_s": float(parse.group(1)) if parse else None,
        "final": final, "samples": [sample_row(s) for s in samples], "load": os.getloadavg()[0],
    }
    print(f"workdir={work}", file=sys.stderr)
    emit("collector_scale", out, RESULT_KEYS)
    return 0 if out["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
