"""Fault injection through the simulator, read by the agent's serial reader over a pty."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edge_agent.drivers import SERIAL_PROTOCOLS
from edge_agent.drivers.base import Measurement
from edge_agent.serial_reader import SerialSensorReader
from firmware_sim.cli import _profile, build_parser
from firmware_sim.device_loop import UartDevice
from firmware_sim.faults import FaultPlan
from firmware_sim.pms5003_device import Pms5003Device
from firmware_sim.pty_port import PtyPort
from firmware_sim.scenarios import Clean, frozen_after, with_noise
from firmware_sim.sds011_device import Sds011Device
from tests.support.wait import wait_for


class Rig:
    def __init__(self, device: UartDevice, model: str, **reader_args: float | bool) -> None:
        self.device = device
        self.frames: list[Measurement] = []
        assert device.port.link is not None
        self.reader = SerialSensorReader(
            str(device.port.link), SERIAL_PROTOCOLS[model], self.frames.append,
            reopen_every_s=0.2, **reader_args,  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=device.run, daemon=True)

    def __enter__(self) -> Rig:
        self.thread.start()
        self.reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.stop()
        self.device.stop()
        self.thread.join(5)
        self.device.port.close()


def _pms(tmp_path: Path, faults: FaultPlan, trap42: float = 0.0) -> Pms5003Device:
    return Pms5003Device(port=PtyPort(tmp_path / "tty"), profile=lambda t: 30.0,
                         frame_period_s=0.02, warmup_s=0, faults=faults, trap42=trap42)


def test_garbage_bad_checksums_truncation_acks_and_0x42_trap(tmp_path: Path) -> None:
    faults = FaultPlan(garbage=0.3, bad_checksum=0.2, truncate=0.1, acks=0.2, seed=7)
    with Rig(_pms(tmp_path, faults, trap42=0.5), "pms5003") as rig:
        assert wait_for(lambda: len(rig.frames) >= 60, 15)
        errors = dict(rig.reader.errors)
    assert all(f.fields()["pm2_5"] == 30 for f in rig.frames)  # nothing corrupt got through
    assert errors.get("checksum", 0) >= 1 and errors.get("framing", 0) >= 1
    assert rig.reader.replies >= 1  # acks mid-stream were recognised, not counted as data
    # Every good frame the simulator sent arrived (none lost to resyncing).
    assert len(rig.frames) >= faults.counts["good"] - 3


def test_sds011_noise_and_replies(tmp_path: Path) -> None:
    faults = FaultPlan(garbage=0.3, bad_checksum=0.2, acks=0.3, seed=3)
    dev = Sds011Device(port=PtyPort(tmp_path / "tty"), profile=lambda t: 8.8,
                       frame_period_s=0.02, faults=faults)
    with Rig(dev, "sds011") as rig:
        assert wait_for(lambda: len(rig.frames) >= 40, 15)
    assert all(f.fields() == {"pm2_5": 8.8, "pm10": 11.4} for f in rig.frames)
    assert rig.reader.errors["checksum"] >= 1 and rig.reader.replies >= 1


def test_silent_sensor_is_revived_by_the_mode_command(tmp_path: Path) -> None:
    faults = FaultPlan(silent_at=0.5, silent_for=None)  # silent until a command arrives
    with Rig(_pms(tmp_path, faults), "pms5003", silent_after_s=0.5) as rig:
        assert wait_for(lambda: rig.reader.errors["timeout"] >= 1, 5)
        n = len(rig.frames)
        assert wait_for(lambda: len(rig.frames) > n + 5 and rig.reader.state == "ok", 5)
        assert rig.reader.rung == 0


def test_sensor_that_stays_silent_is_reported_failed_and_retried(tmp_path: Path) -> None:
    faults = FaultPlan(silent_at=0.3, silent_for=2.5)  # deaf to commands for 2.5 s
    with Rig(_pms(tmp_path, faults), "pms5003", silent_after_s=0.3,
             failed_retry_s=0.3) as rig:
        assert wait_for(lambda: rig.reader.state == "failed", 5)
        assert rig.reader.errors["timeout"] >= 3
        # ...and when it comes back it is ok again, without a restart.
        assert wait_for(lambda: rig.reader.state == "ok", 5)


def test_port_vanishes_and_returns(tmp_path: Path) -> None:
    faults = FaultPlan(vanish_at=0.5, vanish_for=1.0)
    with Rig(_pms(tmp_path, faults), "pms5003") as rig:
        assert wait_for(lambda: rig.reader.errors["port"] >= 1, 5)
        n = len(rig.frames)
        assert wait_for(lambda: len(rig.frames) > n + 10 and rig.reader.state == "ok", 8)


def test_reader_puts_the_sensor_to_sleep_and_wakes_it(tmp_path: Path) -> None:
    dev = Pms5003Device(port=PtyPort(tmp_path / "tty"), profile=lambda t: 30.0,
                        frame_period_s=0.02, warmup_s=0.3)
    woke: list[float] = []
    with Rig(dev, "pms5003", silent_after_s=0.5) as rig:
        rig.reader.on_wake = woke.append
        assert wait_for(lambda: any(not f.warming_up for f in rig.frames), 5)
        rig.reader.sleep()
        assert wait_for(lambda: dev.asleep and rig.reader.state == "asleep", 5)
        n = len(rig.frames)
        ran = rig.reader.awake_s
        time.sleep(1.0)  # longer than silent_after_s: asleep is not silent
        assert len(rig.frames) <= n + 1 and rig.reader.errors["timeout"] == 0
        assert rig.reader.awake_s - ran < 0.3  # sleep time is not run time
        rig.reader.wake()
        assert wait_for(lambda: len(rig.frames) > n + 5 and rig.reader.state == "ok", 5)
        assert rig.frames[n + 1].warming_up  # zeros after wake, as the datasheet says
        assert woke


def test_a_frozen_sensor_repeats_one_value_from_the_moment_it_freezes(tmp_path: Path) -> None:
    """`--freeze-at`: the frames read over the wire vary before, then all carry the value
    measured when it froze (what the demo's `sensor_stuck` catches)."""
    profile = frozen_after(with_noise(Clean(baseline=60.0), sigma=5.0, seed=3), at=0.4)
    device = Pms5003Device(port=PtyPort(tmp_path / "tty"), profile=profile,
                           frame_period_s=0.02, warmup_s=0)
    with Rig(device, "pms5003") as rig:
        assert wait_for(lambda: len(rig.frames) >= 60, 15)
    values = [f.fields()["pm2_5"] for f in rig.frames]
    assert len(set(values[:10])) > 1  # alive before (the first ~0.2 s)
    assert len(set(values[-30:])) == 1  # frozen after


def test_freeze_at_is_a_simulator_option() -> None:
    args = build_parser().parse_args(["pms5003", "--link", "x", "--freeze-at", "8"])
    assert args.freeze_at == 8.0
    played = _profile(args)
    assert played(7.9) != played(7.95) or played(7.95) != played(7.99)  # noise σ 2
    assert {played(t) for t in (8.0, 9.0, 60.0)} == {played(8.5)}
