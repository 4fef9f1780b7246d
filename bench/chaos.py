"""Chaos run: the whole system on real processes while faults are injected at random.

Simulated sensors on pseudo-terminals, one edge agent each (each behind its own NetCut
relay, so its network can be cut), Mosquitto, the collector and InfluxDB. While readings
flow, at random moments: the broker is stopped and restarted, the collector killed -9 and
restarted, InfluxDB stopped for a while, agents killed -9 and restarted, an agent's network
cut (episode devices too, and each episode device once during its episode: its alert
must come from the backlog, once, marked late), and one agent with a small outbox cap is
cut long enough to overflow it. Then the system drains and everything is counted from
the agents' outboxes, InfluxDB and the alert events seen on MQTT.

    python bench/chaos.py --devices 20 --seconds 300 --seed 1

Last line: one JSON object (see `summary` below).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from orchestration.netcut import NetCut
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import SimDevice, Stack, Timing

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("devices", "seconds", "seed", "faults_injected", "faults", "captured",
               "stored", "lost", "dropped_counted", "duplicates", "alerts_expected",
               "alerts_notified", "alerts_duplicated", "false_alerts", "alerts_late",
               "episode_cuts", "drained")

OVERFLOW_CAP = 20  # rows in the outbox of the device whose cap is filled on purpose


@dataclass
class AlertWatcher:
    """Counts alert events on MQTT through broker restarts (persistent session, QoS 1)."""

    port: int
    firing: Counter[tuple[str, str]] = field(default_factory=Counter)
    late: Counter[tuple[str, str]] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                        client_id="chaos-alert-watcher", clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("airgrid/v1/alerts/#", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        c.connect_async("127.0.0.1", self.port, keepalive=10)
        c.loop_start()
        self.client = c

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            event = json.loads(msg.payload)
            data = event["data"]
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            if event.get("id") in self.ids:
                return  # the same event redelivered by MQTT is not a second notification
            self.ids.add(event.get("id"))
            if data.get("state") == "firing":
                self.firing[(data.get("rule"), event.get("subject"))] += 1
                if data.get("late"):
                    self.late[(data.get("rule"), event.get("subject"))] += 1

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Chaos:
    stack: Stack
    broker: Mosquitto
    influx: InfluxDB
    cuts: dict[str, NetCut]
    overflow_device: str
    episode_devices: set[str]
    rng: random.Random
    log: Callable[[str], None]
    faults: Counter[str] = field(default_factory=Counter)
    _busy: threading.Lock = field(default_factory=threading.Lock)
    _agent_busy: threading.Lock = field(default_factory=threading.Lock)

    # Each fault returns when the system is whole again.
    def broker_restart(self) -> None:
        down = self.rng.uniform(2, 8)
        self.log(f"broker down for {down:.1f} s")
        self.broker.stop()
        time.sleep(down)
        self.broker.start()

    def collector_kill(self) -> None:
        self.log("collector kill -9")
        self.stack.kill_collector()
        time.sleep(self.rng.uniform(0.5, 3))
        self.stack.start_collector()

    def influx_outage(self) -> None:
        down = self.rng.uniform(5, 30)
        self.log(f"InfluxDB down for {down:.1f} s")
        self.influx.stop()
        time.sleep(down)
        self.influx.start()

    def agent_kill(self) -> None:
        device = self.rng.choice(sorted(self.stack.agents))
        self.log(f"agent {device} kill -9")
        self.stack.kill_agent(device)
        time.sleep(self.rng.uniform(0.5, 3))
        self.stack.start_agent(device)

    def agent_netcut(self) -> None:
        # Any device, episode devices too: a backlog is judged in its own time.
        device = self.rng.choice(sorted(d for d in self.cuts if d != self.overflow_device))
        down = self.rng.uniform(15, 60)
        self.log(f"agent {device} network cut for {down:.1f} s")
        self.cuts[device].cut()
        time.sleep(down)
        self.cuts[device].restore()

    def episode_netcut(self, device: str, down: float) -> None:
        """An episode device loses its network during its episode: the alert must come
        from the backlog, once, marked late."""
        self.log(f"episode device {device} network cut for {down:.1f} s")
        self.cuts[device].cut()
        time.sleep(down)
        self.cuts[device].restore()
        self.faults["episode_netcut"] += 1

    def outbox_fill(self) -> None:
        down = OVERFLOW_CAP * self.stack.timing.sample_interval_s * 2
        self.log(f"agent {self.overflow_device} cut {down:.0f} s to overflow its outbox")
        self.cuts[self.overflow_device].cut()
        time.sleep(down)
        self.cuts[self.overflow_device].restore()

    def kinds(self) -> dict[str, Callable[[], None]]:
        return {
            "broker_restart": self.broker_restart, "collector_kill": self.collector_kill,
            "influx_outage": self.influx_outage, "agent_kill": self.agent_kill,
            "agent_netcut": self.agent_netcut, "outbox_fill": self.outbox_fill,
        }

    def inject(self, kind: str) -> None:
        # Faults of the shared services run one at a time; agent faults may overlap them.
        fn = self.kinds()[kind]
        if kind in ("broker_restart", "collector_kill", "influx_outage"):
            with self._busy:
                fn()
        elif kind == "agent_kill":
            with self._agent_busy:
                fn()
        else:
            fn()
        self.faults[kind] += 1


def schedule(rng: random.Random, seconds: float, devices: int) -> list[tuple[float, str]]:
    """Fault times in the first 80 % of the run: every kind at least once, then at random."""
    kinds = ["broker_restart", "collector_kill", "influx_outage", "agent_kill",
             "agent_netcut", "outbox_fill"]
    n = max(len(kinds), int(seconds / 20))
    chosen = kinds + [rng.choice(kinds[:5]) for _ in range(n - len(kinds))]
    times = sorted(rng.uniform(0.05 * seconds, 0.8 * seconds) for _ in chosen)
    rng.shuffle(chosen)
    return list(zip(times, chosen, strict=True))


def stored_seqs(influx: InfluxDB, database: str) -> tuple[dict[str, set[int]], int]:
    """Distinct seqs per device in InfluxDB, and rows beyond one per (device, seq)."""
    res: dict[str, Any] = influx.query("SELECT seq FROM readings GROUP BY device", db=database)
    seqs: dict[str, set[int]] = {}
    duplicates = 0
    for result in res.get("results", []):
        for series in result.get("series", []):
            values = [int(v[1]) for v in series["values"]]
            seqs[series["tags"]["device"]] = set(values)
            duplicates += len(values) - len(set(values))
    return seqs, duplicates


def episode_cuts(rng: random.Random, sims: list[SimDevice]) -> list[tuple[float, str, float]]:
    """(time, device, seconds down) for every episode device: a cut that begins shortly
    before its episode begins (the simulators started a moment before the plan did, and the
    demo rule cannot fire in the first 8 s of an episode anyway: 5 s of
    ramp, a 3-s mean, 3 s of `for`) and lasts 40-80 % of it, so its alert can only come
    from the backlog."""
    out = []
    for d in sims:
        if d.scenario != "episode":
            continue
        length = d.episode_length_s
        at = d.episode_start_s + rng.uniform(-0.1 * length, 0.0)
        out.append((max(1.0, at), d.device, rng.uniform(0.4 * length, 0.8 * length)))
    return out


def run(devices: int, seconds: float, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    broker = Mosquitto(workdir / "mosquitto")
    influx = InfluxDB(workdir / "influxdb")
    sims = []
    episode_devices = set()
    for i in range(devices):
        name = f"chaos-{i:03d}"
        if i % 5 == 1:  # every fifth device goes through one pollution episode
            start = rng.uniform(0.1 * seconds, 0.6 * seconds)
            sims.append(SimDevice(name, "episode", baseline=30, peak=230, seed=seed * 1000 + i,
                                  episode_start_s=start, episode_length_s=0.2 * seconds))
            episode_devices.add(name)
        else:
            sims.append(SimDevice(name, "clean", baseline=15 + 5 * (i % 5), seed=seed * 1000 + i))
    overflow_device = sims[0].device
    stack = Stack(workdir / "stack", broker, influx, sims,
                  Timing(frame_period_s=0.5, sample_interval_s=1.0, status_interval_s=10.0))
    watcher = AlertWatcher(0)
    cuts: dict[str, NetCut] = {}
    try:
        broker.start()
        influx.start()
        for d in sims:
            cuts[d.device] = NetCut(broker.port)
            cuts[d.device].start()
            stack.broker_ports[d.device] = cuts[d.device].port
        stack.outbox_caps[overflow_device] = OVERFLOW_CAP
        watcher = AlertWatcher(broker.port)
        watcher.start()
        stack.start()
        chaos = Chaos(stack, broker, influx, cuts, overflow_device, episode_devices, rng, log)
        plan = schedule(rng, seconds, devices)
        cuts_plan = episode_cuts(rng, sims)
        log(f"{devices} devices, {seconds:.0f} s, {len(plan)} faults planned, "
            f"{len(cuts_plan)} episode devices cut during their episode")
        started = time.monotonic()  # the simulators' episode clocks start about now
        threads: list[threading.Thread] = []

        def cut_at(at: float, device: str, down: float) -> None:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            chaos.episode_netcut(device, down)

        for at, device, down in cuts_plan:
            th = threading.Thread(target=cut_at, args=(at, device, down), daemon=True)
            th.start()
            threads.append(th)
        for at, kind in plan:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            th = threading.Thread(target=chaos.inject, args=(kind,), daemon=True)
            th.start()
            threads.append(th)
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        log("run over; waiting for faults to end, then draining")
        for th in threads:
            th.join(300)
        for cut in cuts.values():
            cut.restore()
        drained = stack.quiesce(timeout=240)
        time.sleep(3)  # let the last alert events arrive
        captured_by_device, dropped = {}, 0
        for d in sims:
            last, _pending, drop = stack.outbox_counts(d.device)
            captured_by_device[d.device] = last
            dropped += drop
        seqs, duplicates = stored_seqs(influx, stack.database)
        missing = sum(len(set(range(1, captured_by_device[d] + 1)) - seqs.get(d, set()))
                      for d in captured_by_device)
        with watcher.lock:
            firing = dict(watcher.firing)
            late = dict(watcher.late)
        summary = {
            "devices": devices,
            "seconds": seconds,
            "seed": seed,
            "faults_injected": sum(chaos.faults.values()),
            "faults": dict(chaos.faults),
            "captured": sum(captured_by_device.values()),
            "stored": sum(len(s) for s in seqs.values()),
            # dropped readings are the oldest of an overflowing outbox: missing by design
            "lost": max(0, missing - dropped),
            "dropped_counted": dropped,
            "duplicates": duplicates,
            "alerts_expected": len(episode_devices),
            "alerts_notified": sum(1 for (_, dev) in firing if dev in episode_devices),
            "alerts_duplicated": sum(n - 1 for n in firing.values()),
            "false_alerts": sum(1 for (_, dev) in firing if dev not in episode_devices),
            # episode alerts decided on a backlog (the device was cut during its episode)
            "alerts_late": sum(1 for (_, dev) in late if dev in episode_devices),
            "episode_cuts": chaos.faults["episode_netcut"],
            "drained": drained,
        }
    finally:
        stack.stop()
        watcher.stop()
        for cut in cuts.values():
            cut.stop()
        influx.stop()
        broker.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="keep data and logs here")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="airgrid-chaos-"))
    try:
        summary = run(args.devices, args.seconds, args.seed, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    emit("chaos", summary, RESULT_KEYS)
    ok = summary["lost"] == 0 and summary["duplicates"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
