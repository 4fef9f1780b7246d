"""Retention: hourly checkpoint rows past their use, long-silent devices, resolved alerts
and group sends leave their stores; each store's size is a gauge; the keys are config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from airgrid.config import ConfigError
from alert_rules.engine import Engine
from alert_rules.registry import Device as ExpectedDevice
from collector import state_store
from collector.aggregates import HOUR_MS, HourlyAggregates
from collector.alerting import config as alerting_config
from collector.alerting.model import Alert
from collector.alerting.store import Store
from collector.batch_builder import BatchBuilder, Intake
from collector.config import load as load_config
from collector.counters import Counters
from collector.dead_letters import DeadLetters
from collector.dedup import SeqTracker
from collector.delivery import Delivery
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.retention import Retention, StateDbSizes
from collector.state_store import StateStore
from collector.tag_cache import TagCache
from tests.support.collector_process import reading, up_payload

HOUR0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS


def _hours_in_db(path: Path) -> list[int]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return sorted({h for (h,) in db.execute("SELECT hour FROM hourly")})
    finally:
        db.close()


def test_hourly_rows_past_the_retention_leave_a_few_per_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: one row per device and hour for ever (876 million a year at 100,000
    devices). Now rows older than the retention go, in chunks, and memory holds the
    recent hours only; a reading older than the retention changes no aggregate."""
    monkeypatch.setattr(state_store, "PRUNE_ROWS_PER_SAVE", 7)
    store = StateStore(tmp_path / "state.db")
    aggs = HourlyAggregates(keep_hours=3)
    store.restore(SeqTracker(), aggs)
    devices = [f"d{i}" for i in range(10)]
    for h in range(8):  # eight hours of readings from ten devices
        t = HOUR0 + h * HOUR_MS + 60_000
        for device in devices:
            aggs.add(device, [t], [[10.0 + h], [20.0]])
        store.save(StateStore.snapshot(SeqTracker(), [], aggs, aggs.commit(t + 10**12)))
    for _ in range(12):  # the following checkpoints carry the deletes along
        store.save(StateStore.snapshot(SeqTracker(), [], aggs, aggs.commit(t + 10**12)))
    newest = HOUR0 + 7 * HOUR_MS
    assert _hours_in_db(tmp_path / "state.db") == [newest - k * HOUR_MS for k in (3, 2, 1, 0)]
    assert store.pruned_rows == 40
    assert {k[1] for k in aggs.hours} <= {newest - HOUR_MS, newest}  # memory: 2 hours
    before = dict(aggs.hours)
    aggs.add("d1", [HOUR0 + 60_000], [[99.0], [1.0]])  # seven hours late: past retention
    assert aggs.too_old == 1 and aggs.hours == before and not aggs.touched
    aggs.add("d1", [newest - 2 * HOUR_MS + 1], [[30.0], [1.0]])  # late, kept: loaded back
    agg = aggs.hours[("d1", newest - 2 * HOUR_MS)]
    assert agg.counts[0] == 2 and agg.sums[0] == pytest.approx(15.0 + 30.0)
    store.close()


def _builder(registry: RegistryWatcher) -> BatchBuilder:
    counters, metrics = Counters(), Metrics()
    dead = DeadLetters(lambda t, p, q: None, "airgrid", counters, metrics, None)
    return BatchBuilder(Intake(max_future_ms=10**15), TagCache(registry), dead, counters,
                        metrics)


def test_long_silent_devices_are_forgotten_everywhere_but_registered_ones_stay_judged(
        tmp_path: Path) -> None:
    """With unknown = "accept", made-up device ids used to stay for ever in dedup state,
    device health, tag cache and the engine; now they go after the silence."""
    reg = tmp_path / "reg.csv"
    reg.write_text("id,site,township,grid,lat,lon\nreg1,s,t,g,1,2\n")
    registry = RegistryWatcher(reg)
    builder = _builder(registry)
    engine = Engine([], registry=[ExpectedDevice(id="reg1", township="t", grid="g",
                                                 lat=1.0, lon=2.0)])
    metrics = Metrics()
    retention = Retention(builder, engine, registry, metrics, forget_after_ms=60_000)
    now = int(time.time() * 1000)
    for device in ("reg1", "bogus1", "bogus2"):
        builder.add(Delivery(f"airgrid/v1/dev/{device}/up",
                             up_payload(device, [reading(1, now, 10.0)]), 0, 0, 0))
    sealed = builder.seal()
    assert sealed is not None
    engine.ingest([device for device in sealed.batch.devices], sealed.batch.ts,
                  {"pm2_5": [10.0] * 3})
    assert set(builder.seqs.devices) == {"reg1", "bogus1", "bogus2"}
    assert retention.forget(now - 60_000) == []  # heard just now
    builder.seqs.devices["bogus2"].last_ms = now  # bogus2 stays heard
    for key in ("reg1", "bogus1"):
        builder.seqs.devices[key].last_ms = now - 120_000
    assert retention.forget(now - 60_000) == ["bogus1", "reg1"]
    assert set(builder.seqs.devices) == {"bogus2"}
    assert "bogus1" in engine.away and "reg1" not in engine.away  # reg1: deadman still on
    assert builder.tags._devices.keys() == {"bogus2"}
    snap = StateStore.snapshot(builder.seqs, [], builder.aggregates, [])
    assert sorted(snap.forgotten) == ["bogus1", "reg1"]  # their checkpoint rows go
    retention.update_metrics()
    assert metrics.store_rows.labels("dedup_keys")._value.get() == 1
    assert metrics.devices_forgotten._value.get() == 2


