"""A province in miniature: RabbitMQ cluster, edge publishers, AMQP collectors, InfluxDB.

Used by `bench/cluster.py` and the cluster tests. Devices are the real edge-agent
`Outbox` + `Publisher` (MQTT 3.1.1 QoS 1, failing over between the nodes, each device
starting at a different node); readings are captured directly into the outbox (no serial
simulator: the sampler is not what is measured here). Collectors are the real collector
(`collector.app`, source AMQP, with its hand-over), each on its own thread; a crash is the collector
dropping its connection without acknowledging, and losing all its memory, as kill -9 does.
Every device's readings judged by each collector and every alert event on the bus are
recorded, so a run can count split devices and duplicated alerts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

from airgrid.measurements import READINGS
from airgrid.wire import SCHEMA_VERSION, Status
from alert_rules.transitions import Transition
from collector import config as collector_config
from collector.amqp_ingest import AmqpIngest
from collector.amqp_topology import HASH_EXCHANGE, queue_names
from collector.app import CollectorApp, from_config
from collector.config import CollectorConfig
from collector.handover import HandOver
from collector.pipeline import Pipeline
from edge_agent.config import BrokerSettings, PublishSettings
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from orchestration.rabbitmq import RabbitCluster
from orchestration.services import InfluxDB
from orchestration.stack import DEMO_RULES


def scaled_rules(work: Path, interval_s: float) -> Path:
    """The demo's 150 µg/m³ rule with windows of a few readings at this rate (its own
    3 s windows assume a reading a second)."""
    step = max(1, round(interval_s))
    text = DEMO_RULES.read_text()
    for key, n in (("window", 3), ("for", 2), ("keep_firing_for", 2)):
        text = re.sub(rf"(\n\s+{key}: )\d+s", rf"\g<1>{n * step}s", text)
    path = work / "rules.yaml"
    path.write_text(text)
    return path


class Device:
    def __init__(self, name: str, workdir: Path, hosts: list[str], episode: bool) -> None:
        self.name = name
        self.episode = episode
        self.outbox = Outbox(workdir / f"{name}.db", synchronous="NORMAL")
        self.captured = 0
        broker = BrokerSettings(hosts=tuple(hosts), protocol="3.1.1", keepalive_s=5)
        settings = PublishSettings(batch_max=50, window=10, resend_after_s=8.0,
                                   backoff_min_s=1.0, backoff_max_s=2.0)
        self.publisher = Publisher(name, "boot1", self.outbox, broker, settings, self._status)

    def _status(self) -> Status:
        return Status(v=SCHEMA_VERSION, device=self.name, state="online",
                      outbox_depth=self.outbox.depth())

    def capture(self, pm2_5: float) -> None:
        self.outbox.capture({"ts": int(time.time() * 1000), "sensor": "pms5003",
                             "pm2_5": pm2_5, "clock_synced": True})
        self.captured += 1
        self.publisher.notify()


class Collector:
    """One collector (`collector.app`, source AMQP) on its own thread, recording what it
    judges."""

    def __init__(self, run: ClusterRun, name: str) -> None:
        self.run = run
        self.name = name
        self.thread: threading.Thread | None = None
        self.app: CollectorApp | None = None
        self.crashes = 0
        self.starts = 0

    @property
    def pipeline(self) -> Pipeline | None:
        return None if self.app is None else self.app.pipeline

    @property
    def ingest(self) -> AmqpIngest | None:
        if self.app is None:
            return None
        assert isinstance(self.app.ingest, AmqpIngest)
        return self.app.ingest

    @property
    def handover(self) -> HandOver | None:
        return None if self.app is None else self.app.handover

    def config(self) -> CollectorConfig:
        """This collector's config file as a deployment would write it. Each start gets
        fresh state files: a crash loses all memory, as kill -9 of a collector whose
        disk is lost does."""
        r = self.run
        first = self._first_node()
        self.starts += 1
        state = r.workdir / "collectors" / self.name / str(self.starts)
        return collector_config.from_dict({
            "source": "amqp",
            "amqp": {"urls": r.cluster.amqp_urls[first:] + r.cluster.amqp_urls[:first],
                     "collector": self.name, "prefetch": 500,
                     "queues_per_collector": r.queues_per_collector,
                     "collectors": {n: r.weight for n in r.collectors if n not in r.removed},
                     "rebuild_lookback_s": r.rebuild_lookback_s,
                     "forget_after_s": r.forget_after_s},
            "influx": {"url": r.influx.url, "database": r.database},
            "batch": {"max_messages": 200, "max_wait_ms": 100},
            "rules": {"files": [str(r.rules_file)], "tick_interval_s": 0.5},
            "spool": {"dir": str(state / "spool")},
            "state": {"file": str(state / "state.db")},
            # transitions go out as events on the bus, where the alert tap counts them
            "alerting": {"enabled": False},
        }, state / "collector.toml")

    def start(self) -> None:
        r = self.run

        def judged(devices: Sequence[str], ts_ms: Sequence[int], now_ms: int) -> None:
            r.batch_times[self.name].append(time.monotonic())
            wall = time.time()
            for d, t in zip(devices, ts_ms, strict=True):
                r.judged[d].append((t, self.name))
                r.delivered[d].append((wall, self.name))

        # The hook sees each live batch just before the engine judges it (history the
        # hand-over rebuilds from is not judged again: its transitions are discarded).
        app = self.app = CollectorApp(from_config(self.config()), before_judge=[judged])
        self._trace(app)
        app.start()
        self.thread = threading.Thread(target=app.run, name=f"collector-{self.name}",
                                       daemon=True)
        self.thread.start()

    def _trace(self, app: CollectorApp) -> None:
        """Record what this collector decided, forgot and adopted, per device
        (`ClusterRun.trace`): how an episode device's alert went, or why it did not."""
        r, name, start = self.run, self.name, self.starts
        alerts = app.pipeline.alerts
        publish = alerts.publish_transitions

        def decided(transitions: list[Transition]) -> None:
            wall = time.time()
            for t in transitions:
                r.trace[t.subject].append((wall, f"{name}#{start}", f"{t.state} at {t.at_ms}"
                                           + (f" late {t.late_ms}" if t.late_ms else "")))
            publish(transitions)

        alerts.publish_transitions = decided  # type: ignore[method-assign]
        handover = app.handover
        if handover is None:
            return

        def forgot(devices: list[str], now_ms: int) -> None:
            for d in devices:
                r.trace[d].append((now_ms / 1000, f"{name}#{start}", "forgot"))

        handover.on_forget.append(forgot)
        rebuild = handover.rebuild
        engine = handover.engine

        def rebuilt(new: list[str], devices: Sequence[str], ts_ms: Sequence[int],
                    now_ms: int) -> None:
            rebuild(new, devices, ts_ms, now_ms)
            for d in new:
                row = engine.fleet.index.get(d)
                states = []
                for rule in engine.rules:
                    c = rule.columns
                    if row is None or row >= c.firing.size:
                        continue
                    if c.firing[row]:
                        states.append(f"{rule.name}=firing")
                    elif c.pending_since[row] >= 0:
                        states.append(f"{rule.name}=pending since {c.pending_since[row]}")
                r.trace[d].append((now_ms / 1000, f"{name}#{start}",
                                   f"rebuilt, adopted {states or 'nothing'}"))

        handover.rebuild = rebuilt  # type: ignore[method-assign]

    def _first_node(self) -> int:
        return sum(map(ord, self.name)) % len(self.run.cluster.nodes)

    def crash(self) -> None:
        """Stop without acknowledging what is in flight; all memory is lost."""
        assert self.app is not None and self.ingest is not None and self.thread
        self.ingest.generation += 1  # nothing taken so far will be acknowledged
        self.app.stop()
        self.thread.join(30)
        self.crashes += 1

    def stop(self) -> None:
        if self.app is not None and self.thread is not None:
            self.app.stop()
            self.thread.join(30)


