"""The vectorized engine equals the per-device Python reference (tests/support/reference_rules.py)
on randomised fleets: same transitions, same values, tick by tick."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import load_rules
from tests.support.reference_rules import from_engine

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000

RULES = textwrap.dedent("""
rules:
  - {name: mean5, kind: threshold, aggregate: mean, window: 5m, above: 150,
     clear_below: 120, for: 4m, keep_firing_for: 3m}
  - {name: latest, kind: threshold, aggregate: latest, window: 10m, above: 300,
     clear_below: 250}
  - {name: hourly, kind: threshold, aggregate: hourly, above: 100, clear_below: 90}
  - {name: nowcast, kind: threshold, aggregate: nowcast, above: 80, clear_below: 70,
     for: 30m}
  - {name: aqi, kind: aqi_category, aggregate: mean, window: 3m, at_least: Moderately Polluted,
     clear_margin: 15}
  - {name: aqi_epa, kind: aqi_category, standard: us-epa-2024, aggregate: nowcast,
     at_least: Unhealthy}
  - {name: silent, kind: deadman, absent_for: 20m, cellular_grace: 10m}
  - {name: stuck, kind: flatline, window: 6m, tolerance: 0, min_readings: 3}
  - {name: range, kind: out_of_range, min: 0, max: 500, max_age: 15m}
  - {name: dq, kind: data_quality, window: 8m, above: 0.5, clear_below: 0.3, min_readings: 2}
  - {name: rate, kind: rate_of_change, above: 40, clear_below: 10, direction: both,
     max_gap: 12m, keep_firing_for: 2m}
  - {name: odd, kind: anomaly, above: 0.7, cooldown: 5m, max_age: 15m}
  - {name: local, kind: spatial, window: 4m, radius_km: 2, max_neighbours: 3,
     min_neighbours: 2, ratio: 1.5, min_excess: 20, regional_above: 150,
     regional_fraction: 0.5, for: 1m, keep_firing_for: 2m}
""")

_FILES: dict[str, Path] = {}


def rules_file(factory: object, text: str) -> Path:
    """One rule file per text for the whole session (not one directory per example)."""
    if text not in _FILES:
        path = Path(str(factory.mktemp("rules"))) / "rules.yaml"  # type: ignore[attr-defined]
        path.write_text(text, encoding="utf-8")
        _FILES[text] = path
    return _FILES[text]


value = st.one_of(st.integers(0, 420).map(float), st.just(float("nan")),
                  st.sampled_from([600.0, -3.0, 42.0]))
reading = st.tuples(st.integers(0, 7), st.integers(-50, 9), value, st.booleans())
# mostly dense minutes (windows fill, spatial medians exist), sometimes long gaps
step = st.tuples(st.one_of(st.integers(1, 3), st.integers(1, 3), st.integers(4, 45)),
                 st.lists(reading, max_size=14))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=40),
       cellular=st.lists(st.booleans(), min_size=6, max_size=6),
       where=st.lists(st.tuples(st.floats(0, 0.03), st.floats(0, 0.03), st.sampled_from("AB")),
                      min_size=6, max_size=6, unique_by=lambda p: (p[0], p[1])))
def test_engine_equals_reference(tmp_path_factory: object, steps: list[tuple[int, list[
        tuple[int, int, float, bool]]]], cellular: list[bool],
        where: list[tuple[float, float, str]]) -> None:
    path = rules_file(tmp_path_factory, RULES)
    # devices 0..5 are in the registry (some never report), 6..7 appear unannounced
    registry = [Device(f"d{i}", link="cellular" if c else "wired", township=w[2],
                       lat=39.9 + w[0], lon=116.4 + w[1])
                for i, (c, w) in enumerate(zip(cellular, where, strict=True))]
    engine = Engine(load_rules(path), registry=registry)
    ref = from_engine(Engine(load_rules(path), registry=registry), registry)
    now = T0
    for minutes, readings in steps:
        now += minutes * 60_000
        if readings:
            devs = [f"d{d}" for d, _, _, _ in readings]
            # offsets in minutes: mostly just before now, sometimes late or ahead
            ts = [now + off * 60_000 // 3 for _, off, _, _ in readings]
            vals = [v for _, _, v, _ in readings]
            flags = [f for _, _, _, f in readings]
            engine.ingest(devs, ts, {"pm2_5": vals}, flags)
            ref.ingest(devs, ts, {"pm2_5": vals}, flags)
        got = sorted((t.rule, t.subject, t.state, t.value) for t in engine.tick(now))
        want = sorted((r, s, state, v) for r, s, state, v, _ in ref.tick(now))
        assert [g[:3] for g in got] == [w[:3] for w in want], f"at {now - T0} ms"
        for g, w in zip(got, want, strict=True):
            assert (math.isnan(g[3]) and math.isnan(w[3])) or math.isclose(
                g[3], w[3], rel_tol=1e-9, abs_tol=1e-9), (g, w)


SPATIAL = textwrap.dedent("""
rules:
  - {name: local, kind: spatial, window: 2m, radius_km: 2, max_neighbours: 4,
     min_neighbours: 2, ratio: 1.2, min_excess: 20, regional_above: 150,
     regional_fraction: 0.5, keep_firing_for: 1m}
""")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minutes=st.lists(st.lists(st.one_of(st.integers(0, 300).map(float),
                                           st.just(float("nan"))), min_size=7, max_size=7),
                        min_size=1, max_size=25),
       where=st.lists(st.tuples(st.floats(0, 0.02), st.floats(0, 0.02), st.sampled_from("AB")),
                      min_size=7, max_size=7))
def test_spatial_equals_reference(tmp_path_factory: object, minutes: list[list[float]],
                                  where: list[tuple[float, float, str]]) -> None:
    """Dense fleets (every device every minute) so medians and township shares matter."""
    path = rules_file(tmp_path_factory, SPATIAL)
    registry = [Device(f"d{i}", township=w[2], lat=39.9 + w[0], lon=116.4 + w[1])
                for i, w in enumerate(where)]
    engine = Engine(load_rules(path), registry=registry)
    ref = from_engine(Engine(load_rules(path), registry=registry), registry)
    devs = [d.id for d in registry]
    for k, vals in enumerate(minutes):
        now = T0 + (k + 1) * 60_000
        engine.ingest(devs, [now] * 7, {"pm2_5": vals})
        ref.ingest(devs, [now] * 7, {"pm2_5": vals})
        got = sorted((t.subject, t.state, t.value) for t in engine.tick(now))
        want = sorted((s, state, v) for _, s, state, v, _ in ref.tick(now))
        assert [g[:2] for g in got] == [w[:2] for w in want], f"minute {k}"
        for g, w in zip(got, want, strict=True):
            assert (math.isnan(g[2]) and math.isnan(w[2])) or math.isclose(g[2], w[2])