def test_state_db_sizes_are_counted_off_the_ingest_thread(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    t = SeqTracker()
    store.restore(t, HourlyAggregates())
    for i in range(5):
        t.fresh(f"d{i}", [1, 3])
    store.save(StateStore.snapshot(t, t.commit(), HourlyAggregates(), []))
    metrics = Metrics()
    sizes = StateDbSizes(tmp_path / "state.db", metrics)
    sizes.count()
    assert sizes.rows == {"seqs": 5, "hourly": 0}
    assert metrics.state_db_bytes._value.get() > 0
    store.close()


def _alert(i: int, state: str, resolved_ms: int | None) -> Alert:
    return Alert(id=0, rule="r", subject=f"d{i}", state=state, value=1.0,  # type: ignore[arg-type]
                 severity="warning", labels={}, annotations={}, started_ms=0,
                 updated_ms=0, resolved_ms=resolved_ms)


def test_resolved_alerts_and_old_group_sends_leave_the_alerting_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "alerting.sqlite")
    store.insert_alert(_alert(1, "resolved", 1_000))
    store.insert_alert(_alert(2, "resolved", 9_000))
    store.insert_alert(_alert(3, "firing", None))
    store.set_group_sent("ops", "g-old", 1_000, "fp")
    store.set_group_sent("ops", "g-new", 9_000, "fp")
    store.add_silence({"device": "d1"}, 0, 1_000, "ops", "ended")
    store.add_silence({"device": "d2"}, 0, 9_000, "ops", "still on")
    assert store.sizes()["alerts"] == 3
    assert store.purge_resolved(5_000) == (1, 1)
    assert sorted(a.subject for a, _ in store.load_alerts(0)) == ["d2", "d3"]
    assert set(store.group_sends()) == {("ops", "g-new")}
    assert store.sizes() == {"alerts": 2, "outbox": 0, "group_sends": 1, "silences": 1}
    assert store.purged_rows == {"silences": 1}
    store.close()


def test_retention_keys_are_checked_with_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.toml"
    cfg.write_text("[gaps]\nmax_ranges = 0\nmax_age_s = -1\n[retention]\nhourly_s = 60\n"
                   "[alerting]\nreopen_within = \"2h\"\nresolved_retention = \"1h\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    for key in ("gaps.max_ranges", "gaps.max_age_s", "retention.hourly_s",
                "alerting.resolved_retention"):
        assert f"{cfg}: {key}: expected" in text, text
    ok = alerting_config.from_dict({"resolved_retention": "30d"})
    assert ok.resolved_retention_ms == 30 * 86_400_000
    assert json.dumps(ok.resolved_retention_ms)


def test_a_backlog_replayed_first_thing_is_aggregated_by_its_own_clock() -> None:
    """A batch without readings (device places at start-up) used to set the retention's
    clock to the wall clock, so a backlog older than the retention that came next was
    stored but never aggregated; the clock is the readings' own."""
    aggs = HourlyAggregates(keep_hours=2)
    now = HOUR0 + 10 * HOUR_MS
    assert aggs.commit(now) == []  # nothing read yet
    t = now - 4 * HOUR_MS  # a four-hour-old backlog
    aggs.add("d", [t], [[10.0], [20.0]])
    assert aggs.too_old == 0 and aggs.commit(now) == [("d", t - t % HOUR_MS)]
    aggs.add("d", [t + 3 * HOUR_MS], [[10.0], [20.0]])  # the backlog moves the clock on
    aggs.commit(now)
    aggs.add("d", [t], [[10.0], [20.0]])  # now three hours behind it: past retention
    assert aggs.too_old == 1
