"""The agent's outbox on a bad disk: locked, read-only, full, damaged.

Each test runs the real `airgrid-edge run` process with a simulated PMS5003 on a
pseudo-terminal and a real Mosquitto. The read-only and the full disk are real small
tmpfs mounts (skipped with the reason where mounting is not allowed).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import Status, decode_status, decode_up
from edge_agent.cli import EXIT_NOT_WRITABLE
from edge_agent.outbox import Outbox
from orchestration.services import Mosquitto
from tests.support.integration import Processes
from tests.support.wait import wait_for

PENDING = 30  # readings waiting in the outbox before the agent starts


def _values(ts: int) -> dict[str, object]:
    return {"ts": ts, "sensor": "pms5003", "pm1_0": 5.0, "pm2_5": 12.0, "pm10": 20.0,
            "flags": (), "clock_synced": True}


def _outbox_with_pending(path: Path, n: int = PENDING) -> None:
    ob = Outbox(path)
    for i in range(n):
        ob.capture(_values(1_700_000_000_000 + i * 1000))
    ob.close()


class Watcher:
    """Subscribes to one device's up and status topics on the real broker.

    `persistent`: a session the broker keeps (it has persistence on) across a restart,
    with QoS 1 messages queued while the watcher is away. A test that restarts the
    broker under a running agent subscribes this way before the stop: a watcher that
    subscribes after the restart races the agent, whose acknowledged readings are not
    sent again."""

    def __init__(self, port: int, device: str, persistent: bool = False) -> None:
        self.seqs: list[int] = []
        self.statuses: list[Status] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self._topics = [(f"airgrid/v1/dev/{device}/up", 1),
                        (f"airgrid/v1/dev/{device}/status", 1)]
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"watch-{device}" if persistent else "",
                                  clean_session=not persistent)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(self._topics)
        self.client.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            if m.topic.endswith("/up"):
                self.seqs += [r.seq for r in decode_up(m.payload).readings]
            else:
                self.statuses.append(decode_status(m.payload))

    def got(self) -> set[int]:
        with self._lock:
            return set(self.seqs)

    def last_status(self) -> Status | None:
        with self._lock:
            return self.statuses[-1] if self.statuses else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    made: list[Watcher] = []
    yield made
    for w in made:
        w.close()


def _sim(processes: Processes, tmp_path: Path) -> Path:
    link = tmp_path / "tty"
    processes.popen(
        [sys.executable, "-m", "firmware_sim.cli", "pms5003", "--link", str(link),
         "--frame-period", "0.02", "--warmup", "0", "--seconds", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(link.exists, 10), "the simulator never made its pseudo-terminal"
    return link


def _agent(processes: Processes, tmp_path: Path, device: str, tty: Path, outbox: Path,
           broker_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'device = "{device}"\n[sensor]\nport = "{tty}"\nwarmup_s = 0\n'
        f'[sampling]\ninterval_s = 0.1\n[outbox]\npath = "{outbox}"\n'
        f"[broker]\nhost = \"127.0.0.1\"\nport = {broker_port}\nkeepalive_s = 10\n"
        "[publish]\nbackoff_max_s = 1.0\n[clock]\ntrust_system_clock = true\n"
        "[status]\ninterval_s = 0.5\n")
    log = tmp_path / f"{device}.log"
    with log.open("wb") as out:
        proc = processes.popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config),
             "--drain", "0"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, log


def _max_seq(outbox: Path) -> int:
    """The newest seq in the outbox, read without writing (the disk may be full)."""
    if not outbox.exists():
        return 0
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM readings").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    return int(seq)


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_outbox_locked_at_start_is_waited_for_and_its_readings_are_sent(
    tmp_path: Path, processes: Processes, mosquitto: Mosquitto, watchers: list[Watcher]
) -> None:
    dev, outbox = "locked-1", tmp_path / "outbox" / "o.db"
    _outbox_with_pending(outbox)
    # Another process holds the write lock for 8 s: longer than SQLite's 5 s busy timeout.
    locker = processes.popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"db = sqlite3.connect({str(outbox)!r}, isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE')\n"
         "db.execute(\"UPDATE meta SET value = value WHERE key = 'dropped'\")\n"
         "print('locked', flush=True)\n"
         "time.sleep(8)\n"],
        stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    watchers.append(w := Watcher(mosquitto.port, dev))
    agent, log = _agent(processes, tmp_path, dev, _sim(processes, tmp_path), outbox,
                        mosquitto.port)
    assert wait_for(lambda: "is locked by another process" in _text(log), 15, step=0.2), \
        _text(log)
    assert f"pid {locker.pid}" in _text(log)
    # Once the lock is gone, every pending reading is sent, and capture goes on after them.
    assert wait_for(lambda: set(range(1, PENDING + 1)) <= w.got()
                    and max(w.got()) > PENDING + 5, 30, step=0.2), (sorted(w.got()), _text(log))
    assert agent.poll() is None
    assert not list(outbox.parent.glob("o.db.corrupt-*")) and "corrupt" not in _text(log)


def test_read_only_outbox_is_named_not_touched_and_exits_73(
    tmp_path: Path, processes: Processes, mosquitto: Mosquitto, small_fs: Path
) -> None:
    outbox = small_fs / "o.db"
    _outbox_with_pending(outbox, 5)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in small_fs.iterdir()}
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    agent, log = _agent(processes, tmp_path, "ro-1", _sim(processes, tmp_path), outbox,
                        mosquitto.port)
    assert agent.wait(30) == EXIT_NOT_WRITABLE, _text(log)
    text = _text(log)
    assert "Traceback" not in text and "corrupt" not in text, text
    assert f"outbox {outbox} is not writable" in text
    assert f"directory {small_fs}: Read-only file system (errno 30)" in text
    assert f"file {outbox}: Read-only file system (errno 30)" in text
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in small_fs.iterdir()}
    assert after == before


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses (ENOSPC)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    return filler


def test_full_disk_keeps_publishing_counts_what_it_lost_and_resumes(
    tmp_path: Path, processes: Processes, mosquitto: Mosquitto, small_fs: Path,
    watchers: list[Watcher],
) -> None:
    dev, outbox = "full-1", small_fs / "o.db"
    # the watcher's session outlives the restart: whatever the agent sends once the
    # broker is back is queued for it, however the two reconnects fall
    watchers.append(w := Watcher(mosquitto.port, dev, persistent=True))
    assert w.subscribed.wait(10)
    mosquitto.stop()  # readings pile up in the outbox first
    agent, log = _agent(processes, tmp_path, dev, _sim(processes, tmp_path), outbox,
                        mosquitto.port)
    assert wait_for(lambda: _max_seq(outbox) >= 20, 20, step=0.2), _text(log)
    filler = _fill(small_fs)
    assert wait_for(lambda: "the disk is full" in _text(log), 10, step=0.2), _text(log)
    stored = _max_seq(outbox)
    mosquitto.start()
    # What was captured before the disk filled is still published ...
    assert wait_for(lambda: set(range(1, stored + 1)) <= w.got(), 30, step=0.2), (
        stored, sorted(w.got()), _text(log))
    # ... the readings it could not capture are counted in the status and the log ...
    assert wait_for(lambda: (s := w.last_status()) is not None and s.uncaptured >= 5, 15,
                    step=0.2), (w.last_status(), _text(log))
    assert agent.poll() is None and "Traceback" not in _text(log)
    line = next(x for x in _text(log).splitlines() if "the disk is full" in x)
    assert f"bytes free on the filesystem of {small_fs}" in line
    # ... and capture resumes when space returns, after the stored ones.
    filler.unlink()
    assert wait_for(lambda: max(w.got()) > stored + 5, 20, step=0.2), (stored, _text(log))
    assert "capturing again" in _text(log) and agent.poll() is None
    assert w.got() >= set(range(1, stored + 1))


def test_agent_started_on_a_full_disk_waits_for_space_then_sends_what_it_had(
    tmp_path: Path, processes: Processes, mosquitto: Mosquitto, small_fs: Path,
    watchers: list[Watcher],
) -> None:
    dev, outbox = "startfull-1", small_fs / "o.db"
    _outbox_with_pending(outbox, 10)
    filler = _fill(small_fs)
    watchers.append(w := Watcher(mosquitto.port, dev))
    agent, log = _agent(processes, tmp_path, dev, _sim(processes, tmp_path), outbox,
                        mosquitto.port)
    assert wait_for(lambda: "cannot be opened: the disk is full" in _text(log), 10,
                    step=0.2), _text(log)
    assert agent.poll() is None and "Traceback" not in _text(log)
    filler.unlink()
    assert wait_for(lambda: set(range(1, 11)) <= w.got() and max(w.got()) > 15, 20,
                    step=0.2), (sorted(w.got()), _text(log))
    assert not list(small_fs.glob("o.db.corrupt-*"))
