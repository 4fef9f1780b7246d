"""The collector as a process, as the collector tests drive it: started on a generated
config, fed like an agent feeds it (resend until PUBACK), watched on its MQTT topics
(dead letters), read back from InfluxDB."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic
from orchestration.services import InfluxDB, free_port
from tests.support.wait import wait_for


def reading(seq: int, ts: int, pm: float) -> Reading:
    return Reading(seq=seq, ts=ts, sensor="pms5003", pm1_0=round(pm / 2, 1), pm2_5=pm,
                   pm10=pm + 11.5, pm1_0_cf1=round(pm / 2, 1), pm2_5_cf1=pm + 0.5,
                   pm10_cf1=pm + 12.0, n0_3=int(pm * 30), n0_5=int(pm * 9), n1_0=50,
                   n2_5=7, n5_0=2, n10=1)


def up_payload(device: str, readings: list[Reading]) -> bytes:
    return encode_up(UpBatch(v=SCHEMA_VERSION, device=device, boot="t", readings=tuple(readings)))


class Collector:
    """`python -m collector.cli run` with a generated config; killed or stopped by PID."""

    def __init__(self, workdir: Path, broker_port: int, influx_url: str, database: str,
                 extra: str = "", influx_extra: str = "") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_port = free_port()
        self.config = workdir / "collector.toml"
        self.config.write_text(
            f"[broker]\nport = {broker_port}\nclient_id = \"c-{workdir.name}\"\n"
            f'[influx]\nurl = "{influx_url}"\ndatabase = "{database}"\n'
            f"timeout_s = 2.0\nretries = 1\nbackoff_ms = 100\n{influx_extra}"
            "[batch]\nmax_wait_ms = 50\n"
            f"[metrics]\nport = {self.metrics_port}\n{extra}"
        )
        self.config.chmod(0o600)  # it may hold a token or a password
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "collector.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector.cli", "run", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if not wait_for(self._connected, 20, step=0.1):
            raise TimeoutError(self.log.read_text())

    def _connected(self) -> bool:
        with contextlib.suppress(OSError):
            if self.health()["broker_connected"]:
                return True
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        return False

    def health(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz",
                                        timeout=2) as r:
                result: dict[str, object] = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            result = json.loads(exc.read())
        return result

    def metric(self, name: str, labels: str = "") -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=2) as r:
            text = r.read().decode()
        sel = "{" + labels + "}" if labels else ""
        m = re.search(rf"^{re.escape(name + sel)} ([0-9.e+-]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else 0
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise


class AgentLikePublisher:
    """Publishes QoS 1 and resends a message until the broker's PUBACK, like the edge agent."""

    def __init__(self, port: int, client_id: str) -> None:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        c.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # annotated int; it sleeps a float
        c.connect_async("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c

    def send(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            if not self.client.is_connected():
                time.sleep(0.1)
                continue
            info = self.client.publish(topic, payload, qos=1)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=3)
            if info.is_published():
                return
        raise TimeoutError("stopped before PUBACK")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when it arrived
    topic: str
    payload: bytes


class TopicWatcher:
    """Keeps every message on a topic filter (the dead-letter topic, the alert bus) with
    when it came. Returns once the broker has granted the subscription, so nothing
    published after that is missed, and subscribes again after a broker restart."""

    def __init__(self, port: int, topic: str, timeout: float = 10.0) -> None:
        self._received: list[Received] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        c.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # annotated int; it sleeps a float
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, 1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.set()
        c.on_message = lambda cl, u, m: self._keep(Received(time.monotonic(), m.topic,
                                                            bytes(m.payload)))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        if not subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"no SUBACK for {topic} within {timeout} s")

    def _keep(self, message: Received) -> None:
        with self._lock:
            self._received.append(message)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.received()]

    def decoded(self) -> list[dict[str, Any]]:
        """The payloads as JSON objects (dead letters, CloudEvents)."""
        return [json.loads(m.payload) for m in self.received()]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AgentFleet:
    """Devices publishing like agents until `stop()`, a thread and a client each: batches of
    `per_message` readings with consecutive seqs from 1, each sent until the broker's
    PUBACK. `sent` holds only readings the broker acknowledged: what was captured, and
    so what must reach InfluxDB exactly once."""

    def __init__(self, port: int, devices: list[str], *, per_message: int = 5,
                 pause_s: float = 0.1,
                 pm: Callable[[int, int], float] = lambda seq, index: round(
                     5 + (seq * 3.7 + index) % 300, 1)) -> None:
        self.port = port
        self.per_message = per_message
        self.pause_s = pause_s
        self.pm = pm  # PM2.5 of a device's (seq, index): values vary, so a mix-up shows
        self.base_ms = int(time.time() * 1000) - 3_600_000
        self.sent: dict[str, dict[int, Reading]] = {d: {} for d in devices}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._publish, args=(d, i))
                         for i, d in enumerate(devices)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())

    def _publish(self, device: str, index: int) -> None:
        pub = AgentLikePublisher(self.port, f"agent-{device}")
        seq = 0
        try:
            while not self._stop.is_set():
                batch = [reading(s, self.base_ms + s * 500 + index, self.pm(s, index))
                         for s in range(seq + 1, seq + 1 + self.per_message)]
                seq += self.per_message
                try:
                    pub.send(up_topic(device), up_payload(device, batch), self._stop)
                except TimeoutError:
                    return  # stopped before the broker had it: never counted as sent
                for r in batch:
                    self.sent[device][r.seq] = r
                time.sleep(self.pause_s)
        finally:
            pub.close()


def stored_rows(influx: InfluxDB, db: str, measurement: str = "readings"
                ) -> list[dict[str, Any]]:
    return [row for s in influx.series(f"SELECT * FROM {measurement}", db=db)
            for row in s.rows()]


def stored_by_key(influx: InfluxDB, db: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The stored readings by (device, seq): a key with two rows was stored twice."""
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for s in influx.series("SELECT * FROM readings", db=db):
        for row in s.rows():
            by_key.setdefault((str(row["device"]), int(row["seq"])), []).append(row)
    return by_key


def hourly_count(influx: InfluxDB, db: str) -> int:
    """Readings counted in the hourly aggregates (`readings_hourly.pm2_5_count`)."""
    return sum(int(row["pm2_5_count"]) for row in stored_rows(influx, db, "readings_hourly"))


def count(influx: InfluxDB, db: str, device: str | None = None) -> int:
    """Readings stored, of one device or all."""
    where = f" WHERE device='{device}'" if device is not None else ""
    series = influx.series(f"SELECT count(seq) FROM readings{where}", db=db)
    return int(series[0].values[0][1]) if series else 0


def publish_up(port: int, device: str, readings: list[Reading]) -> None:
    pub = AgentLikePublisher(port, f"pub-{device}-{time.monotonic_ns()}")
    try:
        pub.send(up_topic(device), up_payload(device, readings))
    finally:
        pub.close()
