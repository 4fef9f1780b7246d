"""A backlog that arrives after a network outage is judged in its own time: the alert it
raises carries its original time and delay, once; the live tick after it repeats nothing."""

from __future__ import annotations

from pathlib import Path

from alert_rules.engine import Engine
from alert_rules.transitions import Transition
from tests.support.rules import engine_from

RULES = """
rules:
  - name: heavy
    kind: threshold
    aggregate: mean
    window: 3s
    above: 150
    clear_below: 135
    for: 3s
  - name: silent
    kind: deadman
    absent_for: 1h
"""
T0 = 1_790_000_000_000
S = 1000


def _feed(e: Engine, ts: list[int], pm: list[float]) -> None:
    e.ingest(["a"] * len(ts), ts, {"pm2_5": pm})


def _tick_over(e: Engine, start_s: int, end_s: int) -> list[Transition]:
    out: list[Transition] = []
    for half in range(start_s * 2, end_s * 2):
        out += e.tick(T0 + half * 500)
    return out


def _episode(t_s: int, lo: int, hi: int) -> float:
    return 220.0 if lo <= t_s < hi else 40.0


def _run(tmp_path: Path, episode: tuple[int, int], back_s: int) -> tuple[
        list[Transition], list[Transition], list[Transition]]:
    """Live readings 0..9 s; cut 10 s..back_s (the ticks go on); then the backlog and the
    live reading of back_s arrive together. Returns (during, replayed, after) transitions."""
    e = engine_from(tmp_path, RULES)
    during: list[Transition] = []
    for t in range(10):
        _feed(e, [T0 + t * S], [40.0])
        during += _tick_over(e, t, t + 1)
    during += _tick_over(e, 10, back_s)
    backlog = list(range(10, back_s))
    now = T0 + back_s * S
    replayed = e.replay_late(["a"] * len(backlog), [T0 + t * S for t in backlog],
                             {"pm2_5": [_episode(t, *episode) for t in backlog]}, None, now)
    _feed(e, [T0 + t * S for t in [*backlog, back_s]],
          [_episode(t, *episode) for t in [*backlog, back_s]])
    after = _tick_over(e, back_s, back_s + 6)
    return during, replayed, after


def test_episode_inside_the_outage_alerts_once_in_its_own_time(tmp_path: Path) -> None:
    during, replayed, after = _run(tmp_path, (15, 30), 40)
    assert during == []
    fired = [t for t in replayed if t.state == "firing"]
    assert len(fired) == 1
    f = fired[0]
    # the 3-s mean (3-s buckets) passes 150 a bucket or two after 15 s; `for` is 3 s more
    assert T0 + 18 * S <= f.at_ms <= T0 + 23 * S
    assert f.late_ms == T0 + 40 * S - f.at_ms
    resolved = [t for t in replayed if t.state == "resolved"]
    assert len(resolved) == 1 and resolved[0].at_ms > f.at_ms and resolved[0].late_ms > 0
    # the live ticks after the backlog judge nothing again
    assert [t for t in after if t.rule == "heavy"] == []


def test_episode_still_on_at_arrival_is_not_fired_again_live(tmp_path: Path) -> None:
    _, replayed, after = _run(tmp_path, (15, 60), 40)
    assert [t.state for t in replayed if t.state != "pending"] == ["firing"]
    assert replayed[-1].late_ms > 0
    assert [t for t in after if t.state == "firing"] == []
    # without the replay the live tick would have fired it now, as if it began now
    fresh = engine_from(tmp_path, RULES)
    _feed(fresh, [T0 + t * S for t in range(10, 41)], [_episode(t, 15, 60) for t in range(10, 41)])
    live = _tick_over(fresh, 40, 46)
    assert any(t.state == "firing" and t.late_ms == 0 and t.at_ms >= T0 + 40 * S for t in live)
