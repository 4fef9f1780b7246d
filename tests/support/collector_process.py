"""The collector as a process, as the collector tests drive it: started on a generated
config, fed like an agent feeds it (resend until PUBACK), read back from InfluxDB."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt

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
        import json

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
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=client_id)
        c.reconnect_delay_set(0.2, 1)
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


def stored_rows(influx: InfluxDB, db: str, measurement: str = "readings"
                ) -> list[dict[str, object]]:
    res = influx.query(f"SELECT * FROM {measurement}", db=db)
    out: list[dict[str, object]] = []
    for series in res["results"][0].get("series", []):  # type: ignore[index]
        cols = series["columns"]
        out += [dict(zip(cols, row, strict=True)) for row in series["values"]]
    return out


def count(influx: InfluxDB, db: str) -> int:
    res = influx.query("SELECT count(seq) FROM readings", db=db)
    series = res["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def publish_up(port: int, device: str, readings: list[Reading]) -> None:
    pub = AgentLikePublisher(port, f"pub-{device}-{time.monotonic_ns()}")
    try:
        pub.send(up_topic(device), up_payload(device, readings))
    finally:
        pub.close()
