"""The pipeline's parts on their own: tag cache, alert hand-off, engine-state file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airgrid.wire import Reading
from alert_rules.engine import Engine
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from collector.alert_handoff import AlertHandOff
from collector.batch import Batch
from collector.counters import Counters
from collector.engine_state_file import EngineStateFile
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.tag_cache import TagCache


def test_tags_of_registered_unknown_and_registry_less_devices(tmp_path: Path) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text("devices:\n  - {id: k1, site: roof, township: T, grid: G1, lat: 30,"
                   " lon: 114, calibration: {formula: linear, slope: 0.5, intercept: 2}}\n")
    tags = TagCache(RegistryWatcher(reg))
    assert tags.registered("k1") is not None and tags.in_use
    assert tags.device("k1") == ",cal=linear,device=k1,grid=G1,site=roof,township=T"
    assert tags.device("u9") == ",device=u9,unregistered=true"
    assert tags.reading("k1", "pms5003", 1).startswith("readings,")
    assert tags.reading("k1", "pms5003", 1).endswith(",sensor=pms5003,idx=1")
    assert not tags.refresh()  # the file did not change
    plain = TagCache(RegistryWatcher(None))
    assert not plain.in_use and plain.device("u9") == ",device=u9"
    assert plain.devices(["a", "b"]).items() >= {"a": ",device=a", "b": ",device=b"}.items()


def _reading(ts: int, pm: float) -> Reading:
    return Reading(seq=1, ts=ts, sensor="pms5003", pm2_5=pm)


def test_hooks_see_a_stored_batch_before_the_engine_judges_it() -> None:
    engine = Engine(load_rules(DEFAULT_RULES))
    seen: list[tuple[list[str], int]] = []

    def hook(devices: Sequence[str], ts: Sequence[int], now_ms: int) -> None:
        seen.append((list(devices), engine.fleet.size))

    published: list[str] = []
    counters = Counters()
    alerts = AlertHandOff(engine, lambda topic, payload, qos: published.append(topic),
                          "airgrid", counters, Metrics(), before_judge=[hook])
    alerts.judge(Batch(), 1000)  # nothing fresh: nothing to judge, hooks not called
    assert seen == []
    batch = Batch(devices=["d1"], ts=[1000], fresh=[_reading(1000, 12.0)])
    alerts.judge(batch, 2000)
    assert seen == [(["d1"], 0)] and engine.fleet.size == 1  # the hook ran first


def test_engine_state_file_round_trip_and_a_missing_file(tmp_path: Path) -> None:
    rules = load_rules(DEFAULT_RULES)
    engine = Engine(rules)
    engine.ingest(["d1"], [1000], {"pm2_5": [12.0]})
    path = tmp_path / "state" / "engine.npz"
    saving = EngineStateFile(engine, path)
    saving.save()
    assert saving.wait(10)
    again = Engine(rules)
    assert EngineStateFile(again, path).restore() and again.fleet.size == 1
    assert not EngineStateFile(Engine(rules), tmp_path / "none.npz").restore()
    EngineStateFile(engine, None).save()  # not kept: nothing written, no error