Delivered = dict[str, list[tuple[float, str]]]  # device → (epoch s judged, collector)
Judged = dict[str, list[tuple[int, str]]]  # device → (reading time ms, collector)


def owners_across(delivered: Delivered, judged: Judged, at: float, settle_s: float
                  ) -> dict[str, tuple[str, str]]:
    """Each device's collector on either side of a ring change at `at` (epoch seconds):
    device → (owner before, owner after). The owner before judged the device's last
    reading *delivered* before `at`: routed before the change, by the old ring, however
    old its reading time. The owner after judged its first reading *read* at or after
    `at + settle_s`: published after the change, so routed by the new ring. Reading time
    alone blurs "before" after a node loss: a reading read before the change but
    replayed from an outbox after it follows the new ring. Devices with nothing on one
    side are left out."""
    out: dict[str, tuple[str, str]] = {}
    for dev, events in delivered.items():
        before = [e for e in events if e[0] < at]
        after = [e for e in judged.get(dev, []) if e[0] >= (at + settle_s) * 1000]
        if before and after:
            out[dev] = (max(before)[1], min(after)[1])
    return out


def moved_share(delivered: Delivered, judged: Judged, at: float, settle_s: float
                ) -> float | None:
    """Share of the devices seen on both sides of `at` whose collector changed (see
    `owners_across`); None if no device was seen on both."""
    owners = owners_across(delivered, judged, at, settle_s)
    if not owners:
        return None
    return sum(1 for old, new in owners.values() if old != new) / len(owners)


