"""Real Mosquitto and InfluxDB 1.x processes on loopback, for the demo and the tests.

Each service writes its generated config into its own directory, listens on a free
loopback port, is waited for until it answers, and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import msgspec


class ServiceError(RuntimeError):
    """A service binary is missing or did not become ready."""


class QueryError(ServiceError):
    """InfluxDB answered an InfluxQL query with an error (a wrong query: not retried)."""


#: where `free_port` looks when the kernel's ephemeral range cannot be read
_EPHEMERAL_DEFAULT = (32768, 60999)
_LOWEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range. A port the kernel
    hands out for port 0 is also the pool every outgoing connection draws from: between
    picking it and a service binding it, a client socket (a load generator opens
    thousands) can take it, and the service fails with "Address already in use". Below
    the range only another `free_port` caller can, and a random pick makes that rare."""
    lo, _ = _ephemeral_range()
    if lo - 1 > _LOWEST_PORT + 1000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(_LOWEST_PORT, lo)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find_binary(name: str, *extra: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in extra:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(f"{name} not found; run `make setup` (installs Debian's package)")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: stop a child by PID without leaving it behind."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


class _Process:
    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.log_path = workdir / f"{self.name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.proc.returncode}: {self._log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} not ready after {timeout} s: {self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


class Mosquitto(_Process):
    """Mosquitto 2.x with one anonymous loopback listener and persistence on."""

    name = "mosquitto"

    def __init__(self, workdir: Path, extra_config: str = "", base_config: str | None = None
                 ) -> None:
        super().__init__(workdir)
        self.binary = _find_binary("mosquitto", "/usr/sbin/mosquitto")
        self.config_path = workdir / "mosquitto.conf"
        self.extra_config = extra_config
        # A complete config (e.g. from `airgrid-admin broker-config`) used instead of the
        # anonymous listener below; it must listen on `self.port`, which the ready check dials.
        self.base_config = base_config

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password file, ACLs and CRL."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def _command(self) -> list[str]:
        # `user root` keeps Mosquitto from dropping to the `mosquitto` user, which could
        # not write into a temp dir owned by whoever runs the tests.
        user = "user root\n" if os.geteuid() == 0 else ""
        if self.base_config is not None:
            self.config_path.write_text(f"{user}{self.base_config}{self.extra_config}")
            return [self.binary, "-c", str(self.config_path)]
        self.config_path.write_text(
            f"{user}"
            "per_listener_settings false\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "set_tcp_nodelay true\n"  # small MQTT packets must not wait for Nagle
            f"listener {self.port} 127.0.0.1\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra_config}"
        )
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        # A CONNACK to a bare MQTT 3.1.1 CONNECT proves the broker is serving.
        connect = bytes.fromhex("101000044d5154540402003c0004") + b"prbe"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(connect)
                return s.recv(4)[:1] == b"\x20"
        except OSError:
            return False


class QuerySeries(msgspec.Struct):
    """One series of an InfluxQL answer as InfluxDB 1.x's `/query` gives it."""

    name: str = ""
    columns: list[str] = []
    values: list[list[Any]] = []  # JSON cells: numbers, strings, booleans, null
    tags: dict[str, str] = {}

    def rows(self) -> list[dict[str, Any]]:
        """Each row as {column: value}, with the series' tags."""
        return [{**self.tags, **dict(zip(self.columns, row, strict=True))}
                for row in self.values]


class _StatementAnswer(msgspec.Struct):
    series: list[QuerySeries] = []
    error: str = ""


class _QueryAnswer(msgspec.Struct):
    results: list[_StatementAnswer] = []
    error: str = ""


class InfluxDB(_Process):
    """Debian's InfluxDB 1.x (`influxd`), HTTP on a free loopback port."""

    name = "influxd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _find_binary("influxd", "/usr/bin/influxd")
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        d = self.workdir
        self.config_path.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[logging]
  level = "warn"
"""
        )
        return [self.binary, "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as resp:
                return int(resp.status) == 204
        except (OSError, urllib.error.URLError):
            return False

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        """Run an InfluxQL query over HTTP and return the decoded JSON."""
        import json

        params = {"q": q, "epoch": "ms"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as resp:
            result: dict[str, object] = json.loads(resp.read())
        return result

    def series(self, q: str, db: str | None = None) -> list[QuerySeries]:
        """The series of a one-statement InfluxQL query (none when nothing matched)."""
        answer = msgspec.convert(self.query(q, db), _QueryAnswer)
        error = answer.error or (answer.results[0].error if answer.results else "")
        if error:
            raise QueryError(f"InfluxQL {q!r}: {error}")
        return answer.results[0].series if answer.results else []

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')
