"""The simulated sensors, checked by the agent's independent decoders over real ptys."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.drivers import pms5003, sds011
from edge_agent.drivers.base import StreamDecoder as Decoder
from edge_agent.drivers.pmsa003i import Pmsa003iSensor, SensorReadError
from firmware_sim import pms5003_firmware
from firmware_sim.device_loop import UartDevice
from firmware_sim.i2c_bus import FakeI2CBus
from firmware_sim.pms5003_device import Pms5003Device
from firmware_sim.pty_port import PtyPort
from firmware_sim.sds011_device import Sds011Device


class Line:
    """The host side of a simulated UART: the slave end of the pty, raw."""

    def __init__(self, port: PtyPort) -> None:
        self.fd = os.open(port.slave_path, os.O_RDWR | os.O_NOCTTY)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_for(self, seconds: float) -> bytes:
        out = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                out += os.read(self.fd, 4096)
        return out

    def items(self, dec: Decoder, n: int, timeout: float = 3.0) -> list[object]:
        """Read until `n` decoded items arrived (a loaded machine can be slow), or timeout."""
        out: list[object] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                out += dec.feed(os.read(self.fd, 4096))
        return out

    def until(self, dec: Decoder, item: object, timeout: float = 3.0) -> list[object]:
        out: list[object] = []
        deadline = time.monotonic() + timeout
        while item not in out and time.monotonic() < deadline:
            out += self.items(dec, 1, deadline - time.monotonic())
        return out

    def close(self) -> None:
        os.close(self.fd)


def _running(device: UartDevice, seconds: float) -> threading.Thread:
    t = threading.Thread(target=device.run, args=(seconds,), daemon=True)
    t.start()
    return t


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPort]:
    port = PtyPort(tmp_path / "tty")
    yield port
    port.close()


def test_pms5003_active_passive_sleep_wake(pty: PtyPort) -> None:
    dev = Pms5003Device(port=pty, profile=lambda t: 40.0, frame_period_s=0.1, warmup_s=0.4)
    line = Line(pty)
    thread = _running(dev, 4.0)
    dec = pms5003.PmsStreamDecoder()
    first = dec.feed(line.read_for(0.35))
    assert first and all(isinstance(f, pms5003.PmsFrame) and f.all_zero for f in first)
    later = [f for f in dec.feed(line.read_for(0.4)) if isinstance(f, pms5003.PmsFrame)]
    assert later and later[-1].pm2_5 == 40 and later[-1].pm10 == 52
    line.write(pms5003.CMD_PASSIVE)
    out = line.until(dec, pms5003.PmsAck(0xE1, 0))  # after frames sent before the command
    assert out[-1] == pms5003.PmsAck(0xE1, 0)
    assert not [f for f in dec.feed(line.read_for(0.3)) if isinstance(f, pms5003.PmsFrame)]
    line.write(pms5003.CMD_READ)
    assert len(line.items(dec, 1)) == 1
    line.write(pms5003.CMD_SLEEP)
    assert line.items(dec, 1) == [pms5003.PmsAck(0xE4, 0)]
    line.write(pms5003.CMD_READ)  # asleep: no answer
    assert dec.feed(line.read_for(0.3)) == []
    line.write(pms5003.CMD_WAKE + pms5003.CMD_READ)
    out = line.items(dec, 2)
    assert out[0] == pms5003.PmsAck(0xE4, 1)
    assert isinstance(out[1], pms5003.PmsFrame) and out[1].all_zero  # warm-up again
    assert not dec.errors
    line.close()
    dev.stop()
    thread.join(5)


def test_trap42_frames_end_in_0x42_and_all_decode(pty: PtyPort) -> None:
    dev = Pms5003Device(port=pty, profile=lambda t: 33.0, frame_period_s=0.02, warmup_s=0,
                        trap42=1.0)
    line = Line(pty)
    thread = _running(dev, 1.0)
    raw = line.read_for(1.0)
    thread.join(5)
    dec = pms5003.PmsStreamDecoder()
    frames = dec.feed(raw)
    assert len(frames) >= 10 and len(frames) == raw.count(b"BM\x00\x1c")
    assert all(raw[i - 1] == 0x42 for i in range(32, len(raw), 32))
    assert not dec.errors
    line.close()


def test_sim_checksum_adjustment_keeps_values() -> None:
    v = pms5003_firmware.values_for(77.0)
    trapped = pms5003_firmware.with_checksum_low_byte(v, 0x42)
    frame = pms5003_firmware.data_frame(trapped)
    assert frame[-1] == 0x42
    assert pms5003.decode_data_frame(frame).pm2_5 == v.pm2_5


def test_sds011_query_mode_sleep_work_and_working_period(pty: PtyPort) -> None:
    dev = Sds011Device(port=pty, profile=lambda t: 12.3, frame_period_s=0.1, minute_s=0.5)
    line = Line(pty)
    thread = _running(dev, 6.0)
    dec = sds011.SdsStreamDecoder()
    active = dec.feed(line.read_for(0.5))
    assert len(active) >= 3 and active[-1] == sds011.SdsFrame(123, 160, 0xA1B2)
    line.write(sds011.set_query_mode(True))
    out = line.until(dec, sds011.SdsReply(2, bytes([1, 1, 0]), 0xA1B2))
    assert out[-1] == sds011.SdsReply(2, bytes([1, 1, 0]), 0xA1B2)
    assert dec.feed(line.read_for(0.3)) == []  # query mode: nothing unasked
    line.write(sds011.CMD_QUERY)
    assert line.items(dec, 1) == [sds011.SdsFrame(123, 160, 0xA1B2)]
    line.write(sds011.CMD_SLEEP)
    assert line.items(dec, 1) == [sds011.SdsReply(6, bytes([1, 0, 0]), 0xA1B2)]
    line.write(sds011.CMD_QUERY)
    assert dec.feed(line.read_for(0.3)) == []  # asleep: only the work command is answered
    line.write(sds011.CMD_WORK + sds011.set_query_mode(False) + sds011.set_working_period(1))
    replies = line.items(dec, 3)
    assert [r.command for r in replies if isinstance(r, sds011.SdsReply)] == [6, 2, 8]
    # One "minute" is 0.5 s here: one report per 0.5 s, 0.25 s into each cycle.
    reports = [f for f in dec.feed(line.read_for(2.1)) if isinstance(f, sds011.SdsFrame)]
    assert 3 <= len(reports) <= 5
    assert not dec.errors
    line.close()
    dev.stop()
    thread.join(5)


def test_fake_i2c_bus_serves_real_frames_to_pm25_i2c() -> None:
    values = [pms5003_firmware.values_for(v) for v in (10.0, 55.0, 120.0)]
    bus = FakeI2CBus(values=values, bad_checksum_every=4)
    sensor = Pmsa003iSensor(bus)
    got = []
    for _ in range(3):
        got.append(sensor.read().pm2_5)
    assert got == [v.pm2_5 for v in values]
    with pytest.raises(SensorReadError) as info:
        sensor.read()  # the 4th read has a bad checksum
    assert info.value.cause == "checksum" and sensor.errors["checksum"] == 1
    frame = sensor.read()
    assert frame.n0_3 == values[1].n0_3 and frame.reserved == 0x9700


def test_missing_i2c_sensor_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import adafruit_pm25.i2c

    # PM25_I2C retries five times a second apart; the bus here answers at once.
    monkeypatch.setattr(adafruit_pm25.i2c.time, "sleep", lambda s: None)
    sensor = Pmsa003iSensor(FakeI2CBus(present=False))
    with pytest.raises(SensorReadError, match="no PMSA003I at 0x12"):
        sensor.open()
