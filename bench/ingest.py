"""Ingest throughput: simulated devices → Mosquitto → collector → InfluxDB 1.x.

In the same run, the same points are posted straight to InfluxDB for the reference rate,
the best way a client can: batches of 5,000 lines built beforehand, persistent
connections, and the fastest of 1, 2 or 4 clients with and without gzip (tried on a probe
of 200,000 points, printed as `raw_probes`, then all the points): the best rate seen is
the reference. The devices' JSON is built before the clock starts too (they stand for
other machines). On stderr: the CPU each process spent per reading on each side
(`cpu_us_per_reading`). `--pin-influx` runs both sides with InfluxDB on one core and
everything else on the others. Last line: one JSON object
{"readings", "seconds", "readings_per_s", "raw_influx_readings_per_s", "ratio", ...}.

    .venv/bin/python bench/ingest.py --devices 500 --readings 3000000
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from orchestration.services import InfluxDB, Mosquitto, free_port

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("readings", "seconds", "readings_per_s", "raw_influx_readings_per_s", "ratio",
               "stored_in_influx", "min_10s_window_per_s")

READING = (
    '{{"seq":{seq},"ts":{ts},"sensor":"pms5003","pm1_0":{a}.0,"pm2_5":{b}.0,"pm10":{c}.0,'
    '"pm1_0_cf1":{a}.0,"pm2_5_cf1":{b}.0,"pm10_cf1":{c}.0,"n0_3":{n},"n0_5":{m},"n1_0":90,'
    '"n2_5":12,"n5_0":3,"n10":1}}'
)


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a running process has used so far (all its threads)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int | None, cpus: set[int]) -> None:
    """Every thread of `pid` on `cpus` (threads started later inherit it)."""
    if pid is None or not cpus:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def device_id(i: int) -> str:
    return f"bench-{i:05d}"


def readings_of(dev: int, first_seq: int, count: int, base_ms: int) -> list[tuple[int, ...]]:
    """(seq, ts, pm1, pm2.5, pm10, n0.3, n0.5): deterministic, so the raw run posts the same."""
    out: list[tuple[int, ...]] = []
    for seq in range(first_seq, first_seq + count):
        b = 10 + (seq * 7 + dev * 13) % 140
        out.append((seq, base_ms + seq * 1000, b // 2, b, b + 15, 1000 + b * 3, 300 + b))
    return out


def payload(dev: int, rows: list[tuple[int, ...]]) -> bytes:
    body = ",".join(READING.format(seq=s, ts=t, a=a, b=b, c=c, n=n, m=m)
                    for s, t, a, b, c, n, m in rows)
    return f'{{"v":1,"device":"{device_id(dev)}","boot":"b","readings":[{body}]}}'.encode()


#: payload bytes a publisher builds before the clock starts (the rest as it goes)
PREBUILD_BYTES = 400 << 20


def publisher(port: int, devices: range, messages: int, per_msg: int, base_ms: int,
              start: mp.synchronize.Event, ready: mp.SimpleQueue[float]) -> None:
    """Each device sends `messages` messages of `per_msg` readings, round robin, QoS 1.

    The devices stand for other machines: their JSON is built before the clock starts
    (up to PREBUILD_BYTES, as the raw side's bodies are), so that building it does not
    take the two cores from the collector and InfluxDB while they are timed."""
    def make(k: int, dev: int) -> bytes:
        return payload(dev, readings_of(dev, 1 + k * per_msg, per_msg, base_ms))

    built: list[bytes] = []
    size = 0
    for k in range(messages):
        if size >= PREBUILD_BYTES:
            break
        for dev in devices:
            built.append(make(k, dev))
            size += len(built[-1])
    ready.put(len(built))
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=f"bench-pub-{devices.start}")
    c.max_inflight_messages_set(200)
    acked = [0]
    lock = threading.Condition()

    def on_publish(*_: object) -> None:
        with lock:
            acked[0] += 1
            lock.notify()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    start.wait()
    t = os.times()
    cpu0 = t.user + t.system
    sent = 0
    topics = {dev: f"airgrid/v1/dev/{device_id(dev)}/up" for dev in devices}
    for k in range(messages):
        for dev in devices:
            body = built[sent] if sent < len(built) else make(k, dev)
            c.publish(topics[dev], body, qos=1)
            sent += 1
            with lock:
                while sent - acked[0] > 2000:  # bound what paho holds in memory
                    lock.wait(1)
    with lock:
        while acked[0] < sent:
            lock.wait(1)
    c.loop_stop()
    c.disconnect()
    t = os.times()
    ready.put(t.user + t.system - cpu0)  # CPU seconds while timed


def line(dev: int, r: tuple[int, ...]) -> str:
    s, t, a, b, c, n, m = r
    return (f"readings,device={device_id(dev)},sensor=pms5003 pm1_0={a}.0,pm2_5={b}.0,"
            f"pm10={c}.0,pm1_0_cf1={a}.0,pm2_5_cf1={b}.0,pm10_cf1={c}.0,n0_3={n}i,n0_5={m}i,"
            f"n1_0=90i,n2_5=12i,n5_0=3i,n10=1i,seq={s}i,flags=\"\",clock_synced=true {t}")


def raw_bodies(devices: int, messages: int, per_msg: int, base_ms: int, limit: int,
               batch: int) -> Iterator[list[bytes]]:
    """The same points as the devices send, as /write bodies of `batch` lines, in chunks
    (built before the clock starts, a chunk at a time, so memory stays bounded)."""
    pending: list[str] = []
    chunk: list[bytes] = []
    made = 0
    for k in range(messages):
        for dev in range(devices):
            rows = readings_of(dev, 1 + k * per_msg, per_msg, base_ms)[:limit - made]
            pending += [line(dev, r) for r in rows]
            made += len(rows)
            while len(pending) >= batch or (pending and made >= limit):
                chunk.append("\n".join(pending[:batch]).encode())
                del pending[:batch]
                if len(chunk) >= 40:
                    yield chunk
                    chunk = []
            if made >= limit:
                break
        if made >= limit:
            break
    if chunk:
        yield chunk


def post_all(influx: InfluxDB, db: str, chunks: Iterator[list[bytes]], clients: int,
             use_gzip: bool, cpu: dict[str, float] | None = None) -> tuple[int, float]:
    """POST every body over `clients` keep-alive connections; only the POSTs are timed
    (bodies built and compressed beforehand: the best case for a client). With `cpu`,
    the CPU seconds InfluxDB and the client spent in the timed part are added to it."""
    influx.create_database(db)
    host, port = urllib.parse.urlsplit(influx.url).hostname, urllib.parse.urlsplit(
        influx.url).port
    path = f"/write?db={db}&precision=ms"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    local = threading.local()

    def post(body: bytes) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host or "127.0.0.1", port, timeout=60)
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            raise RuntimeError(f"raw write: HTTP {r.status}")

    posted, spent = 0, 0.0
    with ThreadPoolExecutor(clients) as pool:
        for chunk in chunks:
            bodies = [gzip.compress(b, compresslevel=1) if use_gzip else b for b in chunk]
            posted += sum(b.count(b"\n") + 1 for b in chunk)
            t0, c0, i0 = time.perf_counter(), time.process_time(), cpu_s(influx.pid)
            list(pool.map(post, bodies))
            spent += time.perf_counter() - t0
            if cpu is not None:
                cpu["influxd"] = cpu.get("influxd", 0.0) + cpu_s(influx.pid) - i0
                cpu["client"] = cpu.get("client", 0.0) + time.process_time() - c0
    return posted, spent


def raw_rate(influx: InfluxDB, devices: int, messages: int, per_msg: int, base_ms: int,
             batch: int = 5000, probe: int = 200_000, cpu: dict[str, float] | None = None,
             ) -> tuple[int, float, dict[str, int]]:
    """InfluxDB's own rate for the same points, done the best way a client can: persistent
    connections, bodies ready, each mix of concurrency and gzip tried on a probe of up to
    `probe` points; the fastest then writes them all. The best rate of the probes and of
    that run is the reference. Returns (points, seconds at that rate, rates seen); `cpu`
    gets the CPU seconds of the run of all the points (`post_all`)."""
    total = devices * messages * per_msg
    rates: dict[str, int] = {}
    best: tuple[int, bool] = (1, False)
    for clients in (1, 2, 4):
        for use_gzip in (False, True):
            name = f"c{clients}_{'gzip' if use_gzip else 'plain'}"
            n, t = post_all(influx, f"raw_probe_{name}", raw_bodies(
                devices, messages, per_msg, base_ms, min(total, probe), batch), clients,
                use_gzip)
            rates[name] = round(n / t)
            if n / t >= max(rates.values()):
                best = (clients, use_gzip)
    posted, spent = post_all(influx, "raw", raw_bodies(devices, messages, per_msg, base_ms,
                                                       total, batch), *best, cpu=cpu)
    rates["all"] = round(posted / spent)
    # the reference is the best rate seen: a lucky probe counts against the collector
    fastest = max(rates.values())
    return posted, posted / fastest, rates


def scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--readings", type=int, default=3_000_000, help="total readings")
    ap.add_argument("--per-message", type=int, default=100, help="readings per MQTT message")
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--batch-lines", type=int, default=5000)
    ap.add_argument("--broker-inflight", type=int, default=0,
                    help="Mosquitto max_inflight_messages (0: the test services' setting)")
    ap.add_argument("--writes-in-flight", type=int, default=2)
    ap.add_argument("--gzip", choices=("on", "off"), default=None,
                    help="collector's [influx] gzip (default: its own default, off for an "
                         "InfluxDB on this host)")
    ap.add_argument("--profile", action="store_true", help="run the collector under cProfile")
    ap.add_argument("--pin-influx", action="store_true",
                    help="a second measurement, not the headline: InfluxDB pinned to one "
                         "core on both sides, everything else (collector, broker, "
                         "publishers) on the others, so that InfluxDB has the same CPU on "
                         "both sides")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (data, logs) instead of removing it")
    a = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    influx_cpus = {cores[0]} if a.pin_influx else set()
    other_cpus = set(cores[1:]) if a.pin_influx else set()
    if a.pin_influx and not other_cpus:
        ap.error("--pin-influx needs at least two cores")
    messages = max(1, a.readings // (a.devices * a.per_message))
    total = messages * a.devices * a.per_message
    base_ms = (int(time.time()) - 40 * 86400) * 1000  # 40 days ago: seqs·1 s stay in the past

    work = Path(tempfile.mkdtemp(prefix="airgrid-bench-"))
    extra = f"max_inflight_messages {a.broker_inflight}\n" if a.broker_inflight else ""
    broker, influx = Mosquitto(work / "mosquitto", extra), InfluxDB(work / "influxdb")
    broker.start()
    influx.start()
    pin(influx.pid, influx_cpus)
    pin(broker.pid, other_cpus)
    influx.create_database("bench")
    mport = free_port()
    cfg = work / "collector.toml"
    cfg.write_text(
        f"[broker]\nport = {broker.port}\nmax_unacked = 1000\n"
        f'[influx]\nurl = "{influx.url}"\ndatabase = "bench"\n'
        + (f"gzip = {'true' if a.gzip == 'on' else 'false'}\n" if a.gzip else "")
        + f"writes_in_flight = {a.writes_in_flight}\n"
        f"[batch]\nmax_lines = {a.batch_lines}\nmax_messages = 1000\nmax_wait_ms = 200\n"
        f"[metrics]\nport = {mport}\n"
    )
    cmd = [sys.executable, "-m", "collector.cli", "--log-level", "WARNING", "run",
           "--config", str(cfg)]
    if a.profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(work / "collector.prof"),
               "-m", "collector.cli", "--log-level", "WARNING", "run", "--config", str(cfg)]
    log = (work / "collector.log").open("wb")
    coll = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    cpu: dict[str, float] = {}  # CPU seconds on the collector's side while it is timed
    raw_cpu: dict[str, float] = {}  # and on the raw side, in its run of all the points
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(mport, "airgrid_collector_readings_stored_total")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        time.sleep(1.0)  # subscribed
        start = mp.Event()
        ready: mp.SimpleQueue[float] = mp.SimpleQueue()
        share = -(-a.devices // a.publishers)
        procs = [mp.Process(target=publisher, args=(
            broker.port, range(i, min(i + share, a.devices)), messages, a.per_message, base_ms,
            start, ready)) for i in range(0, a.devices, share)]
        pin(coll.pid, other_cpus)
        for p in procs:
            p.start()
            pin(p.pid, other_cpus)
        prebuilt = int(sum(ready.get() for _ in procs))
        time.sleep(1.0)  # connected
        before = {"collector": cpu_s(coll.pid), "influxd": cpu_s(influx.pid),
                  "mosquitto": cpu_s(broker.pid)}
        t0 = time.monotonic()
        start.set()
        samples: list[tuple[float, float]] = []
        while True:
            stored = scrape(mport, "airgrid_collector_readings_stored_total")
            samples.append((time.monotonic() - t0, stored))
            if stored >= total:
                break
            if time.monotonic() - t0 > 1800:
                raise TimeoutError(f"only {stored} of {total} stored")
            time.sleep(0.5)
        seconds = time.monotonic() - t0
        cpu = {"collector": cpu_s(coll.pid), "influxd": cpu_s(influx.pid),
               "mosquitto": cpu_s(broker.pid)}
        cpu = {k: v - before[k] for k, v in cpu.items()}
        cpu["publishers"] = sum(ready.get() for _ in procs)
        for p in procs:
            p.join(60)
        coll.send_signal(signal.SIGTERM)
        coll.wait(60)
        in_db = int(influx.series("SELECT count(seq) FROM readings", db="bench")[0].values[0][1])
        # per-10 s rates: "sustained" means the slowest window too
        windows = []
        j = 0
        for i, (t, s) in enumerate(samples):
            if t - samples[j][0] >= 10:
                windows.append((s - samples[j][1]) / (t - samples[j][0]))
                j = i
        posted, spent, probes = raw_rate(influx, a.devices, messages, a.per_message, base_ms,
                                         cpu=raw_cpu)
    finally:
        if coll.poll() is None:
            os.kill(coll.pid, signal.SIGKILL)
        broker.stop()
        influx.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    rate = total / seconds
    raw = posted / spent
    print("cpu_us_per_reading collector_side="
          f"{ {k: round(v / total * 1e6, 2) for k, v in cpu.items()} } "
          f"raw_side={ {k: round(v / posted * 1e6, 2) for k, v in raw_cpu.items()} } "
          f"pinned={a.pin_influx}", file=sys.stderr)
    print(f"devices={a.devices} messages={messages * a.devices} per_message={a.per_message} "
          f"in_influx={in_db} windows_10s={[round(w) for w in windows]} workdir={work} "
          f"raw_probes={probes} prebuilt_messages={prebuilt}",
          file=sys.stderr)
    emit("ingest", {"readings": total, "seconds": round(seconds, 2),
                      "readings_per_s": round(rate), "raw_influx_readings_per_s": round(raw),
                      "ratio": round(rate / raw, 3), "stored_in_influx": in_db,
                      "min_10s_window_per_s": round(min(windows)) if windows else None},
         RESULT_KEYS)
    return 0 if in_db == total else 1


if __name__ == "__main__":
    sys.exit(main())
