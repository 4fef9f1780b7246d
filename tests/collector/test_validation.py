"""Decode and validate: every reject has a reason and a dead letter; fuzzed payloads never
crash the pipeline and every one is accounted for."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airgrid.wire import WireError, deadletter_topic, status_topic, up_topic
from alert_rules.engine import Engine
from collector.app import build_pipeline
from collector.config import from_dict
from collector.decode import decode_up
from collector.delivery import Delivery
from collector.influx_sink import InfluxV1Sink
from collector.mqtt_ingest import MqttIngest
from collector.pipeline import Pipeline
from orchestration.services import InfluxDB, Mosquitto
from tests.support.collector_process import TopicWatcher, reading, stored_rows, up_payload
from tests.support.wait import wait_for

NOW = 1_790_000_000_000


def _up(**reading_fields: object) -> bytes:
    r = {"seq": 1, "ts": NOW - 1000, "sensor": "pms5003", "pm2_5": 10.0, **reading_fields}
    return json.dumps({"v": 1, "device": "d1", "boot": "b", "readings": [r]}).encode()


@pytest.mark.parametrize(("payload", "reason", "where"), [
    (_up(pm2_5=-1.0), "range", "$.readings[0].pm2_5"),
    (_up(pm10=65535.5), "range", "$.readings[0].pm10"),
    (_up(n0_3=-5), "range", "$.readings[0].n0_3"),
    (_up(humidity_pct=110.5), "range", "$.readings[0].humidity_pct"),
    (_up(seq=0), "range", "$.readings[0].seq"),
    (_up(seq=2**63), "range", "$.readings[0].seq"),
    (_up(ts=0), "ts_too_old", "$.readings[0].ts"),
    (_up(sensor_idx=1000), "range", "$.readings[0].sensor_idx"),
    (_up(sensor="p" * 100), "range", "$.readings[0].sensor"),
    (_up(flags=["warming_up", "bogus"]), "unknown_flag", "$.readings[0].flags[1]"),
    (_up(pm2_5="12"), "schema", "$.readings[0].pm2_5"),
    (_up(extra=1), "schema", "extra"),
    (_up(ts=NOW + 11 * 60 * 1000), "future_ts", "$.readings[0].ts"),
])
def test_bad_readings_name_reason_and_place(payload: bytes, reason: str, where: str) -> None:
    up, bad = decode_up(payload, "d1", NOW, max_payload_bytes=512,
                        max_future_ms=10 * 60 * 1000)
    assert up.readings == ()
    assert [(b.reason, b.index) for b in bad] == [(reason, 0)]
    assert where in bad[0].detail


@pytest.mark.parametrize(("payload", "reason", "where"), [
    (b"{not json", "not_json", ""),
    (json.dumps({"v": 2, "device": "d1", "boot": "b", "readings": []}).encode(),
     "schema_version", "$.v"),
    (json.dumps({"v": 1, "device": "d2", "boot": "b", "readings": []}).encode(),
     "device_mismatch", "'d2'"),
    (json.dumps({"v": 1, "device": "d1", "boot": "b", "readings": {}}).encode(),
     "schema", "$.readings"),
    (b" " * 600, "too_large", "600 bytes"),
])
def test_bad_messages_name_reason_and_place(payload: bytes, reason: str, where: str) -> None:
    with pytest.raises(WireError) as info:
        decode_up(payload, "d1", NOW, max_payload_bytes=512, max_future_ms=10 * 60 * 1000)
    assert info.value.reason == reason
    assert where in info.value.detail


def test_sensor_values_beyond_the_nominal_range_are_legal_input() -> None:
    """A raw 16-bit PMS value and a PMS5003T RH just over 100 % are what real sensors send
    (flagged by the agent), not reasons to refuse a reading."""
    up, bad = decode_up(_up(pm10_cf1=2100.0, humidity_pct=100.1, flags=["out_of_range"]),
                        "d1", NOW, 1 << 20, 600_000)
    assert bad == [] and up.readings[0].pm10_cf1 == 2100.0


def test_valid_payload_decodes_with_values() -> None:
    up, bad = decode_up(up_payload("d1", [reading(7, NOW, 42.5)]), "d1", NOW, 1 << 20,
                        600_000)
    assert up.readings[0].seq == 7 and up.readings[0].pm2_5 == 42.5 and bad == []


@pytest.fixture
def pipeline(mosquitto: Mosquitto, shared_influxdb: InfluxDB, influx_db_name: str,
             tmp_path: Path) -> Iterator[Pipeline]:
    ingest = MqttIngest("127.0.0.1", mosquitto.port, f"v-{influx_db_name}", "airgrid", 100)
    ingest.start()
    assert ingest.connected.wait(10)
    p = build_pipeline(from_dict({}), ingest, InfluxV1Sink(shared_influxdb.url, influx_db_name),
                       Engine([]))
    yield p
    ingest.stop()


def _delivery(topic: str, payload: bytes) -> Delivery:
    return Delivery(topic, payload, mid=0, qos=0, generation=0)


def test_rejects_are_dead_lettered_counted_and_valid_ones_stored(
        pipeline: Pipeline, mosquitto: Mosquitto, shared_influxdb: InfluxDB,
        influx_db_name: str) -> None:
    watcher = TopicWatcher(mosquitto.port, deadletter_topic())
    now = int(time.time() * 1000)
    good = up_payload("d1", [reading(1, now - 2000, 11.0), reading(2, now - 1000, 12.0)])
    pipeline.process([
        _delivery(up_topic("d1"), good),
        _delivery(up_topic("d1"), good),  # a redelivery: repeats dropped
        _delivery(up_topic("d1"), b"\xff\xfe"),
        _delivery("airgrid/v1/dev/bad id/up", good),
        _delivery(up_topic("d2"), good),
    ])
    assert wait_for(lambda: len(watcher.received()) >= 3, 10)
    watcher.close()
    dead = watcher.decoded()
    c = pipeline.counters
    assert dict(c.rejected) == {"not_json": 1, "bad_device_id": 1, "device_mismatch": 1}
    assert c.duplicates == 2 and c.accepted == 2 and c.messages == 5
    assert sorted(d["reason"] for d in dead) == ["bad_device_id", "device_mismatch", "not_json"]
    rows = stored_rows(shared_influxdb, influx_db_name)
    assert [(r["seq"], r["pm2_5"]) for r in rows] == [(1, 11.0), (2, 12.0)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["seq", "ts", "sensor", "pm2_5", "pm10", "n0_3", "flags",
                               "humidity_pct", "clock_synced", "sensor_idx", "v", "device"])


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "status"]))
    if kind == "bytes":
        return up_topic("fz"), draw(st.binary(max_size=200))
    if kind == "json":
        return up_topic("fz"), json.dumps(draw(json_values)).encode()
    seq = draw(st.integers(1, 10**6))
    r: dict[str, object] = {"seq": seq, "ts": NOW + seq, "sensor": "pms5003", "pm2_5": 5.0}
    for _ in range(draw(st.integers(0, 3))):
        r[draw(field_names)] = draw(json_values)
    if kind == "status":
        body = {"v": 1, "device": "fz", "state": draw(st.sampled_from(["online", "x"]))}
        body[draw(field_names)] = draw(json_values)
        return status_topic("fz"), json.dumps(body).encode()
    return up_topic("fz"), json.dumps(
        {"v": 1, "device": "fz", "boot": "b", "readings": [r]}).encode()


def test_fuzzed_payloads_never_crash_and_each_is_accounted_for(pipeline: Pipeline) -> None:
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(payloads())
    def one(item: tuple[str, bytes]) -> None:
        topic, payload = item
        c = pipeline.counters
        before = (c.messages, c.accepted, sum(c.rejected.values()))
        pipeline.process([_delivery(topic, payload)])
        after = (c.messages, c.accepted, sum(c.rejected.values()))
        assert after[0] == before[0] + 1
        assert (after[1] - before[1]) + (after[2] - before[2]) == 1  # accepted xor rejected

    one()
    assert sum(pipeline.counters.rejected.values()) > 0 and pipeline.counters.accepted > 0
