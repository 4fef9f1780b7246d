"""Sampling flags and config validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgrid.config import ConfigError
from edge_agent import config as edge_config
from edge_agent.drivers.pms5003 import PmsFrame, PmsTFrame
from edge_agent.drivers.sds011 import SdsFrame
from edge_agent.sampler import Sampler, trimmed_mean


def _pms(pm25: int, pm1: int | None = None, pm10: int | None = None, n03: int = 900,
         n5: int = 3, n10: int = 1) -> PmsFrame:
    pm1 = pm25 if pm1 is None else pm1
    pm10 = pm25 if pm10 is None else pm10
    return PmsFrame(pm1, pm25, pm10, pm1, pm25, pm10, n03, 300, 60, 9, n5, n10, 0)


def test_trimmed_mean_drops_min_and_max() -> None:
    assert trimmed_mean([1, 100, 10, 12, 11]) == 11
    assert trimmed_mean([4, 6]) == 5


def test_clean_interval_has_no_flags_and_warmup_frames_are_not_data() -> None:
    s = Sampler(warmup_s=30, started_at=0)
    s.add(PmsFrame(*[0] * 13))  # all-zero: warm-up
    for v in (10, 12, 50, 11, 1):
        s.add(_pms(v))
    sample = s.take(now_monotonic=100, clock_synced=True)
    assert sample is not None and sample.flags == () and sample.frames == 5
    assert sample.values["pm2_5"] == 11 and s.warmup_frames == 1
    assert s.take(101, True) is None


def test_flags() -> None:
    s = Sampler(warmup_s=30, started_at=0, stuck_frames=5)
    for _ in range(5):
        s.add(_pms(20, pm1=30, pm10=25))  # PM1 > PM2.5: inconsistent; 5 identical: stuck
    sample = s.take(now_monotonic=10, clock_synced=False)
    assert sample is not None
    assert set(sample.flags) == {"warming_up", "stuck", "inconsistent", "clock_unsynced"}
    s.add(_pms(1200, pm1=1100, pm10=1300))
    sample = s.take(100, True)
    assert sample is not None and sample.flags == ("out_of_range",)
    s.add(_pms(20, n03=0))  # mass without particles
    sample = s.take(100, True)
    assert sample is not None and "inconsistent" in sample.flags


def test_high_humidity_from_a_pms5003t_and_sds011_fields() -> None:
    s = Sampler(warmup_s=0, high_humidity_pct=85)
    s.add(PmsTFrame(_pms(30, n5=215, n10=912)))  # 21.5 °C, 91.2 %RH
    sample = s.take(100, True)
    assert sample is not None and sample.flags == ("high_humidity",)
    assert sample.values["temperature_c"] == 21.5 and sample.values["humidity_pct"] == 91.2
    s.add(SdsFrame(123, 456, 1))
    sample = s.take(100, True)
    assert sample is not None and sample.values == {"pm2_5": 12.3, "pm10": 45.6}


BROKER = '[broker]\nhost = "mqtt.test"\n'


def _write(tmp_path: Path, text: str) -> Path:
    """`text` with a broker host (required) unless it has a [broker] table of its own."""
    p = tmp_path / "edge.toml"
    p.write_text(text if "[broker]" in text or "[sensor\n" in text else text + BROKER)
    return p


def test_config_defaults_and_new_keys(tmp_path: Path) -> None:
    cfg = edge_config.load(_write(tmp_path, 'device = "pi-1"\n[sensor]\nmodel = "sds011"\n'
                                  'mode = "polled"\n[outbox]\ncommit_interval_s = 30\n'))
    assert cfg.sensor.model == "sds011" and cfg.sensor.polled
    assert cfg.outbox.commit_interval_s == 30.0
    assert cfg.outbox.max_rows == 1_000_000 and cfg.clock.hold_unsynced_s == 600.0


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('device = "pi-1"\n[sensor]\nmodel = "pms9999"\n', "sensor.model", "one of"),
    ('device = "pi-1"\n[sensor]\nmode = "sometimes"\n', "sensor.mode", "'active'"),
    ('device = "pi-1"\n[outbox]\nmax_bytes = -1\n', "outbox.max_bytes", "bytes >= 0"),
    ('device = "pi-1"\n[broker]\nport = 70000\n', "broker.port", "a TCP port"),
    ('device = "pi 1"\n', "device", "device id"),
    ('device = "pi-1"\n[sensor]\nwarmup = 3\n', "sensor.warmup", "one of"),
    ('device = "pi-1"\n[sensor\n', "(syntax)", "valid TOML"),
])
def test_config_errors_name_file_key_and_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        edge_config.load(path)
    assert info.value.key == key and str(path) in str(info.value)
    assert expected in str(info.value)


def test_working_period_is_for_the_sds011_only(tmp_path: Path) -> None:
    ok = edge_config.load(_write(tmp_path, 'device = "d"\n[sensor]\nmodel = "sds011"\n'
                                 "working_period_min = 5\n"))
    assert ok.sensor.working_period_min == 5
    with pytest.raises(ConfigError, match=r"sensor.working_period_min: expected to be set only"):
        edge_config.load(_write(tmp_path, 'device = "d"\n[sensor]\nworking_period_min = 5\n'))
