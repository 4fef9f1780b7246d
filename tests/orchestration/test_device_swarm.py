"""The load generator against a real Mosquitto: every captured reading is PUBACKed and
arrives in the real wire format; readings captured while the broker is down are replayed
after it comes back, none lost."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import decode_up, parse_device_topic
from orchestration.device_swarm import (
    SimDevice,
    Swarm,
    SwarmSettings,
    device_names,
    make_devices,
)
from orchestration.services import Mosquitto
from tests.support.integration import process_fixture
from tests.support.wait import wait_for


class Received:
    """A persistent-session (3.1.1, clean_session=False) subscriber to every `up` topic:
    what the broker delivered, as (device, epoch, seq)."""

    def __init__(self, port: int) -> None:
        self.keys: set[tuple[str, str, int]] = set()
        self.messages = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                      client_id="swarm-test-sub", clean_session=False,
                                      protocol=mqtt.MQTTv311)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("airgrid/v1/dev/+/up", qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 1.0)
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, cl: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        device, _ = parse_device_topic(msg.topic)
        batch = decode_up(bytes(msg.payload), device)  # the one validator: real wire format
        with self.lock:
            self.messages += 1
            self.keys.update((device, batch.epoch, r.seq) for r in batch.readings)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@process_fixture(scope="module")
def broker(tmp_path_factory: object) -> Iterator[Mosquitto]:
    import pytest

    assert isinstance(tmp_path_factory, pytest.TempPathFactory)
    b = Mosquitto(tmp_path_factory.mktemp("swarm-mosquitto"))
    b.start()
    yield b
    b.stop()


def expected(devices: list[SimDevice]) -> set[tuple[str, str, int]]:
    return {(d.name, d.epoch, s) for d in devices for s in range(1, d.last_seq + 1)}


def capture_round(devices: list[SimDevice], base_ms: int) -> None:
    for i, d in enumerate(devices):
        d.capture(base_ms + i, 20.0 + i % 7)


def test_every_reading_of_many_devices_is_pubacked_and_delivered(broker: Mosquitto) -> None:
    sub = Received(broker.port)
    names = device_names(300, prefix="pa")
    devices = make_devices(names, [f"127.0.0.1:{broker.port}"])

    async def run() -> bool:
        swarm = Swarm(devices, SwarmSettings(batch_max=2))
        swarm.start()
        for k in range(5):  # 5 rounds: batches of 2 make several messages per device
            capture_round(devices, 1_780_000_000_000 + k * 1000)
            await asyncio.sleep(0.05)
        drained = await swarm.drain(60)
        await swarm.stop()
        return drained

    try:
        assert asyncio.run(run())
        assert sum(d.captured for d in devices) == 1500
        assert all(d.acked == d.captured == 5 and d.depth() == 0 for d in devices)
        want = expected(devices)
        wait_for(lambda: sub.keys >= want, timeout=20)
        assert sub.keys == want
        assert len({d.epoch for d in devices}) == len(devices)  # one outbox epoch each
    finally:
        sub.close()


def test_readings_captured_while_the_broker_is_down_are_replayed(broker: Mosquitto) -> None:
    sub = Received(broker.port)
    devices = make_devices(device_names(100, prefix="rp"), [f"127.0.0.1:{broker.port}"])

    async def run() -> None:
        swarm = Swarm(devices, SwarmSettings(ack_timeout_s=2.0, backoff_max_s=1.0))
        swarm.start()
        capture_round(devices, 1_780_000_100_000)
        assert await swarm.drain(30)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(0.5)
        assert swarm.connected() == 0
        for k in range(3):
            capture_round(devices, 1_780_000_200_000 + k * 1000)
        await asyncio.sleep(1.0)
        # Captured, not acknowledged: still held, nothing counted as delivered.
        assert swarm.depth() == 300
        assert all(d.acked == 1 for d in devices)
        await asyncio.to_thread(broker.start)
        assert await swarm.drain(60)
        await swarm.stop()

    try:
        asyncio.run(run())
        want = expected(devices)
        assert len(want) == 400
        wait_for(lambda: sub.keys >= want, timeout=30)
        assert sub.keys == want
        assert all(d.connects >= 2 for d in devices)
    finally:
        sub.close()
