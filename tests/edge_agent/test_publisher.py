"""The publisher and the agent against a real Mosquitto: payloads, auth, TLS, backoff, I2C."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import Reading, UpBatch, decode_up, encode_up
from edge_agent import config as edge_config
from edge_agent.agent import EdgeAgent
from edge_agent.config import BrokerSettings, PublishSettings
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from firmware_sim import pms5003_firmware
from firmware_sim.i2c_bus import FakeI2CBus
from orchestration.services import Mosquitto, free_port
from tests.support.integration import Processes
from tests.support.wait import wait_for


def _publisher(tmp_path: Path, broker: BrokerSettings) -> Publisher:
    ob = Outbox(tmp_path / "o.db")
    return Publisher("pub-1", "b00t", ob, broker, PublishSettings(backoff_max_s=2.0),
                     status=lambda: None)  # type: ignore[arg-type,return-value]


def test_batch_payload_is_byte_identical_to_encode_up(tmp_path: Path) -> None:
    p = _publisher(tmp_path, BrokerSettings(host="127.0.0.1"))
    readings = [p.outbox.capture({"ts": 1_700_000_000_000 + i, "sensor": "sds011",
                                  "pm2_5": 3.5 + i, "flags": ("stuck",)}) for i in range(3)]
    bodies = [b for _, b in p.outbox.oldest_raw(10)]
    expected = encode_up(UpBatch(v=1, device="pub-1", boot="b00t", readings=tuple(readings),
                                 epoch=p.outbox.epoch))
    assert p._batch_payload(bodies) == expected
    assert decode_up(expected).readings == tuple(readings)


def test_backoff_has_jitter_and_a_ceiling(tmp_path: Path) -> None:
    p = _publisher(tmp_path, BrokerSettings(host="127.0.0.1"))
    p._attempt = 0  # as after a successful connection
    delays = [p._set_backoff() for _ in range(12)]
    assert delays[0] <= 1.0 and max(delays) <= 2.0
    assert delays[5:] != [delays[5]] * 7  # jittered: not all equal at the ceiling
    assert all(d >= 1.0 for d in delays[3:])  # equal jitter: at least half the ceiling


def _connects(settings: BrokerSettings, tmp_path: Path) -> bool:
    from edge_agent.doctor import check_broker

    return check_broker(settings, "pub-1", seconds=5).verdict == "OK"


def test_username_password(tmp_path: Path, processes: Processes) -> None:
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "pi-7", "s3cret"], check=True)
    broker = processes.service(
        Mosquitto(tmp_path / "mq", extra_config=f"password_file {pwfile}\n"))
    ok = BrokerSettings(host="127.0.0.1", port=broker.port, username="pi-7", password="s3cret")
    bad = BrokerSettings(host="127.0.0.1", port=broker.port, username="pi-7", password="wrong")
    assert _connects(ok, tmp_path) and not _connects(bad, tmp_path)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _pki(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=airgrid-test-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        extfile = d / f"{name}.ext"
        extfile.write_text(ext + "\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(extfile), "-out", str(d / f"{name}.crt"))


def test_tls_and_mutual_tls(tmp_path: Path, processes: Processes) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _pki(pki)
    tls_port, mtls_port = free_port(), free_port()
    extra = "".join(
        f"listener {port} 127.0.0.1\ncafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
        f"keyfile {pki / 'server.key'}\nrequire_certificate {req}\n"
        for port, req in ((tls_port, "false"), (mtls_port, "true")))
    processes.service(Mosquitto(tmp_path / "mq", extra_config=extra))
    ca = str(pki / "ca.crt")
    assert _connects(BrokerSettings(host="127.0.0.1", port=tls_port, ca_file=ca), tmp_path)
    assert not _connects(BrokerSettings(host="127.0.0.1", port=mtls_port, ca_file=ca), tmp_path)
    assert _connects(BrokerSettings(host="127.0.0.1", port=mtls_port, ca_file=ca,
                                    cert_file=str(pki / "client.crt"),
                                    key_file=str(pki / "client.key")), tmp_path)
    # A CA that did not sign the server's certificate is refused.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=other", "-keyout", str(pki / "o.key"), "-out", str(pki / "o.crt"))
    assert not _connects(BrokerSettings(host="127.0.0.1", port=tls_port,
                                        ca_file=str(pki / "o.crt")), tmp_path)


def _collect(port: int, topic: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.connect("127.0.0.1", port)
    c.subscribe(topic, 1)
    c.loop_start()
    return c, got


def _agent_config(tmp_path: Path, port: int, extra: str) -> edge_config.EdgeConfig:
    path = tmp_path / "edge.toml"
    path.write_text(f'device = "i2c-1"\n{extra}[outbox]\npath = "{tmp_path / "o.db"}"\n'
                    f'[broker]\nhost = "127.0.0.1"\nport = {port}\nkeepalive_s = 10\n'
                    "[publish]\nbackoff_max_s = 2.0\n")
    return edge_config.load(path)


def test_pmsa003i_agent_with_clock_hold_and_fix_up(tmp_path: Path, mosquitto: Mosquitto) -> None:
    bus = FakeI2CBus(values=[pms5003_firmware.values_for(v) for v in (30.0, 32.0, 31.0)])
    cfg = _agent_config(
        tmp_path, mosquitto.port,
        '[sensor]\nmodel = "pmsa003i"\npoll_every_s = 0.1\nwarmup_s = 0\n'
        "[sampling]\ninterval_s = 0.3\n[status]\ninterval_s = 0.5\n"
        "[clock]\nhold_unsynced_s = 60\n",
    )
    synced = threading.Event()
    agent = EdgeAgent(cfg, i2c_bus=bus, clock=synced.is_set)
    watcher, got = _collect(mosquitto.port, "airgrid/v1/dev/i2c-1/#")
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        time.sleep(2.0)
        held = agent.outbox.depth()
        ups = [p for p in got if b'"readings"' in p]
        assert held >= 4 and not ups  # held back while the clock is unsynchronised
        synced.set()  # NTP arrives
        wait_for(lambda: agent.outbox.depth() == 0, 10, step=0.1)
        time.sleep(0.5)
    finally:
        agent.stop(drain_s=2)
        runner.join(5)
        watcher.loop_stop()
    readings: list[Reading] = [r for p in got if b'"readings"' in p
                               for r in decode_up(p).readings]
    assert len(readings) >= held
    first = readings[:held]
    # Restamped: monotonic-derived times, in order, no longer flagged.
    assert all(r.clock_synced and "clock_unsynced" not in r.flags for r in first)
    assert [r.ts for r in first] == sorted(r.ts for r in first)
    assert abs(first[-1].ts - first[0].ts - 300 * (held - 1)) < 300 * held * 0.5
    assert {r.sensor for r in readings} == {"pmsa003i"}
    assert all(30 <= (r.pm2_5 or 0) <= 32 for r in readings)
    statuses = [p for p in got if b'"state"' in p]
    assert any(b'"sensor_state":"ok"' in p and b"sensor_run_hours" in p for p in statuses)


def test_sds011_agent_in_query_mode(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from firmware_sim.pty_port import PtyPort
    from firmware_sim.sds011_device import Sds011Device

    dev = Sds011Device(port=PtyPort(tmp_path / "tty"), profile=lambda t: 41.5,
                       frame_period_s=0.1, period_min=3)
    sim = threading.Thread(target=dev.run, daemon=True)
    sim.start()
    cfg = _agent_config(
        tmp_path, mosquitto.port,
        f'[sensor]\nmodel = "sds011"\nport = "{tmp_path / "tty"}"\nmode = "polled"\n'
        "poll_every_s = 0.1\nwarmup_s = 0\nworking_period_min = 0\n"
        "[sampling]\ninterval_s = 0.5\n[clock]\ntrust_system_clock = true\n",
    )
    agent = EdgeAgent(cfg)
    watcher, got = _collect(mosquitto.port, "airgrid/v1/dev/i2c-1/up")
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(got) >= 3, 10, step=0.1)
    finally:
        agent.stop(drain_s=1)
        runner.join(5)
        watcher.loop_stop()
        dev.stop()
        sim.join(5)
        dev.port.close()
    readings = [r for p in got for r in decode_up(p).readings]
    assert len(readings) >= 3
    assert all(r.sensor == "sds011" and r.pm2_5 == 41.5 and r.pm10 == 54.0
               and r.n0_3 is None for r in readings)
    assert dev.query_mode and dev.period_min == 0  # the agent configured the sensor


def test_a_batch_in_flight_when_the_broker_stalls_is_never_counted_dropped(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # The broker is stopped (SIGSTOP) with a batch sent and not acknowledged; the outage
    # then outlasts the cap. The client sends that batch again once the broker runs, so
    # what is counted dropped must be exactly what never arrives.
    from airgrid.wire import Status, up_topic

    ob = Outbox(tmp_path / "o.db", max_rows=10)
    online = Status(v=1, device="pub-1", state="online")
    pub = Publisher("pub-1", "b00t", ob, BrokerSettings(host="127.0.0.1", port=mosquitto.port),
                    PublishSettings(window=1, batch_max=3, backoff_max_s=2.0),
                    status=lambda: online)
    watcher, got = _collect(mosquitto.port, up_topic("pub-1", "airgrid"))
    pid = mosquitto.pid
    assert pid is not None
    pub.start()
    try:
        assert wait_for(lambda: pub.connected, 10, step=0.05)
        time.sleep(0.3)  # the watcher's subscription is in place
        os.kill(pid, signal.SIGSTOP)
        for i in range(3):
            ob.capture({"ts": 1_700_000_000_000 + i, "sensor": "sds011", "pm2_5": 5.0})
        pub.notify()
        assert wait_for(lambda: pub.inflight() == 1, 5, step=0.02)
        for i in range(20):
            ob.capture({"ts": 1_700_000_100_000 + i, "sensor": "sds011", "pm2_5": 6.0})
        dropped, handed = ob.counters()["dropped"], ob.depth() - 10
        assert handed >= 1 and dropped == 23 - 10 - handed  # the newest 10 unsent kept
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert wait_for(lambda: ob.depth() == 0, 20, step=0.1)
        time.sleep(0.5)
    finally:
        pub.stop()
        watcher.loop_stop()
    received = {r.seq for p in got for r in decode_up(p).readings}
    missing = sorted(set(range(1, 24)) - received)
    assert received <= set(range(1, 24))
    assert len(missing) == dropped == ob.counters()["dropped"], (missing, dropped)
    assert missing == list(range(missing[0], missing[0] + dropped))
    assert max(received) == 23 and {1, 2, 3} & received
