"""The [alerting] table: errors name the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airgrid.config import ConfigError
from collector.alerting import config as ac
from collector.alerting.channels import registry
from collector.alerting.channels.notifier import Context
from tests.support.alerting import CONTACTS

GOOD: dict[str, Any] = {
    "channels": {"modem": {"type": "sms_modem", "port": "/dev/ttyUSB2"}},
    "receivers": {"grid_worker": {"targets": [{"channel": "modem", "to": "grid_worker"}]}},
    "route": {"receiver": "grid_worker", "group_wait": "30s",
              "routes": [{"match": {"severity": "critical"}, "receiver": "grid_worker"}]},
    "escalation": [{"after": "10m", "receivers": ["grid_worker"]}],
    "contacts": CONTACTS,
}


def test_a_good_table_parses_with_inherited_route_timings() -> None:
    cfg = ac.from_dict(GOOD, "/etc/airgrid/collector.toml")
    assert cfg.route is not None and cfg.route.group_wait_ms == 30_000
    assert cfg.route.routes[0].group_wait_ms == 30_000
    assert cfg.escalation[0].after_ms == 600_000
    assert cfg.state_db == Path("/etc/airgrid/alerting.sqlite")
    assert set(cfg.channels) == {"modem", "bus"}  # the event bus is there by default


@pytest.mark.parametrize(("patch", "key", "expected"), [
    ({"langauge": "zh"}, "alerting.langauge", "one of"),
    ({"language": "fr"}, "alerting.language", '"zh" or "en"'),
    ({"route": {"receiver": "nobody"}}, "alerting.route.receiver", "one of ['grid_worker']"),
    ({"route": {"receiver": "grid_worker", "group_wait": "soon"}}, "alerting.route.group_wait",
     "a duration"),
    ({"escalation": [{"receivers": ["grid_worker"]}]}, "alerting.escalation[0].after",
     "required"),
    ({"receivers": {"x": {"targets": [{"channel": "pager"}]}}},
     "alerting.receivers.x.targets[0].channel", "one of"),
    ({"contacts": {"devices": [{"device": "d", "worker_phone": "138-abc"}]}},
     "alerting.contacts.devices[0].worker_phone", "a phone number"),
    ({"ack": {"token": "one-shared-token-for-all"}}, "alerting.ack.token",
     "one credential per person or app"),
    ({"ack": {"principals": [{"name": "张三", "token": "x" * 16}]}},
     "alerting.ack.principals[0]", "a phone or an app_id"),
    ({"ack": {"principals": [{"name": "张三", "phone": "+8613800000001", "token": "short"}]}},
     "alerting.ack.principals[0].token", "at least 16"),
    ({"silences": [{"match": {"device": "~("}}]}, "alerting.silences[0].match", "matchers"),
    ({"channels": {"m": {"type": "sms_modem", "port": "/x", "max_attempts": 0}}},
     "alerting.channels.m.max_attempts", ">= 1"),
])
def test_errors_name_file_key_and_expectation(patch: dict[str, Any], key: str,
                                              expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ac.from_dict({**GOOD, **patch}, "county.toml")
    assert exc.value.file == "county.toml" and exc.value.key == key
    assert expected in str(exc.value)


@pytest.mark.parametrize(("spec", "key"), [
    ({"type": "fax"}, "alerting.channels.c.type"),
    ({"type": "webhook", "url": "ftp://x", "secret": "0123456789abcdef"},
     "alerting.channels.c.url"),
    ({"type": "webhook", "url": "http://x", "secret": "short"}, "alerting.channels.c.secret"),
    ({"type": "sms_gateway", "url": "http://x", "body_template": "{to}"},
     "alerting.channels.c.body_template"),
    ({"type": "sms_modem"}, "alerting.channels.c.port"),
])
def test_channel_options_are_checked_with_the_table(spec: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ac.from_dict({"channels": {"c": spec}}, "county.toml")
    assert exc.value.key == key and exc.value.file == "county.toml"


def test_collector_check_config_reads_the_alerting_table(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[alerting]\nlanguage = "en"\n[alerting.route]\nreceiver = "ops"\n'
                    '[alerting.receivers.ops]\ntargets = [{channel = "bus", to = "ops-app"}]\n',
                    encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('[alerting.route]\nreceiver = "ops"\n', encoding="utf-8")
    run = [sys.executable, "-m", "collector.cli", "check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=30)
    assert fail.returncode == 2 and "alerting.route.receiver" in fail.stderr
    assert str(bad) in fail.stderr


def test_phone_numbers_in_any_form_are_stored_in_e164(tmp_path: Path) -> None:
    devices = [{"device": "d1", "worker_phone": "138 0000 0002"},
               {"device": "d2", "worker_phone": "0086-138-0000-0003"},
               {"device": "d3", "worker_phone": "8613800000004"}]
    cfg = ac.from_dict({"contacts": {"devices": devices}}, tmp_path / "c.toml")
    assert [cfg.contacts.devices[d].worker_phone for d in ("d1", "d2", "d3")] == [
        "+8613800000002", "+8613800000003", "+8613800000004"]
    assert cfg.contacts.by_phone("13800000003") == ""  # found (unnamed) in national form


def test_the_documented_example_config_is_valid(tmp_path: Path) -> None:
    import re
    import tomllib

    doc = (Path(__file__).resolve().parents[3] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    from airgrid.secrets import resolve

    env = {"AIRGRID_ACK_TOKEN_ZHANGSAN": "z" * 24, "AIRGRID_ACK_TOKEN_APP_ZHANGSAN": "a" * 24}
    data, problems = resolve(tomllib.loads(block.group(1)), env)
    assert not problems
    cfg = ac.from_dict(data["alerting"], tmp_path / "c.toml")
    assert [p.name for p in cfg.principals] == ["张三", "张三的网格通"]
    assert cfg.route is not None and cfg.route.routes[0].receiver == "township_officer"
    assert len(cfg.escalation) == 2 and len(cfg.inhibit) == 3 and len(cfg.silences) == 1
    assert cfg.contacts.officer("county_bureau", "城关镇") is not None
    for spec in cfg.channels.values():  # every channel's own options check out too
        registry.build(spec, Context(file=str(tmp_path / "c.toml"))).close()
