"""The engine's tick schedule: a burst of arrivals costs one tick, arrival ticks are
bounded to N a second whatever the message rate, and the timer keeps ticking without any."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airgrid.config import ConfigError
from collector import config as collector_config
from collector.alert_handoff import AlertHandOff
from collector.batch import Batch
from collector.counters import Counters
from collector.metrics import Metrics
from collector.tick_schedule import TickSchedule


def _loop(schedule: TickSchedule, arrivals_s: list[float], until_s: float,
          step_s: float = 0.001) -> list[float]:
    """A pipeline loop turning every `step_s`: arrivals are handed over, due ticks run."""
    ticks: list[float] = []
    pending = sorted(arrivals_s)
    now = 0.0
    while now < until_s:
        while pending and pending[0] <= now:
            pending.pop(0)
            schedule.arrived()
        if schedule.due(now):
            schedule.ticked(now)
            ticks.append(now)
        now = round(now + step_s, 6)
    return ticks


def test_a_burst_costs_one_tick_and_the_timer_goes_on() -> None:
    s = TickSchedule(interval_s=30.0, max_arrival_per_s=20.0)
    # 500 messages handed over in one turn of the loop, two seconds after the start tick
    ticks = _loop(s, [1.9995 + i * 0.000001 for i in range(500)], 40.0)
    assert ticks[0] == 0.0  # the first tick at once
    assert [t for t in ticks if 0 < t < 30] == [2.0]  # one tick for the whole burst
    assert ticks[-1] == pytest.approx(32.0)  # the timer counts from the last tick
    # spread over 40 ms: a tick at its start, one more for what came after it
    s = TickSchedule(interval_s=30.0, max_arrival_per_s=20.0)
    ticks = _loop(s, [2.0 + i * 0.00008 for i in range(500)], 10.0)
    assert ticks == pytest.approx([0.0, 2.0, 2.05])


def test_a_flood_is_bounded_to_n_ticks_a_second() -> None:
    s = TickSchedule(interval_s=1.0, max_arrival_per_s=20.0)
    # 1,000 messages a second for 5 s
    ticks = _loop(s, [i / 1000 for i in range(5000)], 5.0)
    assert 95 <= len(ticks) <= 101  # 20 a second, not 1,000
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert min(gaps) >= 0.05 - 1e-9


def test_zero_means_the_timer_only() -> None:
    s = TickSchedule(interval_s=1.0, max_arrival_per_s=0.0)
    assert s.min_gap_s == math.inf
    ticks = _loop(s, [i / 100 for i in range(300)], 3.0)
    assert ticks == pytest.approx([0.0, 1.0, 2.0])


@settings(max_examples=100, deadline=None)
@given(arrivals=st.lists(st.floats(0.0, 2.0), max_size=200),
       per_s=st.floats(0.5, 200.0), interval=st.floats(0.05, 10.0))
def test_every_arrival_gets_a_tick_in_time_and_never_more_than_the_bound(
        arrivals: list[float], per_s: float, interval: float) -> None:
    s = TickSchedule(interval_s=interval, max_arrival_per_s=per_s)
    step = 0.001
    ticks = _loop(s, arrivals, 2.0 + 1 / per_s + 2 * step, step)
    gap = min(1 / per_s, interval)
    for a, b in itertools.pairwise(ticks):
        assert b - a >= gap - step - 1e-9  # bounded (the loop turns every `step`)
    for t in arrivals:
        # judged by a tick no later than the bound allows after it arrived
        assert any(t <= k <= t + 1 / per_s + 2 * step for k in ticks), (t, ticks)


def test_a_judged_batch_asks_for_a_tick() -> None:
    from alert_rules.engine import Engine
    from alert_rules.rulefile import DEFAULT_RULES, load_rules
    from tests.collector.test_parts import _reading

    ticks = TickSchedule(interval_s=30.0, max_arrival_per_s=10.0)
    alerts = AlertHandOff(Engine(load_rules(DEFAULT_RULES)), lambda *a, **k: None,
                          "airgrid", Counters(), Metrics(), ticks=ticks)
    assert alerts.tick_if_due(100.0)  # the first tick: at once
    assert not alerts.tick_if_due(100.5)
    alerts.judge(Batch(), 1000)  # nothing fresh: no tick asked for
    assert not alerts.tick_if_due(100.5)
    # a backlog (older than the last tick) is judged by its replay: no tick asked for
    alerts.judge(Batch(devices=["d1"], ts=[1000], fresh=[_reading(1000, 12.0)]), 2000)
    assert not alerts.tick_if_due(100.5)
    now = int(time.time() * 1000)
    alerts.judge(Batch(devices=["d2"], ts=[now], fresh=[_reading(now, 12.0)]), now)
    assert alerts.tick_if_due(100.5) and not ticks.pending


def test_the_config_key_is_checked_with_file_and_key(tmp_path: Path) -> None:
    assert collector_config.from_dict({}).rules.max_arrival_ticks_per_s == 20.0
    cfg = tmp_path / "collector.toml"
    cfg.write_text("[rules]\nmax_arrival_ticks_per_s = -1\n")
    with pytest.raises(ConfigError) as exc:
        collector_config.load(cfg)
    text = str(exc.value)
    assert str(cfg) in text and "rules.max_arrival_ticks_per_s" in text, text
    cfg.write_text("[rules]\nmax_arrival_ticks_per_s = 0\n")
    assert collector_config.load(cfg).rules.max_arrival_ticks_per_s == 0