@dataclass
class ClusterRun:
    workdir: Path
    cluster: RabbitCluster
    influx: InfluxDB
    database: str
    devices_n: int
    collectors_n: int
    episode_every: int = 5  # every 5th device goes through a pollution episode
    forget_after_s: float = 5.0
    weight: int = 20  # points on the hash ring per collector
    queues_per_collector: int = 1
    rules_file: Path = DEMO_RULES
    rebuild_lookback_s: float = 60.0
    devices: list[Device] = field(default_factory=list)
    collectors: dict[str, Collector] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    # Devices simulated outside this process (`orchestration.device_swarm`): how many
    # readings each captured, and which went through the episode.
    sim_captured: dict[str, int] = field(default_factory=dict)
    sim_episode: set[str] = field(default_factory=set)
    batch_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    judged: dict[str, list[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(list))
    # (epoch seconds it was judged, collector) per reading: when, not what time it was read
    delivered: dict[str, list[tuple[float, str]]] = field(
        default_factory=lambda: defaultdict(list))
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # device → (epoch s, collector#start, what): transitions decided, forgets, rebuilds
    trace: dict[str, list[tuple[float, str, str]]] = field(
        default_factory=lambda: defaultdict(list))
    _alert_thread: threading.Thread | None = None
    _swarms: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stop_alerts: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.influx.create_database(self.database)
        for i in range(self.collectors_n):
            self.collectors[f"c{i + 1}"] = Collector(self, f"c{i + 1}")
        for c in self.collectors.values():
            c.start()
        self._wait_consuming(list(self.collectors.values()))
        self._start_alert_tap()
        hosts = self.cluster.mqtt_hosts
        for i in range(self.devices_n):
            # A dotted id checks the `/` ↔ `.` swap between MQTT topics and routing keys.
            name = f"dev.{i:04d}" if i % 7 == 3 else f"dev-{i:04d}"
            rotated = hosts[i % len(hosts):] + hosts[:i % len(hosts)]
            d = Device(name, self.workdir / "outbox", rotated, i % self.episode_every == 0)
            self.devices.append(d)
            d.publisher.start()

    def _wait_consuming(self, collectors: list[Collector], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.ingest is not None and c.ingest.connected.is_set() for c in collectors):
                return
            time.sleep(0.1)
        raise TimeoutError("collectors did not connect to RabbitMQ")

    def _start_alert_tap(self) -> None:
        """A queue bound to the alert topics: every alert event any collector published."""
        ready = threading.Event()

        def tap() -> None:
            params = [pika.URLParameters(u) for u in self.cluster.amqp_urls]
            while not self._stop_alerts.is_set():
                try:
                    conn = pika.BlockingConnection(params)
                    ch = conn.channel()
                    ch.queue_declare("airgrid.bench.alerts", durable=True,
                                     arguments={"x-queue-type": "quorum"})
                    ch.queue_bind("airgrid.bench.alerts", "amq.topic", "airgrid.v1.alerts.#")
                    ready.set()
                    for _m, _p, body in ch.consume("airgrid.bench.alerts", auto_ack=True,
                                                   inactivity_timeout=0.5):
                        if body is not None:
                            self.alerts.append(json.loads(body))
                        if self._stop_alerts.is_set():
                            break
                    with contextlib.suppress(Exception):
                        conn.close()
                except pika.exceptions.AMQPError:
                    time.sleep(0.5)

        self._alert_thread = threading.Thread(target=tap, name="alert-tap", daemon=True)
        self._alert_thread.start()
        ready.wait(30)

    def capture_all(self, t_s: float, episode: tuple[float, float]) -> None:
        for d in self.devices:
            high = d.episode and episode[0] <= t_s < episode[1]
            d.capture(220.0 if high else 25.0 + (hash(d.name) % 10))

    def add_collector(self) -> Collector:
        name = f"c{len(self.collectors) + 1}"
        c = self.collectors[name] = Collector(self, name)
        c.start()  # its topology now includes the new queue: ensure() binds it
        self._wait_consuming([c])
        return c

    def start_swarm(self, count: int, interval_s: float, duration_s: float,
                    episode: tuple[float, float] = (0.2, 0.8), processes: int = 1
                    ) -> list[subprocess.Popen[bytes]]:
        """`count` simulated devices (`orchestration.device_swarm`) in `processes`
        processes of their own (consecutive ranges of ids), spread over the nodes; every
        `episode_every`-th goes through the episode (fractions of the duration). They
        capture together once all are connected (`wait_swarm_ready`); `finish_swarm`
        waits for them and takes their counts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # each range starts at a multiple of episode_every: episode devices by global index
        step = max(1, self.episode_every)
        chunk = -(-count // max(1, processes) // step) * step
        self._swarms = []
        for k, first in enumerate(range(0, count, chunk)):
            n = min(chunk, count - first)
            with (self.workdir / f"swarm-{k}.log").open("wb") as log:
                self._swarms.append(subprocess.Popen(
                    [sys.executable, "-m", "orchestration.device_swarm",
                     "--hosts", ",".join(self.cluster.mqtt_hosts), "--devices", str(n),
                     "--first", str(first),
                     # ~100 CONNECTs in flight in all: more only meets login timeouts
                     "--connecting-max", str(max(25, 100 // max(1, processes))),
                     "--interval-s", str(interval_s), "--duration", str(duration_s),
                     "--episode-every", str(self.episode_every),
                     "--episode", str(episode[0]), str(episode[1]),
                     "--drain-timeout", "300", "--connect-timeout", "600",
                     "--result", str(self.workdir / f"swarm-{k}.json"), "--progress",
                     "--ready", str(self.workdir / f"swarm-{k}.ready"),
                     "--go", str(self.workdir / "swarm.go")],
                    cwd=Path(__file__).resolve().parents[1], stdout=log,
                    stderr=subprocess.STDOUT))
        return list(self._swarms)

    def wait_swarm_ready(self, timeout: float = 900.0) -> dict[str, Any]:
        """Until every swarm process's devices are connected (or it gave up waiting for
        them), then tells them all to start capturing; what they said, summed."""
        deadline = time.monotonic() + timeout
        said: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(said) < len(self._swarms):
            for k, proc in enumerate(self._swarms):
                ready = self.workdir / f"swarm-{k}.ready"
                if k not in said and ready.exists():
                    said[k] = json.loads(ready.read_text())
                if proc.poll() is not None and k not in said:
                    raise RuntimeError(f"device swarm {k} exited with {proc.returncode}: "
                                       + (self.workdir / f"swarm-{k}.log").read_text()[-2000:])
            time.sleep(0.2)
        (self.workdir / "swarm.go").touch()
        if len(said) < len(self._swarms):
            raise TimeoutError("device swarm not connected")
        times = [s.get("connect_all_s") for s in said.values()]
        known = [float(t) for t in times if t is not None]
        return {"connected": sum(int(s.get("connected", 0)) for s in said.values()),
                "connect_all_s": max(known) if len(known) == len(times) else None}

    def finish_swarm(self, timeout: float = 900.0) -> dict[str, Any]:
        """Wait for the swarm processes to capture, drain and exit; their summary, summed
        (no per-device part). Their devices' counts join `captured_by_device`."""
        deadline = time.monotonic() + timeout
        out: dict[str, Any] = {"drained": True, "connect_all_s": 0.0}
        codes = []
        for k, proc in enumerate(self._swarms):
            codes.append(proc.wait(max(1.0, deadline - time.monotonic())))
            path = self.workdir / f"swarm-{k}.json"
            part: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            self.sim_captured.update(part.pop("per_device", {}))
            for key, value in part.items():
                if key == "drained":
                    out["drained"] = out["drained"] and bool(value)
                elif key == "connect_all_s":
                    out[key] = None if value is None or out[key] is None else max(
                        out[key], value)
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    out[key] = out.get(key, 0) + value
            if not path.exists():
                out["drained"] = False
        # the swarm's episode devices: every episode_every-th index (device_swarm.episode_pm)
        self.sim_episode = {n for n in self.sim_captured
                            if int(n[4:]) % self.episode_every == 0}
        out["exit_code"] = max(codes, default=0)
        return out

    def remove_collector(self, name: str, timeout: float = 120.0) -> bool:
        """As docs/province.md says: unbind its queue (its devices move to the others),
        let it drain its queue, stop it, delete the queue. False if it did not drain."""
        drained = False
        params = [pika.URLParameters(u) for u in self.cluster.amqp_urls]
        conn = pika.BlockingConnection(params)
        queues = queue_names(name, self.queues_per_collector)
        try:
            ch = conn.channel()
            for queue in reversed(queues):  # its buckets are the last ones: undo the append
                ch.queue_unbind(queue, HASH_EXCHANGE, routing_key=str(self.weight))
            self.removed.add(name)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                left = sum(ch.queue_declare(q, passive=True).method.message_count
                           for q in queues)
                c = self.collectors[name]
                busy = c.ingest is not None and c.ingest.waiting() > 0
                if left == 0 and not busy:
                    drained = True
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # the last batch stored and acked
            self.collectors[name].stop()
            if drained:  # quorum queues refuse `if_empty`: we checked they are empty
                for queue in queues:
                    ch.queue_delete(queue)
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return drained

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(d.outbox.depth() == 0 for d in self.devices):
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        for proc in self._swarms:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for d in self.devices:
            with contextlib.suppress(Exception):
                d.publisher.stop()
            d.outbox.close()
        for c in self.collectors.values():
            c.stop()
        self._stop_alerts.set()
        if self._alert_thread is not None:
            self._alert_thread.join(5)

    # --- results ------------------------------------------------------------------

    def stored(self) -> tuple[int, int, int]:
        """(distinct readings stored, points missing, devices with a wrong count)."""
        res = self.influx.query(f'SELECT count("seq") FROM "{READINGS}" GROUP BY "device"',
                                db=self.database)
        counts: dict[str, int] = {}
        for result in res.get("results", []):  # type: ignore[attr-defined]
            for s in result.get("series", []):
                counts[s["tags"]["device"]] = int(s["values"][0][1])
        captured = self.captured_by_device()
        lost = sum(max(0, n - counts.get(d, 0)) for d, n in captured.items())
        wrong = sum(1 for d, n in captured.items() if counts.get(d, 0) != n)
        return sum(counts.values()), lost, wrong

    def captured_by_device(self) -> dict[str, int]:
        return {**self.sim_captured, **{d.name: d.captured for d in self.devices}}

    def owners(self, before: float | None = None, after: float | None = None
               ) -> dict[str, str]:
        """Each device's collector: the one that judged its last reading with a reading
        time before `before` (or its first after `after`), in epoch seconds."""
        out: dict[str, str] = {}
        for dev, events in self.judged.items():
            ev = sorted(events)
            if before is not None:
                ev = [e for e in ev if e[0] < before * 1000]
                if ev:
                    out[dev] = ev[-1][1]
            elif after is not None:
                ev = [e for e in ev if e[0] >= after * 1000]
                if ev:
                    out[dev] = ev[0][1]
        return out

    def moved_share(self, at: float, settle_s: float) -> float | None:
        """See `moved_share`, over what this run's collectors judged."""
        return moved_share(self.delivered, self.judged, at, settle_s)

    def moved_devices(self, at: float, settle_s: float) -> dict[str, tuple[str, str]]:
        """The devices whose collector changed at `at`: device → (before, after)."""
        return {d: o for d, o in owners_across(self.delivered, self.judged, at,
                                               settle_s).items() if o[0] != o[1]}

    def max_stall_s(self, start: float, end: float, skip: set[str] | None = None) -> float:
        """Longest gap between two batches a collector judged, over [start, end]
        (monotonic seconds): how long its ingest stood still."""
        return max(self.stalls(start, end, skip).values(), default=0.0)

    def stalls(self, start: float, end: float, skip: set[str] | None = None
               ) -> dict[str, float]:
        """Each collector's longest gap between judged batches over [start, end]."""
        out = {}
        for name, times in list(self.batch_times.items()):
            if (skip and name in skip) or not times or times[0] > start:
                continue  # not consuming yet when the window began
            inside = [start, *(t for t in times if start <= t <= end), end]
            out[name] = max(b - a for a, b in itertools.pairwise(inside))
        return out

    def devices_split(self) -> int:
        """Devices judged by two collectors at once: in reading-time order their readings
        went to A, then B, then A again (a clean hand-over is A… then B…). A reading
        judged by two collectors counts too."""
        return len(self.split_devices())

    def split_devices(self) -> list[str]:
        kinds = self.split_kinds()
        return sorted(set(kinds["judged_twice"]) | set(kinds["interleaved"]))

    def split_kinds(self) -> dict[str, list[str]]:
        """Devices whose judging was not one clean hand-over per membership change:
        `judged_twice` (one reading judged by two collectors), `interleaved` (A, then B,
        then A again while B still held its queue), and `back_after_removal` (A, B, A
        where B was removed: the ring gave B's devices back, a clean second hand-over)."""
        out: dict[str, list[str]] = {"judged_twice": [], "interleaved": [],
                                     "back_after_removal": []}
        for device, events in self.judged.items():
            events = sorted(set(events))
            if any(a[0] == b[0] for a, b in itertools.pairwise(events)):
                out["judged_twice"].append(device)
                continue
            runs = [c for i, (_, c) in enumerate(events) if i == 0 or events[i - 1][1] != c]
            if len(runs) == len(set(runs)):
                continue
            back = len(runs) == 3 and runs[0] == runs[2] and runs[1] in self.removed
            out["back_after_removal" if back else "interleaved"].append(device)
        return out

    def alerts_duplicated(self) -> int:
        """`firing` events for a (rule, device) with no `resolved` between them."""
        return len(self.duplicated_alerts())

    def duplicated_alerts(self) -> list[tuple[Any, Any, int]]:
        """(rule, device, at_ms) of each `firing` that repeats one not yet resolved."""
        dup: list[tuple[Any, Any, int]] = []
        state: dict[tuple[Any, Any], str] = {}
        events: list[dict[str, Any]] = sorted(
            (a["data"] for a in self.alerts if isinstance(a.get("data"), dict)),
            key=lambda d: int(d.get("at_ms", 0)))
        for d in events:
            key = (d.get("rule"), d.get("device"))
            if d.get("state") == "firing":
                if state.get(key) == "firing":
                    dup.append((*key, int(d.get("at_ms", 0))))
                state[key] = "firing"
            elif d.get("state") == "resolved":
                state[key] = "resolved"
        return dup

    def episode_devices_alerted(self) -> tuple[int, int]:
        """(episode devices with at least one `firing` event, episode devices)."""
        fired = {a["data"].get("device") for a in self.alerts
                 if isinstance(a.get("data"), dict) and a["data"].get("state") == "firing"}
        episodes = [d.name for d in self.devices if d.episode] + sorted(self.sim_episode)
        return sum(d in fired for d in episodes), len(episodes)

    def episode_firing_counts(self) -> dict[str, int]:
        """How many `firing` events the bus carried for each episode device."""
        fired: dict[str, int] = defaultdict(int)
        for a in self.alerts:
            if isinstance(a.get("data"), dict) and a["data"].get("state") == "firing":
                fired[str(a["data"].get("device"))] += 1
        episodes = [d.name for d in self.devices if d.episode] + sorted(self.sim_episode)
        return {d: fired.get(d, 0) for d in episodes}

    def unalerted_episode_devices(self) -> list[str]:
        """Episode devices no `firing` event on the bus was seen for."""
        fired = {a["data"].get("device") for a in self.alerts
                 if isinstance(a.get("data"), dict) and a["data"].get("state") == "firing"}
        episodes = [d.name for d in self.devices if d.episode] + sorted(self.sim_episode)
        return [d for d in episodes if d not in fired]

    def story(self, device: str) -> list[str]:
        """What happened to a device's alert, in wall-clock order: its readings' runs per
        collector (delivered), what each collector decided, forgot and adopted
        (`trace`), and the events on the bus."""
        lines: list[tuple[float, str]] = []
        runs: list[list[Any]] = []
        for wall, c in sorted(self.delivered.get(device, [])):
            if runs and runs[-1][0] == c:
                runs[-1][2], runs[-1][3] = wall, runs[-1][3] + 1
            else:
                runs.append([c, wall, wall, 1])
        lines += [(a, f"{c} judged {n} readings until {b:.1f}") for c, a, b, n in runs]
        lines += [(w, f"{c} {what}") for w, c, what in self.trace.get(device, [])]
        lines += [(int(a["data"].get("at_ms", 0)) / 1000, f"bus {a['data'].get('state')}")
                  for a in self.alerts if isinstance(a.get("data"), dict)
                  and a["data"].get("device") == device]
        return [f"{w:.1f} {what}" for w, what in sorted(lines)]

    def firing_events(self) -> int:
        return sum(1 for a in self.alerts
                   if isinstance(a.get("data"), dict) and a["data"].get("state") == "firing")
