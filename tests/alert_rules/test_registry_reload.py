"""A registry reload changes the engine's fleet: new devices judged (deadman included),
removed ones forgotten, also across a snapshot restore; cellular grace from the link."""

from __future__ import annotations

from pathlib import Path

from alert_rules.registry import Device
from tests.support.rules import engine_from

RULES = """
rules:
  - name: silent
    kind: deadman
    absent_for: 10s
    cellular_grace: 1m
"""
T0 = 1_790_000_000_000


def _silent(transitions: list) -> set[str]:  # type: ignore[type-arg]
    return {t.subject for t in transitions if t.state == "firing"}


def test_reload_adds_forgets_and_survives_a_restore(tmp_path: Path) -> None:
    e = engine_from(tmp_path, RULES, [Device("a"), Device("gone")])
    assert _silent(e.tick(T0)) == set()
    added, removed = e.set_registry([Device("a"), Device("new"), Device("cell", link="cellular")])
    assert (added, removed) == (["new", "cell"], ["gone"])
    assert _silent(e.tick(T0 + 11_000)) == {"a"}  # "gone" was due too, but is forgotten
    # the new devices' silence counts from the first tick that knew them; "cell" has a
    # minute of grace (its link is cellular)
    assert _silent(e.tick(T0 + 22_000)) == {"new"}
    assert _silent(e.tick(T0 + 75_000)) == set()
    assert _silent(e.tick(T0 + 82_000)) == {"cell"}
    # a restart: the snapshot still has the retired device's row
    blob = e.snapshot()
    e2 = engine_from(tmp_path, RULES, [Device("a"), Device("new"), Device("cell", link="cellular")])
    e2.restore(blob)
    e2.set_registry([Device("a"), Device("new"), Device("cell", link="cellular")])
    assert "gone" not in _silent(e2.tick(T0 + 200_000))
