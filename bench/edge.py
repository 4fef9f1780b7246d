"""Edge agent figures: outbox insert and replay rates, agent RSS and CPU at 1 reading/s.

Runs real Mosquitto (orchestration.services), a simulated PMS5003 and the agent as processes.
Usage: .venv/bin/python bench/edge.py [--readings 20000] [--agent-seconds 60]
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airgrid.wire import Status, UpBatch, encode_up
from edge_agent.config import BrokerSettings, PublishSettings
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from orchestration.services import Mosquitto

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("insert_readings_per_s", "insert_batched_readings_per_s", "replay_readings_per_s",
               "batch_build_speedup", "rss_mb", "cpu_pct")

TICKS = os.sysconf("SC_CLK_TCK")
_REPLAY_DEVICE = itertools.count(1)


def _online(device: str) -> Status:
    """The retained status the publisher sends on connecting, as the agent's would be."""
    return Status(v=1, device=device, state="online", agent_version="bench")


def _values(i: int) -> dict[str, object]:
    return {"ts": 1_760_000_000_000 + i * 1000, "sensor": "pms5003", "pm1_0": 12.0,
            "pm2_5": 17.5, "pm10": 22.0, "pm1_0_cf1": 12.0, "pm2_5_cf1": 17.5,
            "pm10_cf1": 22.0, "n0_3": 2100, "n0_5": 630, "n1_0": 126, "n2_5": 21, "n5_0": 4,
            "n10": 1, "clock_synced": True}


def insert_rate(d: Path, n: int, commit_interval_s: float) -> float:
    ob = Outbox(d / f"insert-{commit_interval_s}-{time.monotonic_ns()}.db",
                commit_interval_s=commit_interval_s)
    t0 = time.perf_counter()
    for i in range(n):
        ob.capture(_values(i), boot="bench", mono_ms=i)
    ob.flush()
    rate = n / (time.perf_counter() - t0)
    ob.close()
    return rate


def replay_rate(d: Path, broker: Mosquitto, n: int) -> float:
    ob = Outbox(d / f"replay-{time.monotonic_ns()}.db", commit_interval_s=3600)
    for i in range(n):
        ob.capture(_values(i))
    ob.flush()
    # A device (so an MQTT client id and session) of its own for each repeat: the broker
    # keeps a persistent session per client id, which must not carry from one repeat over.
    device = f"bench-{next(_REPLAY_DEVICE)}"
    pub = Publisher(device, "bench", ob, BrokerSettings(host="127.0.0.1", port=broker.port),
                    PublishSettings(), status=lambda: _online(device))
    t0 = time.perf_counter()
    pub.start()
    while ob.depth():
        time.sleep(0.005)
    rate = n / (time.perf_counter() - t0)
    pub.stop()
    ob.close()
    return rate


def batch_build_rates(d: Path, n: int) -> tuple[float, float]:
    """Readings/s turned into `up` payloads: decode + encode_up (reference) vs raw bodies."""
    ob = Outbox(d / f"build-{time.monotonic_ns()}.db", commit_interval_s=3600)
    for i in range(n):
        ob.capture(_values(i))
    ob.flush()
    pub = Publisher("bench-1", "bench", ob, BrokerSettings(), PublishSettings(),
                    status=lambda: _online("bench-1"))
    t0 = time.perf_counter()
    for after in range(0, n, 200):
        rows = ob.oldest(200, after_seq=after)
        encode_up(UpBatch(v=1, device="bench-1", boot="bench", readings=tuple(rows)))
    t1 = time.perf_counter()
    for after in range(0, n, 200):
        raw = ob.oldest_raw(200, after_seq=after)
        pub._batch_payload([b for _, b in raw])
    t2 = time.perf_counter()
    ob.close()
    return n / (t1 - t0), n / (t2 - t1)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def agent_footprint(d: Path, broker: Mosquitto, seconds: float) -> tuple[float, float]:
    """RSS (MB, max) and CPU (% of one core) of an agent sampling once a second."""
    link = d / "tty"
    sim = subprocess.Popen([sys.executable, "-m", "firmware_sim.cli", "pms5003", "--link",
                            str(link), "--frame-period", "1.0", "--warmup", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not link.exists():
        time.sleep(0.05)
    cfg = d / "edge.toml"
    cfg.write_text(f'device = "bench-agent"\n[sensor]\nport = "{link}"\nwarmup_s = 0\n'
                   f'[sampling]\ninterval_s = 1.0\n[outbox]\npath = "{d / "agent.db"}"\n'
                   f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n'
                   "[clock]\ntrust_system_clock = true\n")
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--log-level",
                              "WARNING", "run", "--config", str(cfg)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # start-up (imports, connect) is not the steady state
        cpu0, t0 = _cpu_s(agent.pid), time.monotonic()
        rss = 0.0
        while time.monotonic() - t0 < seconds:
            rss = max(rss, _rss_mb(agent.pid))
            time.sleep(1)
        cpu = (_cpu_s(agent.pid) - cpu0) / (time.monotonic() - t0) * 100
    finally:
        agent.terminate()
        agent.wait(20)
        sim.terminate()
        sim.wait(10)
    return rss, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--insert-readings", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agent-seconds", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="airgrid-bench-") as tmp:
        d = Path(tmp)
        broker = Mosquitto(d / "mosquitto")
        broker.start()
        try:
            per_reading, batched, replay, ref_build, raw_build = [], [], [], [], []
            for _ in range(args.repeats):  # interleaved, so noise hits both alike
                per_reading.append(insert_rate(d, args.insert_readings, 0.0))
                batched.append(insert_rate(d, args.readings, 10.0))
                replay.append(replay_rate(d, broker, args.readings))
                ref, raw = batch_build_rates(d, args.readings)
                ref_build.append(ref)
                raw_build.append(raw)
            for name, xs in (("insert, commit per reading", per_reading),
                             ("insert, commit every 10 s", batched), ("replay", replay),
                             ("batch build, decode + encode_up (reference)", ref_build),
                             ("batch build, stored bodies", raw_build)):
                print(f"{name}: median {statistics.median(xs):,.0f} readings/s "
                      f"({', '.join(f'{x:,.0f}' for x in xs)})")
            rss, cpu = agent_footprint(d, broker, args.agent_seconds)
            print(f"agent at 1 reading/s: RSS {rss:.1f} MB, CPU {cpu:.2f} % of a core")
        finally:
            broker.stop()
    emit("edge", {
        "insert_readings_per_s": round(statistics.median(per_reading)),
        "insert_batched_readings_per_s": round(statistics.median(batched)),
        "replay_readings_per_s": round(statistics.median(replay)),
        "batch_build_speedup": round(statistics.median(
            r / f for r, f in zip(raw_build, ref_build, strict=True)), 2),
        "rss_mb": round(rss, 1), "cpu_pct": round(cpu, 2),
    }, RESULT_KEYS)


if __name__ == "__main__":
    main()
