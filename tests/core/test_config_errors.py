"""Config errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgrid.config import ConfigError
from collector import config as collector_config
from edge_agent import config as edge_config


def test_edge_config_defaults(tmp_path: Path) -> None:
    f = tmp_path / "edge.toml"
    f.write_text('device = "dev-1"\n[sensor]\nport = "/dev/ttyUSB0"\n'
                 '[broker]\nhost = "mqtt.county.example"\n')
    cfg = edge_config.load(f)
    assert cfg.sensor.port == "/dev/ttyUSB0" and cfg.sampling.interval_s == 60.0
    assert cfg.broker.port == 1883


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[sensor]\nport = "/dev/x"\n', "device", "required"),
        ('device = "a b"\n', "device", "device id"),
        ('device = "d"\n[broker]\nport = "1883"\n', "broker.port", "a TCP port"),
        ('device = "d"\n[sampling]\ninterval_s = 0\n', "sampling.interval_s", ">= 0.1"),
        # Only a device id: no silent run against 127.0.0.1.
        ('device = "d"\n', "broker", "a table (required)"),
        ('device = "d"\n[broker]\nport = 8883\n', "broker.host", "host name or address"),
        ('device = "d"\n[sensor]\nmodel = "pms9999"\n', "sensor.model", "one of"),
        ('device = "d"\n[sensr]\n', "sensr", "one of"),
        ('device = "d"\n[clock]\ntrust_system_clock = 1\n', "clock.trust_system_clock", "bool"),
        ('device = \n', "(syntax)", "valid TOML"),
    ],
)
def test_edge_config_errors(tmp_path: Path, text: str, key: str, expected: str) -> None:
    f = tmp_path / "edge.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        edge_config.load(f)
    msg = str(err.value)
    assert msg.startswith(str(f)) and f": {key}:" in msg and expected in msg


def test_collector_config_error(tmp_path: Path) -> None:
    f = tmp_path / "collector.toml"
    f.write_text("[batch]\nmax_messages = -1\n")
    with pytest.raises(ConfigError, match=r"collector.toml: batch.max_messages: expected"):
        collector_config.load(f)
