"""The whole system as real processes: simulated sensors, one edge agent each, a collector.

Used by `airgrid demo`, the end-to-end tests and the benchmarks. Mosquitto and InfluxDB
come from orchestration.services; everything else is started here as child processes with
generated configs, and stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import alert_rules
from orchestration.services import InfluxDB, Mosquitto, terminate

if TYPE_CHECKING:
    from orchestration.county import CountyServices

DEMO_RULES = Path(alert_rules.__file__).with_name("demo_rules.yaml")
#: the demo's sensor fault for the technician, apart from DEMO_RULES (which tests and
#: benches scale and count alerts of)
DEMO_FAULT_RULES = Path(alert_rules.__file__).with_name("demo_fault_rules.yaml")
DEFAULT_RULES = Path(alert_rules.__file__).with_name("default_rules.yaml")


@dataclass(frozen=True)
class SimDevice:
    device: str
    scenario: str = "clean"  # or "episode"
    baseline: float = 25.0
    peak: float = 220.0
    episode_start_s: float = 15.0
    episode_length_s: float = 30.0
    seed: int = 0
    freeze_at_s: float | None = None  # the sensor freezes this long after start (a fault)


@dataclass
class Timing:
    frame_period_s: float = 0.2
    sample_interval_s: float = 1.0
    warmup_s: float = 0.0
    status_interval_s: float = 5.0


@dataclass
class Stack:
    workdir: Path
    broker: Mosquitto
    influx: InfluxDB
    devices: list[SimDevice]
    timing: Timing = field(default_factory=Timing)
    rules_file: Path = DEMO_RULES
    extra_rules: tuple[Path, ...] = ()  # more rule files for the collector
    database: str = "airgrid"
    #: per-device broker port (e.g. a NetCut relay) instead of the broker's own
    broker_ports: dict[str, int] = field(default_factory=dict)
    #: per-device outbox cap (rows)
    outbox_caps: dict[str, int] = field(default_factory=dict)
    #: a county: registry, /metrics, alerting with its HTTP API (None: the bare collector)
    county: CountyServices | None = None
    #: more collector config (TOML tables: a registry, alerting channels, ...)
    collector_extra: str = ""
    sims: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    collector: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    # --- paths ----------------------------------------------------------------------

    def tty(self, device: str) -> Path:
        return self.workdir / "tty" / device

    def outbox(self, device: str) -> Path:
        return self.workdir / "outbox" / f"{device}.db"

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / "logs").joinpath(f"{name}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    # --- start ----------------------------------------------------------------------

    def start_sim(self, d: SimDevice) -> None:
        self.sims[d.device] = self.spawn(f"sim-{d.device}", [
            "firmware_sim.cli", "pms5003", "--link", str(self.tty(d.device)),
            "--scenario", d.scenario, "--baseline", str(d.baseline), "--peak", str(d.peak),
            "--episode-start", str(d.episode_start_s),
            "--episode-length", str(d.episode_length_s),
            "--frame-period", str(self.timing.frame_period_s),
            "--warmup", str(self.timing.warmup_s), "--seed", str(d.seed),
            *([] if d.freeze_at_s is None else ["--freeze-at", str(d.freeze_at_s)]),
        ])

    def agent_config(self, device: str) -> Path:
        t = self.timing
        path = self.workdir / "config" / f"edge-{device}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'device = "{device}"\n'
            "[sensor]\n"
            f'port = "{self.tty(device)}"\n'
            f"warmup_s = {t.warmup_s}\n"
            f"silent_after_s = {max(5.0, 10 * t.frame_period_s)}\n"
            "[sampling]\n"
            f"interval_s = {t.sample_interval_s}\n"
            "[outbox]\n"
            f'path = "{self.outbox(device)}"\n'
            f"max_rows = {self.outbox_caps.get(device, 1_000_000)}\n"
            "[broker]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.broker_ports.get(device, self.broker.port)}\n"
            "keepalive_s = 10\n"
            "[publish]\n"
            "resend_after_s = 20.0\n"
            "backoff_max_s = 2.0\n"
            "[clock]\n"
            "trust_system_clock = true\n"
            "[status]\n"
            f"interval_s = {t.status_interval_s}\n"
        )
        return path

    def start_agent(self, device: str) -> None:
        config = self.agent_config(device)
        self.agents[device] = self.spawn(
            f"edge-{device}", ["edge_agent.cli", "run", "--config", str(config)]
        )

    def collector_config(self) -> Path:
        path = self.workdir / "config" / "collector.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "[broker]\n"
            f"port = {self.broker.port}\n"
            "[influx]\n"
            f'url = "{self.influx.url}"\n'
            f'database = "{self.database}"\n'
            "[batch]\n"
            "max_wait_ms = 100\n"
            "[rules]\n"
            f"files = {json.dumps([str(p) for p in (self.rules_file, *self.extra_rules)])}\n"
            "tick_interval_s = 0.5\n"
            + (self.county.collector_tables(self.workdir) if self.county else "")
            + self.collector_extra
        )
        if self.county:
            path.chmod(0o600)  # it holds the API token
        return path

    def start_collector(self, wait_s: float = 30.0) -> None:
        """Start the collector and wait for its first subscription: a reading published
        before the collector's session exists would be acknowledged and dropped by the
        broker (there is no subscriber yet)."""
        log = self.workdir / "logs" / "collector.log"
        mark = log.stat().st_size if log.exists() else 0
        self.collector = self.spawn(
            "collector", ["collector.cli", "run", "--config", str(self.collector_config())]
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.collector.poll() is None:
            with log.open("rb") as f:
                f.seek(mark)
                if b"subscribed to device topics" in f.read():
                    return
            time.sleep(0.05)

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every child this stack started and that still runs, by a name for people."""
        out = {f"sim-{d}": p for d, p in self.sims.items()}
        out.update({f"edge-{d}": p for d, p in self.agents.items()})
        if self.collector is not None:
            out["collector"] = self.collector
        return {name: p for name, p in out.items() if p.poll() is None}

    def start(self) -> None:
        self.influx.create_database(self.database)
        self.start_collector()
        for d in self.devices:
            self.start_sim(d)
        for d in self.devices:
            self.wait_for_path(self.tty(d.device))
            self.start_agent(d.device)

    @staticmethod
    def wait_for_path(path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear")
            time.sleep(0.02)

    # --- observe --------------------------------------------------------------------

    def outbox_counts(self, device: str) -> tuple[int, int, int]:
        """(captured, pending, dropped) read from the agent's outbox."""
        path = self.outbox(device)
        if not path.exists():
            return 0, 0, 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            (pending,) = db.execute("SELECT count(*) FROM readings").fetchone()
        except sqlite3.OperationalError:
            return 0, 0, 0
        finally:
            db.close()
        return int(meta.get("last_seq", 0)), int(pending), int(meta.get("dropped", 0))

    def captured(self) -> dict[str, int]:
        return {d.device: self.outbox_counts(d.device)[0] for d in self.devices}

    def pending(self) -> int:
        return sum(self.outbox_counts(d.device)[1] for d in self.devices)

    def stored(self) -> dict[str, int]:
        """Distinct readings per device in InfluxDB (a point's identity is device + time)."""
        res = self.influx.query(
            "SELECT count(seq) FROM readings GROUP BY device", db=self.database
        )
        out = {d.device: 0 for d in self.devices}
        results: list[dict[str, Any]] = res.get("results", [])  # type: ignore[assignment]
        for result in results:
            for series in result.get("series", []):
                out[series["tags"]["device"]] = int(series["values"][0][1])
        return out

    # --- stop -----------------------------------------------------------------------

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
        terminate(proc, timeout)

    def kill_agent(self, device: str) -> None:
        proc = self.agents.pop(device)
        proc.kill()
        proc.wait(5)

    def kill_collector(self) -> None:
        if self.collector is not None:
            self.collector.kill()
            self.collector.wait(5)
            self.collector = None

    def stop_sims(self) -> None:
        for proc in self.sims.values():
            self._terminate(proc)
        self.sims.clear()

    def _complete(self, counts: dict[str, tuple[int, int, int]]) -> bool:
        stored = self.stored()
        return all(stored[dev] >= captured - dropped
                   for dev, (captured, _, dropped) in counts.items())

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every outbox is empty and InfluxDB holds every captured reading
        (less those an overflowing outbox dropped, which are counted there)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = {d.device: self.outbox_counts(d.device) for d in self.devices}
            if all(pending == 0 for _, pending, _ in counts.values()) and self._complete(counts):
                # An agent may still hold the last frames it read: stable over one
                # sample interval means done.
                time.sleep(self.timing.sample_interval_s + 0.3)
                again = {d.device: self.outbox_counts(d.device) for d in self.devices}
                if again == counts and self._complete(again):
                    return True
            time.sleep(0.25)
        return False

    def stop_agents(self) -> None:
        """SIGTERM: each agent publishes what its outbox still holds before it exits."""
        for proc in self.agents.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.agents.values():
            self._terminate(proc)
        self.agents.clear()

    def quiesce(self, timeout: float = 60.0) -> bool:
        """End the run so that the counts are final: sensors stop, outboxes drain while
        the agents still run, then the agents stop (an agent may capture one last reading
        from frames it already had) and that drains too."""
        self.stop_sims()
        drained = self.drain(timeout)
        self.stop_agents()
        return self.drain(min(timeout, 30.0)) and drained

    def stop(self) -> None:
        self.stop_sims()
        self.stop_agents()
        self._terminate(self.collector)
        self.collector = None
