"""The engine's snapshot is copied on the ingest thread and written in the background:
it restores to the engine as it was when copied, and a crash mid-write leaves the
previous snapshot loadable."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import pytest

import collector.engine_state_file as state_file
from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from collector.engine_state_file import EngineStateFile
from tests.support.rules import same_state

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
MIN = 60_000
REG = [Device(f"d{i}", township="t", link="cellular" if i % 3 == 0 else "wired")
       for i in range(50)]


def fed_engine(minutes: int, seed: int = 1) -> tuple[Engine, int]:
    engine = Engine(load_rules(DEFAULT_RULES), registry=REG)
    rng = np.random.default_rng(seed)
    now = T0
    for _ in range(minutes):
        now += MIN
        ids = [d.id for d in REG[:45]]
        vals = list(np.round(60 + 120 * rng.random(len(ids)), 1))
        engine.ingest(ids, [now] * len(ids), {"pm2_5": vals}, [bool(k % 7 == 0) for k in range(45)])
        engine.tick(now)
    return engine, now


def test_background_snapshot_restores_the_engine_as_it_was_copied(tmp_path: Path) -> None:
    engine, now = fed_engine(40)
    expected = engine.snapshot_arrays()
    saving = EngineStateFile(engine, tmp_path / "engine.npz")
    saving.save()
    # the engine goes on while the snapshot is written: none of this may reach it
    for _ in range(5):
        now += MIN
        engine.ingest(["d0", "d49"], [now, now], {"pm2_5": [900.0, 5.0]})
        engine.tick(now)
    assert saving.wait(30) and saving.saved == 1 and saving.failed == 0
    assert saving.bytes == (tmp_path / "engine.npz").stat().st_size > 0
    restored = Engine(load_rules(DEFAULT_RULES), registry=REG)
    assert EngineStateFile(restored, tmp_path / "engine.npz").restore()
    same_state(restored.snapshot_arrays(), expected)
    assert not (tmp_path / "engine.npz.tmp").exists()


def test_a_crash_mid_write_leaves_the_previous_snapshot_loadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "engine.npz"
    engine, now = fed_engine(20)
    first = engine.snapshot_arrays()
    saving = EngineStateFile(engine, path)
    saving.save()
    assert saving.wait(30) and saving.saved == 1

    real = state_file.write_snapshot

    def dies_half_way(fh: IO[bytes], arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        fh.write(b"PK\x03\x04 half a zip")  # what a process killed mid-write leaves
        raise OSError(28, "No space left on device")

    engine.ingest(["d1"], [now + MIN], {"pm2_5": [700.0]})
    engine.tick(now + MIN)
    monkeypatch.setattr(state_file, "write_snapshot", dies_half_way)
    saving.save()
    assert saving.wait(30) and saving.failed == 1 and saving.saved == 1
    assert (tmp_path / "engine.npz.tmp").exists()  # the torn write, beside the good one
    restored = Engine(load_rules(DEFAULT_RULES), registry=REG)
    assert EngineStateFile(restored, path).restore()
    same_state(restored.snapshot_arrays(), first)

    # the next save replaces the torn temporary file and the snapshot
    monkeypatch.setattr(state_file, "write_snapshot", real)
    saving.save()
    assert saving.wait(30) and saving.saved == 2
    again = Engine(load_rules(DEFAULT_RULES), registry=REG)
    assert EngineStateFile(again, path).restore()
    assert again.fleet.latest_v["pm2_5"][again.fleet.index["d1"]] == 700.0


def test_saves_reuse_their_buffers_and_never_hand_the_writer_a_moving_engine(
        tmp_path: Path) -> None:
    """The copy goes into buffers kept between saves (warm memory, no page faults on the
    ingest thread); each save still writes the engine exactly as it was at that save."""
    path = tmp_path / "engine.npz"
    engine, now = fed_engine(30)
    saving = EngineStateFile(engine, path)
    saving.warm()
    assert saving.wait(30)
    warmed = {k: id(v) for k, v in saving._buffers.items() if k != "meta"}
    assert warmed
    for round_ in range(3):
        expected = engine.snapshot_arrays()
        saving.save()
        now += MIN
        engine.ingest(["d0", "d7"], [now, now], {"pm2_5": [800.0 + round_, 3.0]})
        engine.tick(now)
        assert saving.wait(30) and saving.failed == 0
        assert {k: id(v) for k, v in saving._buffers.items() if k != "meta"} == warmed
        restored = Engine(load_rules(DEFAULT_RULES), registry=REG)
        assert EngineStateFile(restored, path).restore()
        same_state(restored.snapshot_arrays(), expected)
