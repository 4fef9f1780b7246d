"""`airgrid stack up|down|status`: a county left running after the command returns.

`up` starts the stack (orchestration/stack.py) with a county's collector
(orchestration/county.py) and records every process in DIR/stack.json: PID, the kernel's
start time of that PID and its command line. `down` stops exactly those processes: a PID
whose start time differs is some other process that reused the number, and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collector.workorders.workers import from_registry
from orchestration.county import CountyServices, county_devices
from orchestration.services import InfluxDB, Mosquitto, terminate
from orchestration.stack import DEFAULT_RULES, Stack, Timing

STATE_FILE = "stack.json"
#: stopped in this order: sensors and agents first (agents flush their outboxes on
#: SIGTERM while the broker still runs), the broker last
STOP_ORDER = ("sim-", "edge-", "collector", "modem", "influxd", "mosquitto")


class StackControlError(RuntimeError):
    """The stack directory is missing, in use, or its record is unreadable."""


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int  # clock ticks after boot, /proc/PID/stat field 22 (proc(5))
    cmdline: list[str]


def proc_start_time(pid: int) -> int | None:
    """The start time of PID, or None when no such process runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # field 22; fields[0] is field 3


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def record(name: str, pid: int) -> ProcessRecord:
    start = proc_start_time(pid)
    if start is None:
        raise StackControlError(f"{name} (pid {pid}) exited during start-up")
    return ProcessRecord(name, pid, start, proc_cmdline(pid))


def is_ours(rec: ProcessRecord) -> bool:
    """Still the process that was started: a PID and its start time name one process for
    the whole uptime of the machine. (The command line is recorded for people; reading it
    can come back empty for a live process, so it does not decide.)"""
    return proc_start_time(rec.pid) == rec.start_time


def up(workdir: Path, devices: int) -> dict[str, Any]:
    """Start a county in `workdir` and return what `stack up` prints."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / STATE_FILE
    if state.exists() and any(is_ours(r) for r in read_records(workdir)):
        raise StackControlError(
            f"{workdir}: a stack already runs here; `airgrid stack down --dir {workdir}` first")
    sims = county_devices(devices)
    county = CountyServices(sims)
    broker = Mosquitto(workdir / "mosquitto")
    influx = InfluxDB(workdir / "influxdb")
    stack = Stack(workdir / "stack", broker, influx, sims, Timing(sample_interval_s=5.0),
                  rules_file=DEFAULT_RULES, county=county)
    modem: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        influx.start()
        # the modem is there before the collector opens it
        modem = stack.spawn("modem", county.modem_args(stack.workdir))
        stack.wait_for_path(county.modem_link(stack.workdir))
        stack.start()
        procs = {"mosquitto": broker.proc, "influxd": influx.proc, "modem": modem,
                 **stack.processes()}
        records = [record(name, p.pid) for name, p in procs.items() if p is not None]
    except BaseException:
        stack.stop()
        terminate(modem)
        influx.stop()
        broker.stop()
        raise
    summary: dict[str, Any] = {
        "mqtt_port": broker.port,
        "influx_url": influx.url,
        "influx_db": stack.database,
        "metrics_url": county.metrics_url,
        "api_url": county.api_url,
        "app_url": county.app_url,
        # the registry's grid workers: `airgrid-admin worker-link --config COLLECTOR_CONFIG
        # ID` prints each one's sign-in link
        "workers": [{"id": w.id, "grid": w.grid, "township": w.township}
                    for w in from_registry(stack.workdir / "config" / "registry.yaml").values()
                    if w.role == "grid_worker"],
        "collector_config": str(stack.workdir / "config" / "collector.toml"),
        "registry": str(stack.workdir / "config" / "registry.yaml"),
        "devices": [d.device for d in sims],
        "pids": {r.name: r.pid for r in records},
    }
    state.write_text(json.dumps(
        {"summary": summary, "processes": [asdict(r) for r in records]},
        ensure_ascii=False, indent=1))
    state.chmod(0o600)
    # The Popen objects are dropped without waiting: the children run in their own
    # sessions and outlive this process (the kernel re-parents them).
    return summary


def read_records(workdir: Path) -> list[ProcessRecord]:
    path = workdir / STATE_FILE
    try:
        data = json.loads(path.read_text())
        return [ProcessRecord(**r) for r in data["processes"]]
    except FileNotFoundError:
        raise StackControlError(f"{path}: no stack recorded here (run `airgrid stack up`)"
                                ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StackControlError(f"{path}: unreadable stack record: {exc}") from exc


def status(workdir: Path) -> dict[str, Any]:
    records = read_records(workdir)
    summary = json.loads((workdir / STATE_FILE).read_text())["summary"]
    return {**summary, "running": {r.name: is_ours(r) for r in records}}


def _order(rec: ProcessRecord) -> int:
    return next((i for i, p in enumerate(STOP_ORDER) if rec.name.startswith(p)),
                len(STOP_ORDER))


def _wait_gone(recs: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    deadline = time.monotonic() + timeout
    left = [r for r in recs if is_ours(r)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [r for r in left if is_ours(r)]
    return left


def down(workdir: Path, timeout: float = 15.0) -> dict[str, Any]:
    """Stop the recorded processes (SIGTERM, then SIGKILL after `timeout`), group by group
    in STOP_ORDER; returns what was stopped, what had already gone and what was a
    different process under a reused PID."""
    records = sorted(read_records(workdir), key=_order)
    stopped: dict[str, int] = {}
    killed: dict[str, int] = {}
    gone: list[str] = []
    for prefix in (*STOP_ORDER, ""):
        group = [r for r in records if _order(r) == STOP_ORDER.index(prefix)] if prefix else \
            [r for r in records if _order(r) == len(STOP_ORDER)]
        live = []
        for r in group:
            if not is_ours(r):
                gone.append(r.name)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.pid, signal.SIGTERM)
            live.append(r)
        for r in _wait_gone(live, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.pid, signal.SIGKILL)
            killed[r.name] = r.pid
        _wait_gone(live, 5.0)
        stopped.update({r.name: r.pid for r in live})
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return {"stopped": stopped, "killed_after_timeout": killed, "already_gone": gone}
