"""A snapshot file damaged anywhere is refused whole, or taken only if the engine then
runs: never a half-restored engine, never an error other than `SnapshotError`.

The snapshot is the engine's state on disk (collector/engine_state_file.py), so it is a
boundary like any other: damage is generated (Hypothesis) over every array, the
metadata and the raw bytes of a real snapshot of the default, spatial and sensor-fault
rules with alerts firing, shifts followed and runs counted.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.engine import Engine, write_snapshot
from alert_rules.registry import Device
from alert_rules.rule_base import RuleBase
from alert_rules.rulefile import DEFAULT_RULES, load_rules
from alert_rules.saved_state import SnapshotError
from tests.support.rules import same_state

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000
STEP = 10 * 60_000
DEVICES = [f"d{i}" for i in range(8)]
REG = [Device(d, township="A", lat=39.90 + 0.0009 * i, lon=116.40) for i, d in enumerate(DEVICES)]
Arrays = dict[str, npt.NDArray[Any]]


def rules() -> list[RuleBase]:
    return (load_rules(DEFAULT_RULES)
            + load_rules(DEFAULT_RULES.with_name("spatial_rules.yaml"))
            + load_rules(DEFAULT_RULES.with_name("sensor_fault_rules.yaml")))


def feed(e: Engine, steps: range, seed: int) -> None:
    """Shared air around 60 µg/m³; d1 reads 1.8 times it after the first day, d2 is
    stuck, d3 reads a plume of 300: shifts followed, runs counted, alerts firing."""
    rng = np.random.default_rng(seed)
    for k in steps:
        now = T0 + k * STEP
        air = 60.0 + 20.0 * np.sin(k / 11.0) + rng.normal(0, 2, len(DEVICES))
        air[1] *= 1.8 if k >= 144 else 1.0
        air[2] = 42.0
        air[3] = 300.0 if k % 200 > 180 else air[3]
        e.ingest(DEVICES, [now] * len(DEVICES),
                 {"pm2_5": list(air), "humidity": [50.0] * len(DEVICES)}, [True] * len(DEVICES))
        e.tick(now)


def engine(steps: range, seed: int) -> Engine:
    e = Engine(rules(), registry=REG)
    feed(e, steps, seed)
    return e


SOURCE = engine(range(200), seed=1)
BLOB = SOURCE.snapshot()
with np.load(io.BytesIO(BLOB), allow_pickle=False) as _data:
    ARRAYS: Arrays = {k: _data[k] for k in _data.files}
META: dict[str, Any] = json.loads(bytes(ARRAYS["meta"]).decode())
KEYS = sorted(k for k in ARRAYS if k != "meta")
# the target engine's own state before a restore: it must be left as it was if refused
TARGET_STEPS = range(200, 230)


def pack(arrays: Arrays) -> bytes:
    buf = io.BytesIO()
    write_snapshot(buf, arrays)
    return buf.getvalue()


def judge(blob: bytes) -> str:
    """Restore `blob` into an engine with state of its own: refused and untouched, or
    taken and then running (readings, ticks, a snapshot that restores again)."""
    target = engine(TARGET_STEPS, seed=2)
    before = target.snapshot_arrays()
    try:
        target.restore(blob)
    except SnapshotError:
        same_state(target.snapshot_arrays(), before)  # a refused snapshot changes nothing
        feed(target, range(230, 233), seed=3)
        return "refused"
    feed(target, range(230, 236), seed=3)
    Engine(rules(), registry=REG).restore(target.snapshot())
    return "taken"


def damaged_array(a: npt.NDArray[Any], how: str, k: int) -> npt.NDArray[Any] | None:
    if how == "drop":
        return None
    if how == "truncate":
        return a.reshape(-1)[: max(a.size - k, 0)] if a.ndim == 1 else a[: max(a.shape[0] - k, 0)]
    if how == "extend":
        return np.concatenate([a, a[:1].repeat(k, axis=0)]) if a.size else np.zeros(k, a.dtype)
    if how == "scalar":
        return np.asarray(a.reshape(-1)[0] if a.size else 0, a.dtype)
    if how == "flatten_or_stack":
        return a.reshape(-1) if a.ndim > 1 else np.stack([a, a])
    if how == "strings":
        return a.astype(str)
    if how == "floats":
        return a.astype(np.float64) + 0.5
    if how == "complex":
        return a.astype(np.complex128)
    raise AssertionError(how)


HOWS = ["drop", "truncate", "extend", "scalar", "flatten_or_stack", "strings", "floats",
        "complex"]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
SLOW = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def test_the_snapshot_itself_restores() -> None:
    assert judge(BLOB) == "taken"
    e = Engine(rules(), registry=REG)
    e.restore(BLOB)
    same_state(e.snapshot_arrays(), SOURCE.snapshot_arrays())
    # the snapshot holds what this test means to damage
    assert any(k.startswith("runs/") for k in KEYS)
    assert any(".usual." in k or "/usual." in k for k in KEYS)
    assert any(k.startswith("rule/") and k.endswith("/firing") and ARRAYS[k].any() for k in KEYS)


@SLOW
@given(key=st.sampled_from(KEYS), how=st.sampled_from(HOWS), k=st.integers(1, 3))
def test_a_damaged_array_is_refused_whole_or_runs(key: str, how: str, k: int) -> None:
    arrays = dict(ARRAYS)
    bad = damaged_array(arrays[key], how, k)
    if bad is None:
        del arrays[key]
    else:
        arrays[key] = bad
    judge(pack(arrays))


def test_the_damage_that_once_half_restored_the_engine_is_refused() -> None:
    """A wrong-shaped runs array raised a plain ValueError after the fleet was replaced."""
    arrays = dict(ARRAYS)
    key = next(k for k in KEYS if k.startswith("runs/") and k.endswith("/count"))
    arrays[key] = arrays[key][:3]
    assert judge(pack(arrays)) == "refused"
    folder = key.rsplit("/", 1)[0]
    with pytest.raises(SnapshotError, match=f"under '{folder}/'.*'count' has shape"):
        Engine(rules(), registry=REG).restore(pack(arrays))
    # and one inside a rule's state, after earlier rules had loaded theirs
    arrays = dict(ARRAYS)
    key = max(k for k in KEYS if k.startswith("rule/") and k.endswith("/pending_since"))
    arrays[key] = arrays[key][:-1]
    assert judge(pack(arrays)) == "refused"


@SLOW
@given(field=st.sampled_from(["devices", "heads", "late_dropped", "version", "layout"]),
       value=JSON)
def test_damaged_metadata_is_refused_whole_or_runs(field: str, value: object) -> None:
    meta = dict(META, **{field: value})
    arrays = dict(ARRAYS, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    judge(pack(arrays))


@pytest.mark.parametrize("meta", [
    dict(META, devices=[*META["devices"][:-1], META["devices"][0]]),  # a name twice
    dict(META, heads={k: v for i, (k, v) in enumerate(META["heads"].items()) if i}),
    dict(META, heads={k: 10**30 for k in META["heads"]}),
    dict(META, late_dropped=-1),
], ids=["device twice", "a head missing", "heads out of range", "negative count"])
def test_metadata_that_does_not_add_up_is_refused(meta: dict[str, Any]) -> None:
    arrays = dict(ARRAYS, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    assert judge(pack(arrays)) == "refused"


@SLOW
@given(at=st.integers(0, len(BLOB) - 1), byte=st.integers(0, 255),
       cut=st.booleans())
def test_damaged_bytes_are_refused_whole_or_run(at: int, byte: int, cut: bool) -> None:
    blob = BLOB[:at] if cut else BLOB[:at] + bytes([byte]) + BLOB[at + 1:]
    judge(blob)


@pytest.mark.parametrize("blob", [b"", b"PK\x03\x04" + b"\0" * 40, BLOB[: len(BLOB) // 2],
                                  pack({"meta": np.frombuffer(b"[1, 2]", np.uint8)}),
                                  b"\x93NUMPY" + BLOB[6:]],
                         ids=["empty", "zip header only", "half", "meta not an object",
                              "an .npy header"])
def test_what_is_no_snapshot_is_refused(blob: bytes) -> None:
    assert judge(blob) == "refused"
