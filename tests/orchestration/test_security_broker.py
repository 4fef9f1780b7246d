"""The generated broker config, enforced by a real Mosquitto: who may connect, write, read."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from airgrid.wire import SCHEMA_VERSION, Status, decode_up
from edge_agent import config as edge_config
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from orchestration.admin.broker_config import is_loopback
from orchestration.admin.ca import CertificateAuthority, create_ca
from orchestration.admin.cli import main as admin_main
from orchestration.admin.files import write_file
from orchestration.services import Mosquitto, free_port
from tests.support.fixtures import SecuredBroker
from tests.support.integration import Processes
from tests.support.mqtt_sessions import Session, connect, device
from tests.support.wait import wait_for

NOT_AUTHORIZED = 135  # MQTT v5 reason code 0x87 (PUBACK, SUBACK, CONNACK)
#: PUBACK success codes: 0, or 16 "no matching subscribers" (MQTT v5 §3.4.2.1).
ACCEPTED = (0, 16)


def _received(session: Session, topic: str) -> bool:
    return wait_for(lambda: topic in session.topics(), 5.0)


def _watcher(sb: SecuredBroker) -> Session:
    w = connect(sb.port, username="watcher", password=sb.passwords["watcher"])
    assert w.ok, w.outcome
    return w


def test_device_cannot_publish_under_another_devices_topic(secured_broker: SecuredBroker) -> None:
    sb = secured_broker
    watcher = _watcher(sb)
    assert watcher.subscribe("airgrid/v1/dev/+/up") == [1]
    a = device(sb.tls_port, sb.bundle("dev-a"))
    assert a.ok, a.outcome
    try:
        assert a.publish("airgrid/v1/dev/dev-b/up", b'{"forged": true}') == NOT_AUTHORIZED
        assert a.publish("airgrid/v1/alerts/pm25_heavy/dev-b", b"{}") == NOT_AUTHORIZED
        assert a.publish("airgrid/v1/deadletter", b"{}") == NOT_AUTHORIZED
        # Its own topic goes through; once that arrived, the forged one (sent earlier on
        # the same connection) would have too.
        assert a.publish("airgrid/v1/dev/dev-a/up", b"own") in ACCEPTED
        assert _received(watcher, "airgrid/v1/dev/dev-a/up")
        assert watcher.topics() == ["airgrid/v1/dev/dev-a/up"]
    finally:
        a.close()
        watcher.close()


def test_client_id_of_another_device_does_not_take_its_session(
    secured_broker: SecuredBroker,
) -> None:
    sb = secured_broker
    b = device(sb.tls_port, sb.bundle("dev-b"), client_id="airgrid-edge-dev-b")
    assert b.ok and b.subscribe("airgrid/v1/dev/dev-b/cmd/#") == [1]
    # dev-a claims dev-b's client id: the broker uses the certificate's CN instead, so
    # dev-b stays connected and keeps receiving its own commands.
    a = device(sb.tls_port, sb.bundle("dev-a"), client_id="airgrid-edge-dev-b")
    assert a.ok, a.outcome
    collector = connect(sb.port, username="collector", password=sb.passwords["collector"])
    try:
        assert collector.publish("airgrid/v1/dev/dev-b/cmd/config", b"x") in ACCEPTED
        assert _received(b, "airgrid/v1/dev/dev-b/cmd/config")
        assert a.topics() == []
    finally:
        for s in (a, b, collector):
            s.close()


def test_unknown_certificates_are_refused(secured_broker: SecuredBroker, tmp_path: Path) -> None:
    sb = secured_broker
    # A certificate with a valid-looking CN, signed by a CA the county never made.
    other = create_ca("rogue")
    rogue = CertificateAuthority(other.key_pem, other.cert_pem).issue_device("dev-a")
    write_file(tmp_path / "rogue.crt", rogue.cert_pem)
    write_file(tmp_path / "rogue.key", rogue.key_pem)
    s = connect(sb.tls_port, ca=sb.bundle("dev-a") / "ca.crt", cert=tmp_path / "rogue.crt",
                key=tmp_path / "rogue.key")
    assert not s.ok and s.outcome.startswith("error"), s.outcome
    # No client certificate at all.
    s = connect(sb.tls_port, ca=sb.bundle("dev-a") / "ca.crt")
    assert not s.ok and s.outcome.startswith("error"), s.outcome
    # The genuine one still works (the refusals above are about the certificates).
    a = device(sb.tls_port, sb.bundle("dev-a"))
    assert a.ok, a.outcome
    a.close()


def test_revoked_certificate_is_refused_after_reload(secured_broker: SecuredBroker) -> None:
    sb = secured_broker
    b = device(sb.tls_port, sb.bundle("dev-b"))
    assert b.ok, b.outcome
    b.close()
    sb.home.revoke_device("dev-b")
    sb.broker.reload()
    attempts: list[Session] = []

    def refused() -> bool:
        attempts.append(device(sb.tls_port, sb.bundle("dev-b")))
        if attempts[-1].ok:
            attempts[-1].close()
            return False
        return True

    wait_for(refused, 5, step=0.1)
    b = attempts[-1]
    assert not b.ok and b.outcome.startswith("error"), b.outcome
    a = device(sb.tls_port, sb.bundle("dev-a"))
    assert a.ok, a.outcome
    a.close()


def test_revoked_password_is_refused_after_reload(secured_broker: SecuredBroker) -> None:
    sb = secured_broker
    p = connect(sb.port, username="dev-p", password=sb.passwords["dev-p"])
    assert p.ok, p.outcome
    assert p.publish("airgrid/v1/dev/dev-p/up", b"x") in ACCEPTED
    assert p.publish("airgrid/v1/dev/dev-a/up", b"x") == NOT_AUTHORIZED
    p.close()
    sb.home.revoke_device("dev-p")
    sb.broker.reload()
    time.sleep(0.3)
    p = connect(sb.port, username="dev-p", password=sb.passwords["dev-p"])
    assert p.outcome == "refused: Not authorized", p.outcome


def test_no_anonymous_or_wrong_password_connection(secured_broker: SecuredBroker) -> None:
    sb = secured_broker
    anon = connect(sb.port)
    assert anon.outcome == "refused: Not authorized", anon.outcome
    wrong = connect(sb.port, username="collector", password="not-the-password")
    assert wrong.outcome.startswith("refused"), wrong.outcome
    # A device's id as a username without its password gets nothing either.
    bare = connect(sb.port, username="dev-a", password="")
    assert bare.outcome.startswith("refused"), bare.outcome
    # TLS without a client certificate is not anonymous access either.
    tls_anon = connect(sb.tls_port, ca=sb.bundle("dev-a") / "ca.crt")
    assert not tls_anon.ok, tls_anon.outcome


def test_no_device_reads_anothers_commands_or_the_alerts(secured_broker: SecuredBroker) -> None:
    sb = secured_broker
    a = device(sb.tls_port, sb.bundle("dev-a"))
    b = device(sb.tls_port, sb.bundle("dev-b"))
    p = connect(sb.port, username="dev-p", password=sb.passwords["dev-p"])
    app = connect(sb.port, username="app", password=sb.passwords["app"])
    collector = connect(sb.port, username="collector", password=sb.passwords["collector"])
    sessions = (a, b, p, app, collector)
    assert all(s.ok for s in sessions), [s.outcome for s in sessions]
    try:
        # Mosquitto 2.0 grants these subscriptions, then its read ACL filters each message.
        for s in (a, p):
            s.subscribe("airgrid/v1/dev/dev-b/cmd/#", "airgrid/v1/alerts/#",
                        "airgrid/v1/dev/+/up", "airgrid/v1/deadletter", "#")
        assert b.subscribe("airgrid/v1/dev/dev-b/cmd/#") == [1]
        assert app.subscribe("airgrid/v1/alerts/#") == [1]
        assert collector.publish("airgrid/v1/dev/dev-b/cmd/reboot", b"1") in ACCEPTED
        assert collector.publish("airgrid/v1/alerts/pm25_heavy/dev-b", b"{}") in ACCEPTED
        assert collector.publish("airgrid/v1/deadletter", b"{}") in ACCEPTED
        assert b.publish("airgrid/v1/dev/dev-b/up", b"{}") in ACCEPTED
        assert _received(b, "airgrid/v1/dev/dev-b/cmd/reboot")
        assert _received(app, "airgrid/v1/alerts/pm25_heavy/dev-b")
        time.sleep(0.3)
        assert a.topics() == [] and p.topics() == []
        # The app reads alerts and writes acknowledgements, nothing else.
        assert app.topics() == ["airgrid/v1/alerts/pm25_heavy/dev-b"]
        assert app.publish("airgrid/v1/cmd/alerts/1/ack", b"{}") in ACCEPTED
        assert app.publish("airgrid/v1/cmd/alerts/1/other", b"{}") == NOT_AUTHORIZED
        assert app.publish("airgrid/v1/alerts/pm25_heavy/dev-b", b"{}") == NOT_AUTHORIZED
        assert app.publish("airgrid/v1/dev/app/up", b"{}") == NOT_AUTHORIZED
        # A service account cannot feed readings in as a device either.
        assert collector.publish("airgrid/v1/dev/collector/up", b"{}") == NOT_AUTHORIZED
        assert collector.publish("airgrid/v1/dev/dev-a/up", b"{}") == NOT_AUTHORIZED
        # Work order steps (docs/workorders.md): the collector publishes them, apps read
        # them, devices see none. Before, the collector's ACL had no such topic and every
        # work-order event was refused with 135.
        assert app.subscribe("airgrid/v1/workorders/#") == [1]
        assert collector.publish("airgrid/v1/workorders/workorder-1", b"{}") in ACCEPTED
        assert _received(app, "airgrid/v1/workorders/workorder-1")
        assert app.publish("airgrid/v1/workorders/workorder-1", b"{}") == NOT_AUTHORIZED
        time.sleep(0.3)
        assert a.topics() == [] and p.topics() == []
    finally:
        for s in sessions:
            s.close()


def _agent_publisher(sb: SecuredBroker, dev: str, tmp_path: Path) -> tuple[Publisher, Outbox]:
    """The agent's own publisher, configured from nothing but the device's bundle."""
    cfg = edge_config.load(sb.bundle(dev) / "edge.toml")
    outbox = Outbox(tmp_path / f"{dev}.db")
    for i in range(5):
        outbox.capture({"ts": 1_700_000_000_000 + i, "sensor": "pms5003", "pm2_5": 12.0 + i})
    status = Status(v=SCHEMA_VERSION, device=dev, state="online")
    return Publisher(dev, "boot", outbox, cfg.broker, cfg.publish, lambda: status), outbox


def test_agent_publishes_with_its_bundle_and_a_revoked_one_keeps_its_readings(
    secured_broker: SecuredBroker, tmp_path: Path,
) -> None:
    sb = secured_broker
    watcher = _watcher(sb)
    watcher.subscribe("airgrid/v1/dev/+/up")
    sb.home.revoke_device("dev-b")
    sb.broker.reload()
    time.sleep(0.3)
    pub_a, box_a = _agent_publisher(sb, "dev-a", tmp_path)
    pub_b, box_b = _agent_publisher(sb, "dev-b", tmp_path)
    pub_a.start()
    pub_b.start()
    try:
        wait_for(lambda: box_a.depth() == 0, 15, step=0.05)
        assert box_a.depth() == 0 and pub_a.acked_readings == 5
        time.sleep(1.0)
        # The revoked device never got through; what it captured is still in its outbox.
        assert not pub_b.connected and box_b.depth() == 5
        with watcher.lock:
            seqs = [r.seq for t, p in watcher.messages if t.endswith("/dev-a/up")
                    for r in decode_up(p).readings]
        assert sorted(seqs) == [1, 2, 3, 4, 5]
        assert "airgrid/v1/dev/dev-b/up" not in watcher.topics()
    finally:
        pub_a.stop()
        pub_b.stop()
        watcher.close()


def test_a_device_writes_only_its_own_up_and_status_and_only_reads_its_commands(
    secured_broker: SecuredBroker,
) -> None:
    sb = secured_broker
    watcher = _watcher(sb)
    assert watcher.subscribe("airgrid/v1/dev/#") == [1]
    a = device(sb.tls_port, sb.bundle("dev-a"))
    p = connect(sb.port, username="dev-p", password=sb.passwords["dev-p"])
    collector = connect(sb.port, username="collector", password=sb.passwords["collector"])
    sessions = (a, p, collector)
    assert all(s.ok for s in sessions), [s.outcome for s in sessions]
    try:
        for dev, s in (("dev-a", a), ("dev-p", p)):
            own = f"airgrid/v1/dev/{dev}"
            assert s.subscribe(f"{own}/cmd/#") == [1]
            # A device cannot command itself (nor forge what the collector would send it),
            # nor publish on any other topic of its own.
            for topic in (f"{own}/cmd/reboot", f"{own}/cmd/config", f"{own}/other", own):
                assert s.publish(topic, b"{}") == NOT_AUTHORIZED, (dev, topic)
            # What the agent publishes goes through.
            assert s.publish(f"{own}/up", b"{}") in ACCEPTED
            assert s.publish(f"{own}/status", b"{}") in ACCEPTED
            assert collector.publish(f"{own}/cmd/reboot", b"1") in ACCEPTED
            assert _received(s, f"{own}/cmd/reboot")
        assert _received(watcher, "airgrid/v1/dev/dev-p/status")
        time.sleep(0.3)
        # The collector role reads the devices' up and status: only the allowed ones came.
        assert sorted(set(watcher.topics())) == sorted(
            f"airgrid/v1/dev/{d}/{leaf}" for d in ("dev-a", "dev-p") for leaf in ("up", "status"))
        # Each device subscribed to its own commands: it got the collector's, not its own.
        for s in (a, p):
            with s.lock:
                assert [m for t, m in s.messages if "/cmd/" in t] == [b"1"]
    finally:
        for s in (*sessions, watcher):
            s.close()


def _host_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_default_broker_config_offers_no_plaintext_password_login_off_loopback(
    tmp_path: Path, processes: Processes, capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    assert admin_main(["--home", str(home), "ca", "init", "--broker-host",
                       "mqtt.county.example"]) == 0
    broker = Mosquitto(tmp_path / "broker")
    out = tmp_path / "conf"
    # Everything default except the ports (the default ones may be taken here).
    assert admin_main(["--home", str(home), "broker-config", "--out", str(out), "--port",
                       str(broker.port), "--tls-port", str(free_port()), "--data-dir",
                       str(broker.workdir)]) == 0
    assert "warning" not in capsys.readouterr().err
    conf = (out / "mosquitto.conf").read_text().split("\nlistener ")[1:]
    (password,) = [block for block in conf if "password_file" in block]
    address = password.split("\n", 1)[0].split()[1]
    assert is_loopback(address) or "certfile" in password, password
    broker.base_config = (out / "mosquitto.conf").read_text()
    processes.service(broker)
    assert connect(broker.port, username="nobody", password="x").outcome.startswith("refused")
    host = _host_address()
    if host is None:
        pytest.skip("this machine has no non-loopback address to dial")
    with pytest.raises(OSError):  # nothing listens there for passwords
        socket.create_connection((host, broker.port), timeout=2).close()
    # Opening it to a network in the clear is possible, but said loudly.
    assert admin_main(["--home", str(home), "broker-config", "--out", str(tmp_path / "open"),
                       "--password-bind", "0.0.0.0"]) == 0
    assert "sends passwords in the clear" in capsys.readouterr().err
    assert "# WARNING: plaintext passwords" in (tmp_path / "open" / "mosquitto.conf").read_text()
