"""Replays and forged payloads against the real collector behind the secured broker.

A captured batch sent again, while the collector runs and after it restarted with an
empty memory, creates no duplicate points and no alert; a payload naming another device
than its topic goes to the dead letter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up
from orchestration.admin.files import write_file
from orchestration.services import InfluxDB
from orchestration.stack import DEMO_RULES
from tests.support.collector_process import count
from tests.support.fixtures import SecuredBroker
from tests.support.mqtt_sessions import Session, connect, device
from tests.support.wait import wait_for


def _collector_config(path: Path, sb: SecuredBroker, influx: InfluxDB, db: str) -> Path:
    write_file(path, (
        "[broker]\n"
        f"port = {sb.port}\n"
        'username = "collector"\n'
        f'password = "{sb.passwords["collector"]}"\n'
        "[influx]\n"
        f'url = "{influx.url}"\n'
        f'database = "{db}"\n'
        "[batch]\n"
        "max_wait_ms = 50\n"
        "[rules]\n"
        f'files = ["{DEMO_RULES}"]\n'
        "tick_interval_s = 0.25\n"
    ))
    return path


def _start_collector(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        proc.wait(15)


def _wait_count(influx: InfluxDB, db: str, device: str, n: int, timeout: float = 20) -> int:
    """The device's stored count once it reached `n`, or when `timeout` ran out."""
    wait_for(lambda: count(influx, db, device) >= n, timeout, step=0.1)
    return count(influx, db, device)


def _wait_collector(a: Session, influx: InfluxDB, db: str, timeout: float = 20) -> None:
    """Publish dev-a's seq 1 until it is stored: the collector has subscribed by then
    (before its first subscription the broker keeps nothing for it)."""
    probe = _batch("dev-a", 1, 20.0)

    def stored() -> bool:
        if count(influx, db, "dev-a") >= 1:
            return True
        a.publish("airgrid/v1/dev/dev-a/up", probe)
        return False

    assert wait_for(stored, timeout, step=0.3), "collector never stored the probe"


def _batch(device: str, seq: int, pm2_5: float) -> bytes:
    r = Reading(seq=seq, ts=int(time.time() * 1000), sensor="pms5003", pm2_5=pm2_5,
                pm10=pm2_5 * 1.2)
    return encode_up(UpBatch(v=SCHEMA_VERSION, device=device, boot="boot-1", readings=(r,)))


def _states(app: Session) -> list[str]:
    with app.lock:
        return [json.loads(p)["data"]["state"] for _, p in app.messages]


def test_replayed_batches_create_no_duplicates_and_no_alerts(
    secured_broker: SecuredBroker, shared_influxdb: InfluxDB, influx_db_name: str,
    tmp_path: Path,
) -> None:
    sb, influx, db = secured_broker, shared_influxdb, influx_db_name
    config = _collector_config(tmp_path / "collector.toml", sb, influx, db)
    log = tmp_path / "collector.log"
    collector = _start_collector(config, log)
    app = connect(sb.port, username="app", password=sb.passwords["app"])
    a = device(sb.tls_port, sb.bundle("dev-a"))
    assert app.ok and a.ok, (app.outcome, a.outcome)
    app.subscribe("airgrid/v1/alerts/#")
    try:
        _wait_collector(a, influx, db)
        # An episode: 300 µg/m³ for 5 s fires the demo rule (150 over 3 s), then clean air
        # resolves it. Every payload is kept, as someone on the path could capture them.
        captured: list[bytes] = []
        seq = 1
        for pm in [300.0] * 20 + [20.0] * 16:
            seq += 1
            captured.append(_batch("dev-a", seq, pm))
            assert a.publish("airgrid/v1/dev/dev-a/up", captured[-1]) in (0, 16)
            time.sleep(0.25)
        assert wait_for(lambda: "resolved" in _states(app), 15, step=0.05), _states(app)
        assert _states(app).count("firing") == 1
        assert _wait_count(influx, db, "dev-a", seq) == seq

        # Replay while the collector runs: dropped as repeats by (device, seq).
        for payload in captured[:20]:
            assert a.publish("airgrid/v1/dev/dev-a/up", payload) in (0, 16)
        seq += 1  # a fresh reading after the replay: once stored, the replay was handled
        assert a.publish("airgrid/v1/dev/dev-a/up", _batch("dev-a", seq, 20.0)) in (0, 16)
        assert _wait_count(influx, db, "dev-a", seq) == seq

        # Replay to a restarted collector, which remembers no seq and no rule state: the
        # rewrite overwrites the same points, and readings older than the rule window
        # cannot fire it.
        _stop(collector, signal.SIGKILL)
        collector = _start_collector(config, log)
        for payload in captured[:20]:
            assert a.publish("airgrid/v1/dev/dev-a/up", payload) in (0, 16)
        seq += 1
        assert a.publish("airgrid/v1/dev/dev-a/up", _batch("dev-a", seq, 20.0)) in (0, 16)
        assert _wait_count(influx, db, "dev-a", seq) == seq
        time.sleep(1.5)  # several rule ticks
        assert count(influx, db, "dev-a") == seq
        assert _states(app).count("firing") == 1, _states(app)
    finally:
        a.close()
        app.close()
        _stop(collector)
    # The collector's log never shows its broker password.
    assert sb.passwords["collector"] not in log.read_text()


def test_payload_naming_another_device_goes_to_the_dead_letter(
    secured_broker: SecuredBroker, shared_influxdb: InfluxDB, influx_db_name: str,
    tmp_path: Path,
) -> None:
    sb, influx, db = secured_broker, shared_influxdb, influx_db_name
    config = _collector_config(tmp_path / "collector.toml", sb, influx, db)
    collector = _start_collector(config, tmp_path / "collector.log")
    watcher = connect(sb.port, username="watcher", password=sb.passwords["watcher"])
    a = device(sb.tls_port, sb.bundle("dev-a"))
    assert watcher.ok and a.ok, (watcher.outcome, a.outcome)
    watcher.subscribe("airgrid/v1/deadletter")
    try:
        _wait_collector(a, influx, db)
        # dev-a may write its own topic, but the payload claims to be dev-b.
        assert a.publish("airgrid/v1/dev/dev-a/up", _batch("dev-b", 1, 400.0)) in (0, 16)
        assert a.publish("airgrid/v1/dev/dev-a/up", _batch("dev-a", 2, 20.0)) in (0, 16)
        assert _wait_count(influx, db, "dev-a", 2) == 2
        wait_for(lambda: bool(watcher.topics()), 10, step=0.05)
        with watcher.lock:
            letters = [json.loads(p) for _, p in watcher.messages]
        assert [d["reason"] for d in letters] == ["device_mismatch"]
        assert letters[0]["topic"] == "airgrid/v1/dev/dev-a/up"
        assert "dev-b" in letters[0]["detail"]
        assert count(influx, db, "dev-b") == 0
    finally:
        a.close()
        watcher.close()
        _stop(collector)
