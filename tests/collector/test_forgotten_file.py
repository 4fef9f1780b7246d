"""The hand-over's saved list of forgotten devices (`forgotten.json`) is read back at
start-up: whatever the file holds, start-up goes on; a file that is not the list it wrote
is set aside (renamed `.unreadable`) and nothing is forgotten from it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import given, settings

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from collector.handover import HandOver, InfluxHistory

DEVICES = [Device(id=f"d{i}") for i in range(3)]


def _handover(path: Path) -> HandOver:
    engine = Engine(load_rules(DEFAULT_RULES), registry=DEVICES)
    # restore reads no history: a port nothing listens on proves it
    history = InfluxHistory("http://127.0.0.1:9", "x", timeout_s=1)
    return HandOver(engine, history, 60_000, 5_000, forgotten_file=path)


@settings(max_examples=60, deadline=None)
@given(raw=st.one_of(st.binary(max_size=300),
                     st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                  lambda inner: st.lists(inner, max_size=3)
                                  | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                                  max_leaves=8).map(lambda v: json.dumps(v).encode())))
def test_any_saved_file_never_stops_start_up(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "forgotten.json"
        path.write_bytes(raw)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        valid = isinstance(parsed, dict) and all(
            isinstance(k, str) and isinstance(v, int) for k, v in parsed.items())
        restored = _handover(path).restore()
        if valid:
            assert restored == len(parsed)
            assert path.exists()
        else:
            assert restored == 0
            assert not path.exists()
            assert path.with_name("forgotten.json.unreadable").read_bytes() == raw


def test_a_saved_list_is_forgotten_again(tmp_path: Path) -> None:
    path = tmp_path / "forgotten.json"
    path.write_text(json.dumps({"d1": 1_700_000_000_000}))
    ho = _handover(path)
    assert ho.restore() == 1
    assert ho.forgotten == {"d1": 1_700_000_000_000}
